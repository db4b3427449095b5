"""The real-world benchmark's measurements (evaluation/real_world.py) and its runner's plumbing
(scan/benchmark.py) on hand-made contracts and predictions."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from training_pipeline.config import compose_config
from training_pipeline.errors import ConfigError, DataError
from training_pipeline.evaluation.real_world import (
    CLASSES,
    BenchSet,
    Contract,
    Prediction,
    audited_metrics,
    by_era,
    era_of,
    labelled_metrics,
    shared_traits,
    vulnerable_vs_audited_auroc,
    worst_errors,
)
from training_pipeline.risk import RiskTarget
from training_pipeline.scan.benchmark import (
    RealWorldConfig,
    Row,
    bytecode_of,
    latest_checkpoint,
    markdown,
    measure,
    resolve_models,
    split_records,
    write_scores,
)
from training_pipeline.utils.checks import config_dataclass


def pred(flagged: list[str], **probs: float) -> Prediction:
    full = {c: 0.05 for c in CLASSES}
    full.update({c: 0.9 for c in flagged})
    full.update(probs)
    return Prediction(full, flagged)


def contract(cid: str, labels: list[str], assessed: list[str] | None = None, **kw) -> Contract:
    return Contract(cid, labels, list(CLASSES) if assessed is None else assessed, **kw)


@pytest.fixture
def sets() -> tuple[BenchSet, BenchSet]:
    labelled = BenchSet(
        "cgt_test",
        [
            contract("a", ["reentrancy"], era="0.4", lines=40, family="bank"),
            contract("b", ["arithmetic"], ["arithmetic", "reentrancy"], era="0.4", lines=60),
            contract("c", [], ["reentrancy"], era="0.8", lines=900),
        ],
    )
    audited = BenchSet(
        "real_code",
        [contract("x", [], [], era="0.8", family="p1"), contract("y", [], [], era="0.8", family="p2")],
        True,
    )
    return labelled, audited


def test_labelled_metrics_count_assessed_classes_only(sets) -> None:
    labelled, _ = sets
    scores = {
        "a": pred(["reentrancy", "bad_randomness"]),  # one hit, one wrong flag (fully assessed)
        "b": pred(["front_running"]),  # arithmetic missed; front_running unassessed: not wrong
        "c": pred(["reentrancy"]),  # assessed absent: a false positive
    }
    m = labelled_metrics(labelled, scores)
    re = m["per_class"]["reentrancy"]
    assert (re["tp"], re["fp"], re["fn"]) == (1, 1, 0)
    assert m["per_class"]["arithmetic"]["recall"] == 0.0
    assert m["per_class"]["front_running"]["assessed"] == 1  # only "a" assesses it
    assert m["recall"] == pytest.approx(1 / 2)
    assert m["precision"] == pytest.approx(1 / 3)
    # wrong flags: a → bad_randomness, c → reentrancy; b's front_running is unassessed
    assert m["wrong_flags_per_contract"] == pytest.approx(2 / 3)
    assert m["unassessed_flags_per_contract"] == pytest.approx(1 / 3)
    assert m["f1_macro"] == pytest.approx((2 / 3 + 0.0) / 2)  # reentrancy 0.667, arithmetic 0


def test_unscored_contracts_are_left_out(sets) -> None:
    labelled, _ = sets
    m = labelled_metrics(labelled, {"a": pred(["reentrancy"])})
    assert (m["contracts"], m["scored"], m["recall"]) == (3, 1, 1.0)


def test_audited_metrics_and_auroc_vs_audited(sets) -> None:
    labelled, audited = sets
    scores = {
        "a": pred(["reentrancy"]),
        "b": pred([], arithmetic=0.4),
        "c": pred([]),
        "x": pred(["other"], other=0.95),
        "y": pred([]),
    }
    m = audited_metrics(audited, scores, RiskTarget())
    assert m["flagged_share"] == 0.5
    assert m["by_family"] == {
        "p1": {"contracts": 1, "flagged_share": 1.0},
        "p2": {"contracts": 1, "flagged_share": 0.0},
    }
    assert m["flag_rate"]["other"] == 0.5 and m["flag_rate"]["reentrancy"] == 0.0
    assert 0.0 < m["mean_risk"] < 1.0
    # vulnerable a (0.9), b (0.4) against audited x (0.95), y (0.05): pairs won 1 + 1 of 4
    assert vulnerable_vs_audited_auroc(labelled, audited, scores) == pytest.approx(0.5)


def test_worst_errors_rank_by_confidence(sets) -> None:
    labelled, audited = sets
    scores = {
        "a": pred([], reentrancy=0.3),
        "b": pred([], arithmetic=0.01),
        "c": pred(["reentrancy"], reentrancy=0.7),
        "x": pred(["other"], other=0.99),
        "y": pred([]),
    }
    errs = worst_errors([labelled, audited], scores, k=5)
    assert [(e.id, e.cls) for e in errs["false_negatives"]] == [("b", "arithmetic"), ("a", "reentrancy")]
    assert [(e.id, e.cls) for e in errs["false_positives"]] == [("x", "other"), ("c", "reentrancy")]
    traits = shared_traits(errs["false_negatives"], labelled.contracts + audited.contracts, "o0")
    assert any(t.startswith("era 0.4") for t in traits)
    assert traits[-1] == "compile condition: o0"


def test_era_of() -> None:
    assert era_of("v0.4.26+commit.4563c3fc") == "0.4"
    assert era_of("0.8.26") == "0.8"
    assert era_of(None) == "unknown"


def test_bytecode_of_conditions() -> None:
    rec = {"bytecode": "0x00", "bytecode_variants": {"o0": "0x00", "o1-r200": "0x01"}}
    assert bytecode_of(rec, "o1-r200") == "0x01"
    assert bytecode_of({"bytecode": "0x00"}, "o0") == "0x00"
    assert bytecode_of({"bytecode": "0x00"}, "o1-r200") is None


def test_measure_and_markdown_have_every_row_and_set(sets) -> None:
    labelled, audited = sets
    rows = [
        Row("bytecode_detector", "o0", {"a": pred(["reentrancy"]), "x": pred([])}),
        Row("slither", "source", {"a": pred([]), "b": pred([]), "x": pred(["reentrancy"])}),
    ]
    results = measure(rows, [labelled, audited], k=3)
    assert [r["model"] for r in results] == ["bytecode_detector", "slither"]
    assert results[0]["sets"]["cgt_test"]["recall"] == 1.0
    assert results[1]["sets"]["real_code"]["flagged_share"] == 1.0
    md = markdown(results, [labelled, audited], {"models": {}, "slither_classes": ["reentrancy"]})
    assert "| bytecode_detector | o0 | 1.00 |" in md
    assert "reentrancy*" in md  # Slither covers it
    assert "worst false negatives" in md
    assert "## real_code flagged, by family (contracts)" in md
    assert "| slither | source | 100% | — |" in md  # x (p1) flagged; y (p2) not scored by that row
    assert "| bytecode_detector | o0 | 0% | — |" in md


def test_by_era_shows_a_model_that_reads_a_contracts_age(sets, tmp_path) -> None:
    """Scores that follow the era, not the flaw: the summary and its table show it, and scores.jsonl keeps
    every scored contract of every row."""
    labelled, audited = sets
    old = pred(["reentrancy"], reentrancy=0.8)
    scores = {"a": old, "b": old, "c": pred([], reentrancy=0.2), "x": pred([], reentrancy=0.1)}
    summary = by_era(labelled, scores)
    assert summary == {
        "0.4": {"contracts": 2, "flagged_share": 1.0, "median_top_prob": pytest.approx(0.8)},
        "0.8": {"contracts": 1, "flagged_share": 0.0, "median_top_prob": pytest.approx(0.2)},
    }
    many = BenchSet("cgt_test", [contract(f"o{i}", [], era="0.4") for i in range(5)] + labelled.contracts)
    rows = [Row("bytecode_detector", "o0", {**scores, **{f"o{i}": old for i in range(5)}})]
    results = measure(rows, [many, audited], k=1)
    assert results[0]["sets"]["real_code"]["by_era"]["0.8"]["contracts"] == 1  # y is not scored
    md = markdown(results, [many, audited], {"models": {}})
    assert "| model | condition | cgt_test 0.4 (7) |" in md  # eras with fewer than 5 contracts left out
    assert "| bytecode_detector | o0 | 0.80 (100%) |" in md
    write_scores(tmp_path / "scores.jsonl", rows, [many, audited])
    lines = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert len(lines) == 9 and not list(tmp_path.glob("*.tmp"))
    first = next(line for line in lines if line["id"] == "a")
    assert first["era"] == "0.4" and first["labels"] == ["reentrancy"] and first["flagged"] == ["reentrancy"]
    assert first["probs"]["reentrancy"] == 0.8
    assert {line["set"] for line in lines} == {"cgt_test", "real_code"}


def test_config_errors_and_composition(tmp_path) -> None:
    with pytest.raises(ConfigError, match="real_world.sets"):
        config_dataclass(RealWorldConfig, {"sets": ["cgt_test", "mainnet"]}, "real_world")
    with pytest.raises(ConfigError, match="real_world.audited_split"):
        config_dataclass(RealWorldConfig, {"audited_split": "val"}, "real_world")
    with pytest.raises(DataError, match="real_world.split_from"):
        split_records(RealWorldConfig(split_from=str(tmp_path)), OmegaConf.create({}))
    with pytest.raises(DataError, match="no such checkpoint"):
        resolve_models(RealWorldConfig(models={"bytecode_detector": str(tmp_path / "x.ckpt")}))
    cfg = compose_config("eval.yaml", ["experiment=real_world"])
    assert cfg.real_world.sets == ["cgt_test", "solidifi", "real_code"]
    assert OmegaConf.select(cfg, "real_world.models.bytecode_detector") == "latest"


def test_latest_checkpoint_picks_newest_run_of_the_model(tmp_path) -> None:
    runs = tmp_path / "train" / "runs"
    for name, target in [
        ("2026-01-01_00-00-00", "training_pipeline.models.bytecode_detector.BytecodeDetector"),
        ("2026-01-02_00-00-00", "training_pipeline.models.bytecode_detector.BytecodeDetector"),
        ("2026-01-03_00-00-00", "training_pipeline.models.code_analyzer.CodeAnalyzer"),
    ]:
        (runs / name / "checkpoints").mkdir(parents=True)
        (runs / name / "checkpoints" / "best.ckpt").write_bytes(b"x")
        (runs / name / "config_resolved.yaml").write_text(f"model:\n  _target_: {target}\n")
    found = latest_checkpoint("bytecode_detector", tmp_path)
    assert found is not None and found.parts[-3] == "2026-01-02_00-00-00"
    assert latest_checkpoint("behavior_model", tmp_path) is None


def test_nothing_to_evaluate_is_one_clear_error(tmp_path, monkeypatch) -> None:
    from training_pipeline.errors import UserError
    from training_pipeline.scan import benchmark

    monkeypatch.setattr(benchmark, "slither_scores", lambda *a: ({}, []))
    cfg = RealWorldConfig(models={"bytecode_detector": None}, pipeline=None)
    with pytest.raises(UserError, match="no model, train-all run or Slither"):
        benchmark.collect_rows(cfg, [], {}, OmegaConf.create({}))


def test_auto_split_follows_the_first_models_run(tmp_path) -> None:
    from training_pipeline.scan.benchmark import resolve_auto

    assert resolve_auto(RealWorldConfig(), {}).split_from is None
    assert resolve_auto(RealWorldConfig(), {}).audited_split == "all"
    for sources, expected in ((["corpus", "cgt"], "all"), (["corpus", "cgt", "real_code"], "test")):
        run = tmp_path / "-".join(sources)
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "best.ckpt").write_bytes(b"x")
        (run / "config_resolved.yaml").write_text(f"data:\n  sources: {sources}\n")
        cfg = resolve_auto(RealWorldConfig(), {"bytecode_detector": run / "checkpoints" / "best.ckpt"})
        assert cfg.split_from == str(run / "checkpoints" / "best.ckpt") and cfg.audited_split == expected
        # split_from named as a run dir (as its config comment says) reads the same config: the audited set
        # is that run's held-out groups, never all of the code it trained and validated on
        named = RealWorldConfig(split_from=str(run))
        by_dir = resolve_auto(named, {"bytecode_detector": tmp_path / "x.ckpt"})
        assert by_dir.split_from == str(run) and by_dir.audited_split == expected


def test_pipeline_models_are_the_train_all_runs_full_stages(tmp_path) -> None:
    """``models.<m>=pipeline`` scores the aggregator's own base models; the held-out split follows it."""
    import json

    from training_pipeline.scan.benchmark import resolve_auto

    pdir = tmp_path / "pipeline"
    stage = pdir / "stages" / "bytecode_detector" / "full"
    (stage / "checkpoints").mkdir(parents=True)
    (stage / "checkpoints" / "best.ckpt").write_bytes(b"x")
    (stage / "config_resolved.yaml").write_text("data:\n  sources: [corpus, cgt, real_code]\n")
    base = {
        "bytecode": {
            "model": "bytecode_detector",
            "checkpoint": "stages/bytecode_detector/full/checkpoints/best.ckpt",
        }
    }
    (pdir / "pipeline.json").write_text(
        json.dumps({"status": "completed", "artifacts": {"base_models": base}})
    )
    cfg = RealWorldConfig(models={"bytecode_detector": "pipeline"}, pipeline=str(pdir))
    models = resolve_models(cfg)
    assert models == {"bytecode_detector": stage / "checkpoints" / "best.ckpt"}
    auto = resolve_auto(cfg, models)
    assert auto.split_from == str(stage / "checkpoints" / "best.ckpt") and auto.audited_split == "test"
    with pytest.raises(ConfigError, match="trained no code_analyzer"):
        resolve_models(RealWorldConfig(models={"code_analyzer": "pipeline"}, pipeline=str(pdir)))
    with pytest.raises(ConfigError, match="no train-all run"):
        resolve_models(RealWorldConfig(models={"code_analyzer": "pipeline"}, pipeline=None))


def test_aggregator_flags_are_the_reports_tuned_flags_not_half() -> None:
    """The aggregator row flags what the scan report flags (its thresholds, tuned under the audited budget):
    a class at 0.7 below its threshold is not flagged, one at 0.3 above its threshold is."""
    from training_pipeline.scan.benchmark import _aggregator_scores
    from training_pipeline.scan.inputs import ScanInput

    class FakeScanner:
        def scan(self, items):
            vulns = {"reentrancy": 0.7, "arithmetic": 0.3}
            return [{"risk": 0.6, "vulnerabilities": vulns, "flagged": ["arithmetic"]}, {"risk": None}]

    scores = _aggregator_scores(FakeScanner(), [ScanInput("a", bytecode="00"), ScanInput("b", bytecode="00")])
    assert set(scores) == {"a"}
    assert scores["a"].flagged == ["arithmetic"] and scores["a"].risk == 0.6


def test_a_stub_without_callable_code_is_scored_as_a_scan_reports_it() -> None:
    """A base model's row: the same probabilities, but no flag and risk 0 for runtime code that cannot act
    (``has_callable_code``), as the scan report rates it; a source-only input is never judged by bytecode."""
    from training_pipeline.scan.benchmark import _model_scores
    from training_pipeline.scan.bytecode import has_callable_code
    from training_pipeline.scan.inputs import ScanInput

    class FakeView:
        def predict(self, items):
            return [{"probs": {"reentrancy": 0.9}, "predicted": ["reentrancy"]} for _ in items]

    stub, live = "0x6080604052600080fdfe", "0x608060405260043610603f575b00"
    assert not has_callable_code(stub) and has_callable_code(live) and has_callable_code("0xzz")
    items = [ScanInput("stub", bytecode=stub), ScanInput("live", bytecode=live), ScanInput("src", "a;")]
    scores = _model_scores(FakeView(), items)
    assert scores["stub"].flagged == [] and scores["stub"].risk == 0.0
    assert scores["stub"].probs["reentrancy"] == 0.9
    assert scores["live"].flagged == ["reentrancy"] and scores["live"].risk > 0
    assert scores["src"].flagged == ["reentrancy"]


def test_audited_held_out_set_is_the_runs_own_records(monkeypatch) -> None:
    # audited_split=test: the npm contracts of the run's held-out groups, as that run loaded them (here with
    # its two compile variants), never rebuilt from the benchmark's own data config
    from training_pipeline.scan import benchmark

    def record(rid: str, origin: str, labels=()) -> dict:
        variants = {"o0": "0x6001", "o1-r200": "0x6002"}
        return {"id": rid, "origin": origin, "bytecode": "0x6001", "bytecode_variants": variants,
                "labels": list(labels), "negative_labels": [], "family": "pkg"}  # fmt: skip

    npm = [record(f"npm/{c}", "real_code") for c in "abc"]
    rows = [record("cgt/1", "cgt", ["reentrancy"]), *npm, record("cgt/2", "cgt")]
    names = ["test", "test", "unused", "train", "val"]
    monkeypatch.setattr(benchmark, "split_records", lambda cfg, data: (rows, names))

    def no_reload(name):
        raise AssertionError(f"{name} was loaded again from the benchmark's data config")

    monkeypatch.setattr(benchmark, "source_loader", no_reload)
    cfg = RealWorldConfig(sets=["cgt_test", "real_code"], split_from="run", audited_split="test")
    sets, records = benchmark.load_sets(cfg, OmegaConf.create({"data_dir": "unused"}))
    by_name = {s.name: [c.id for c in s.contracts] for s in sets}
    assert by_name == {"cgt_test": ["cgt/1"], "real_code": ["npm/a", "npm/b"]}
    assert bytecode_of(records["npm/b"], "o1-r200") == "0x6002"
