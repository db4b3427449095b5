"""The aggregator's inputs: the cross-fitted models' mean at test and scan time, the static-analysis view from
cached Slither findings, the guard against a better single view, and run dirs from before these."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from rich.console import Console

from training_pipeline import taxonomy
from training_pipeline.data.stacked import StackedPredictionData, write_stacked
from training_pipeline.data.weak_labels.cache import FindingsCache
from training_pipeline.data.weak_labels.features import (
    STATIC_KIND,
    STATIC_VIEW,
    mapped_detectors,
    static_feature_names,
)
from training_pipeline.data.weak_labels.mapping import DetectorMapping
from training_pipeline.data.weak_labels.slither import source_sha256
from training_pipeline.errors import DataError
from training_pipeline.pipeline.compare import compare, guard_choice, guarded_risk
from training_pipeline.pipeline.stack import ModelView, _static_names, build_stacked
from training_pipeline.pipeline.stages import StageResult
from training_pipeline.pipeline.static import static_view
from training_pipeline.risk import RiskTarget
from training_pipeline.scan.fusion import aggregator_input
from training_pipeline.scan.inputs import ScanInput
from training_pipeline.scan.models import BaseView, ModelSpec, aggregator_inputs
from training_pipeline.scan.report import build_report

VULN = list(taxonomy.VULNERABILITY_CLASSES)


def _probs(p: float) -> dict[str, float]:
    return dict.fromkeys(VULN, p)


def _write(path: Path, preds: dict[str, float], top_lines: bool = False, built: Sequence[str] = ()) -> str:
    """A prediction file; ``built``: the ids predicted from the o1-r200 build (``compile_variant``)."""
    lines = []
    for rid, p in preds.items():
        rec = {"id": rid, "probs": _probs(p), "labels": ["reentrancy"] if p > 0.5 else []}
        if top_lines:
            rec["top_lines"] = {"reentrancy": [[3, 0.9]]}
        if rid in built:
            rec["compile_variant"] = "o1-r200"
        lines.append(json.dumps(rec))
    path.write_text("\n".join(lines) + "\n")
    return path.name


def test_crossfit_mean_test_rows_average_the_fold_models(tmp_path: Path) -> None:
    """Two fold models with known outer-test outputs: the test rows hold their mean, the full model's
    probabilities are not used, its explanations are."""
    test_ids, a, b = ["t1", "t2"], ["a1", "a2"], ["b1", "b2"]
    fold1 = StageResult(
        "m/fold1", "trained", 0, "h", _write(tmp_path / "f1.jsonl", {"a1": 0.2, "a2": 0.6}), None,
        {"train": b, "val": [], "test": a},
    )  # fmt: skip
    fold2 = StageResult(
        "m/fold2", "trained", 0, "h", _write(tmp_path / "f2.jsonl", {"b1": 0.3, "b2": 0.7}), None,
        {"train": a, "val": [], "test": b},
    )  # fmt: skip
    full = StageResult(
        "m/full", "trained", 0, "h", _write(tmp_path / "full.jsonl", {"t1": 0.99, "t2": 0.99}, True), None,
        {"train": a, "val": b, "test": test_ids},
    )  # fmt: skip
    _write(tmp_path / "o1.jsonl", {"t1": 0.1, "t2": 0.4})
    _write(tmp_path / "o2.jsonl", {"t1": 0.3, "t2": 0.8})
    views = [ModelView("m", "bytecode", "contract_classes")]
    stages = {"m/fold1": fold1, "m/fold2": fold2, "m/full": full}
    members = {"bytecode": [tmp_path / "o1.jsonl", tmp_path / "o2.jsonl"]}
    rows, manifest = build_stacked(tmp_path, views, stages, ["fold1", "fold2"], members)
    test = {r["id"]: r for r in rows if r["split"] == "test"}
    assert manifest["test_inputs"] == "crossfit_mean"
    assert math.isclose(test["t1"]["views"]["bytecode"]["reentrancy"], 0.2)
    assert math.isclose(test["t2"]["views"]["bytecode"]["other"], 0.6)
    assert test["t1"]["top_lines"] == {"reentrancy": [[3, 0.9]]}  # explanations: the full model's
    full_rows, full_manifest = build_stacked(tmp_path, views, stages, ["fold1", "fold2"])
    assert full_manifest["test_inputs"] == "full"
    assert {r["views"]["bytecode"]["reentrancy"] for r in full_rows if r["split"] == "test"} == {0.99}
    assert [r for r in rows if r["split"] != "test"] == [r for r in full_rows if r["split"] != "test"]


def test_scanner_view_averages_its_fold_models_for_the_aggregator_only() -> None:
    """A scanner view with fold models hands the aggregator their mean probabilities; the view's own output
    (probabilities, predicted classes) stays the full model's, so the two never mix in one report entry."""
    known = {"full": 0.9, "fold_a": 0.2, "fold_b": 0.4}

    def fake_predict(module, featurizer, items, batch_size):
        return [{"probs": _probs(known[module]), "predicted": [module], "top_lines": None} for _ in items]

    spec = ModelSpec(
        "bytecode", "contract_classes", "bytecode_detector", "bytecode", "bytecode", None, fake_predict
    )
    view = BaseView(spec, "bytecode_detector", "full", None, folds=[("fold_a", None), ("fold_b", None)])
    out = view.predict([ScanInput("x", bytecode="0x00"), ScanInput("y")])
    assert out[1] is None
    assert all(math.isclose(p, 0.3) for p in out[0]["aggregator_probs"].values())
    assert out[0]["probs"]["reentrancy"] == 0.9 and out[0]["predicted"] == ["full"]
    alone = BaseView(spec, "bytecode_detector", "full", None).predict([ScanInput("x", bytecode="0x00")])
    assert alone[0]["probs"]["reentrancy"] == 0.9 and "aggregator_probs" not in alone[0]


def test_fusion_and_the_guard_read_the_fold_mean_the_report_shows_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With fold models the aggregator and the guard read their mean (what the run validated and tested
    on); the view's entry keeps the full model's risk and probabilities and adds the mean as
    ``aggregator_probs``."""
    spec = ModelSpec("bytecode", "contract_classes", "bytecode_detector", "bytecode", "bytecode", None, None)
    view = BaseView(spec, "bytecode_detector", None, None)
    out = {
        "probs": {"reentrancy": 0.9}, "aggregator_probs": {"reentrancy": 0.3}, "predicted": ["reentrancy"],
        "top_lines": None,
    }  # fmt: skip
    fed = []

    def fake_fuse(aggregator, outs):
        fed.append(aggregator_input(outs["bytecode"]))
        return {"risk": 0.1, "risk_level": "low", "vulnerabilities": {"reentrancy": 0.2}}

    monkeypatch.setattr("training_pipeline.scan.report.fuse", fake_fuse)
    aggregator = SimpleNamespace(class_names=["reentrancy"], thresholds=torch.tensor([0.35]))
    item, levels = ScanInput("x", bytecode="0x5b00"), {"low": 0.0}
    report = build_report(item, [view], {"bytecode": out}, aggregator, RiskTarget(), levels, "bytecode")
    own = build_report(item, [view], {"bytecode": {**out, "aggregator_probs": None}}, aggregator,
                       RiskTarget(), levels, "bytecode")  # fmt: skip
    assert fed == [{"reentrancy": 0.3}, {"reentrancy": 0.9}]
    entry = report["views"]["bytecode"]
    assert entry["probs"] == {"reentrancy": 0.9} and entry["predicted"] == ["reentrancy"]
    assert entry["aggregator_probs"] == {"reentrancy": 0.3}
    assert "aggregator_probs" not in own["views"]["bytecode"]
    assert entry["risk"] == own["views"]["bytecode"]["risk"] == own["risk"]  # the full model's own risk
    assert report["guard"]["view"] == "bytecode" and report["risk"] < entry["risk"]  # the guard: the mean's


def _finding(check: str, impact: str) -> dict:
    return {"check": check, "impact": impact, "confidence": "Medium", "lines": [4]}


def test_static_view_features_and_mask_from_cached_findings(tmp_path: Path) -> None:
    cache = FindingsCache(tmp_path)
    sources = {
        "hit": "contract A {}",
        "clean": "contract B {}",
        "failed": "contract C {}",
        "absent": "contract D {}",
    }
    findings = [
        _finding("reentrancy-eth", "High"),
        _finding("reentrancy-events", "Low"),
        _finding("timestamp", "Low"),
    ]
    for rid, status, found in (("hit", "ok", findings), ("clean", "ok", []), ("failed", "compile_error", [])):
        cache.put({"sha256": source_sha256(sources[rid]), "status": status, "findings": found})
    cfg = {"enabled": True, "fill": False, "cache_dir": str(tmp_path)}
    feats = static_view(cfg, sources, Console(file=open("/dev/null", "w")))  # noqa: SIM115
    assert feats["failed"] is None and feats["absent"] is None  # no usable analysis: masked, not "clean"
    hit, clean = feats["hit"], feats["clean"]
    assert list(hit) == static_feature_names() and len(hit) == 3 * len(VULN)
    assert hit["reentrancy:present"] == 1.0 and math.isclose(hit["reentrancy:count"], math.log1p(2))
    assert hit["reentrancy:impact"] == 1.0 and hit["time_manipulation:impact"] == pytest.approx(0.5)
    assert hit["arithmetic:present"] == 0.0 and set(clean.values()) == {0.0}
    rows = [
        {"id": rid, "split": split, "views": {"bytecode": _probs(0.5), STATIC_VIEW: feats[rid]}, "labels": []}
        for rid, split in zip(sources, ("train", "val", "test", "train"), strict=True)
    ]
    for r in rows:
        if r["views"][STATIC_VIEW] is None:
            del r["views"][STATIC_VIEW]
    manifest = {
        "views": [
            {"view": "bytecode", "model": "m", "kind": "contract_classes", "features": VULN},
            {
                "view": STATIC_VIEW,
                "model": "slither",
                "kind": STATIC_KIND,
                "features": static_feature_names(),
            },
        ]
    }
    write_stacked(tmp_path / "run", rows, manifest)
    dm = StackedPredictionData(pipeline_dir=str(tmp_path / "run"))
    dm.setup()
    assert dm.splits["all"].mask[:, 1].tolist() == [True, True, False, False]
    assert np.isnan(dm.splits["all"].x[2, len(VULN) :]).all()


def test_static_view_per_detector_features_say_which_detector_fired(tmp_path: Path) -> None:
    cache = FindingsCache(tmp_path)
    sources = {"origin": "contract A {}", "send": "contract B {}"}
    found = {
        "origin": [_finding("tx-origin", "Medium"), _finding("timestamp", "Low")],
        "send": [
            _finding("arbitrary-send-eth", "High"),
            {**_finding("suicidal", "High"), "confidence": "Nope"},
        ],
    }
    for rid, findings in found.items():
        cache.put({"sha256": source_sha256(sources[rid]), "status": "ok", "findings": findings})
    quiet = Console(file=open("/dev/null", "w"))  # noqa: SIM115
    cfg = {"enabled": True, "fill": False, "cache_dir": str(tmp_path)}
    summary = static_view(cfg, sources, quiet)
    feats = static_view({**cfg, "detectors": True}, sources, quiet)
    detectors = mapped_detectors(DetectorMapping.from_config())
    assert {"tx-origin", "arbitrary-send-eth", "suicidal", "timestamp"} <= set(detectors)
    for rid in sources:  # the per-class summary is the same either way, and without the option it is all
        assert list(summary[rid]) == static_feature_names()
        assert list(feats[rid]) == static_feature_names(detectors)
        assert {k: feats[rid][k] for k in summary[rid]} == summary[rid]
    origin, send = feats["origin"], feats["send"]
    # both say "access control" in the summary; only the detector features tell the two apart
    assert origin["access_control:present"] == send["access_control:present"] == 1.0
    assert origin["detector:tx-origin"] == 1.0 and origin["detector:arbitrary-send-eth"] == 0.0
    assert send["detector:arbitrary-send-eth"] == 1.0 and send["detector:tx-origin"] == 0.0
    assert origin["detector:timestamp"] == 1.0 and send["detector:timestamp"] == 0.0
    assert send["detector:suicidal"] == 0.0  # a finding under the confidence threshold counts for nothing
    assert _static_names(feats) == static_feature_names(detectors)
    assert _static_names({**summary, "masked": None}) == static_feature_names()
    with pytest.raises(DataError, match="different feature sets"):
        _static_names({"a": summary["origin"], "b": feats["origin"]})


def test_static_view_is_left_out_when_nothing_is_cached(tmp_path: Path) -> None:
    cfg = {"enabled": True, "fill": False, "cache_dir": str(tmp_path)}
    assert static_view(cfg, {"a": "contract A {}"}, Console(file=open("/dev/null", "w"))) is None  # noqa: SIM115


class ConstantAggregator(torch.nn.Module):
    """An aggregator that knows nothing: the same risk for every contract."""

    def predict_risk(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"risk": torch.full((len(x),), 0.5)}


def _guard_run(tmp_path: Path) -> StackedPredictionData:
    """The bytecode view tells risky from safe; the second one is noise."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        risky = i % 2 == 0
        views = {"bytecode": _probs(0.9 if risky else 0.05), "noise": _probs(float(rng.random()))}
        if i % 10 == 3:
            del views["bytecode"]
        split = ("train", "val", "test")[i % 3]
        rows.append(
            {"id": f"c{i}", "split": split, "views": views, "labels": ["reentrancy"] if risky else []}
        )
    manifest = {
        "views": [
            {"view": v, "model": f"{v}_model", "kind": "contract_classes", "features": VULN}
            for v in ("bytecode", "noise")
        ]
    }
    write_stacked(tmp_path, rows, manifest)
    return StackedPredictionData(pipeline_dir=str(tmp_path))


def test_guard_picks_the_single_view_that_is_better_on_validation(tmp_path: Path) -> None:
    dm = _guard_run(tmp_path)
    guard = guard_choice(ConstantAggregator(), dm)
    assert guard["chosen"] == "bytecode" and guard["best_single"]["auroc"] == 1.0
    assert guard["best_single"]["aggregator_auroc"] == 0.5
    # a margin: the single view must be better by more than it (1.0 vs 0.5 clears 0.4, not 0.5)
    assert guard_choice(ConstantAggregator(), dm, margin=0.4)["chosen"] == "bytecode"
    assert guard_choice(ConstantAggregator(), dm, margin=0.5)["chosen"] == "aggregator"
    rows = {r["method"]: r for r in compare(ConstantAggregator(), dm, guard) if r["views"] == "all views"}
    assert rows["guarded (bytecode)"]["auroc"] > rows["aggregator"]["auroc"]
    agg, single = np.array([0.5, 0.5]), np.array([[0.9, 0.1], [np.nan, 0.2]])
    assert guarded_risk(agg, single, ["bytecode", "noise"], "bytecode").tolist() == [0.9, 0.5]


def test_scanner_applies_the_guard_where_the_input_has_the_view(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ModelSpec("bytecode", "contract_classes", "bytecode_detector", "bytecode", "bytecode", None, None)
    view = BaseView(spec, "bytecode_detector", None, None)
    out = {"probs": {"reentrancy": 0.9}, "predicted": ["reentrancy"], "top_lines": None}
    fused = {"risk": 0.1, "risk_level": "low", "vulnerabilities": {"reentrancy": 0.4}}
    monkeypatch.setattr("training_pipeline.scan.report.fuse", lambda aggregator, outs: dict(fused))
    item, outs, levels = ScanInput("x", bytecode="0x5b00"), {"bytecode": out}, {"low": 0.0}
    aggregator = SimpleNamespace(class_names=["reentrancy"], thresholds=torch.tensor([0.35]))
    guarded = build_report(item, [view], outs, aggregator, RiskTarget(), levels, "bytecode")
    plain = build_report(item, [view], outs, aggregator, RiskTarget(), levels)
    assert plain["flagged"] == ["reentrancy"]  # 0.4 reaches the aggregator's tuned 0.35
    assert plain["risk"] == 0.1 and "guard" not in plain
    assert guarded["risk"] == guarded["views"]["bytecode"]["risk"] > 0.1
    assert guarded["guard"] == {"view": "bytecode", "aggregator_risk": 0.1}
    assert guarded["vulnerabilities"] == fused["vulnerabilities"]


@pytest.mark.parametrize("guard", [None, "bytecode"])
def test_a_stub_without_callable_code_is_never_flagged(monkeypatch: pytest.MonkeyPatch, guard) -> None:
    """A constants-only contract compiles to a runtime that reverts every call (plus solc's metadata): the
    models may score it, the report flags nothing and rates it 0, and says why; the same scores on code with a
    function (a jump target) are flagged as before."""
    spec = ModelSpec("bytecode", "contract_classes", "bytecode_detector", "bytecode", "bytecode", None, None)
    view = BaseView(spec, "bytecode_detector", None, None)
    out = {"probs": {"reentrancy": 0.9}, "predicted": ["reentrancy"], "top_lines": None}
    fused = {"risk": 0.7, "risk_level": "high", "vulnerabilities": {"reentrancy": 0.8}}
    monkeypatch.setattr("training_pipeline.scan.report.fuse", lambda aggregator, outs: dict(fused))
    aggregator = SimpleNamespace(class_names=["reentrancy"], thresholds=torch.tensor([0.35]))
    levels = {"low": 0.0, "high": 0.5}
    stub = "0x6080604052600080fd00a165627a7a72305820" + "ab" * 32 + "0029"  # solc 0.4: revert, metadata
    called = "0x6080604052600436106049575b600080fd00a165627a7a72305820" + "ab" * 32 + "0029"
    reports = {
        code: build_report(ScanInput("c", bytecode=code, notes=["given"]), [view], {"bytecode": out},
                           aggregator, RiskTarget(), levels, guard)
        for code in (stub, called)
    }  # fmt: skip
    inert, live = reports[stub], reports[called]
    assert inert["flagged"] == [] and inert["risk"] == 0.0 and inert["risk_level"] == "low"
    assert inert["notes"][0] == "given" and inert["notes"][1].startswith("no callable code")
    assert inert["vulnerabilities"] == fused["vulnerabilities"]  # what the models said stays visible
    assert live["flagged"] == ["reentrancy"] and live["risk"] > 0.5 and live["notes"] == ["given"]


def test_run_dirs_from_before_crossfit_mean_scan_with_the_full_models(
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = {"artifacts": {"base_models": {"bytecode": {"model": "bytecode_detector", "checkpoint": "x.ckpt"}}}}
    assert aggregator_inputs(Path("old"), old) == "full"
    claims = {"artifacts": {**old["artifacts"], "aggregator_inputs": "crossfit_mean"}}
    assert aggregator_inputs(Path("odd"), claims) == "full"  # no fold checkpoints recorded: full, logged
    assert "no fold checkpoints" in caplog.text
    folds = [{"fold": 1, "checkpoint": "f.ckpt", "config": "c.yaml"}]
    new = {"artifacts": {"aggregator_inputs": "crossfit_mean", "base_models": {"b": {"folds": folds}}}}
    assert aggregator_inputs(Path("new"), new) == "crossfit_mean"


def _variant_stages(tmp_path: Path) -> tuple[list[ModelView], dict[str, StageResult]]:
    """Two fold models (out-of-fold a1, a2 / b1 val) and a full model (test t1), bytecode and source views."""
    stages = {}
    for model in ("b", "s"):
        stages[f"{model}/fold1"] = StageResult(
            f"{model}/fold1", "trained", 0, "h", _write(tmp_path / f"{model}1.jsonl", {"a1": 0.2, "a2": 0.6}),
            None, {"train": ["b1"], "val": [], "test": ["a1", "a2"]},
        )  # fmt: skip
        stages[f"{model}/fold2"] = StageResult(
            f"{model}/fold2", "trained", 0, "h", _write(tmp_path / f"{model}2.jsonl", {"b1": 0.3}), None,
            {"train": ["a1", "a2"], "val": [], "test": ["b1"]},
        )  # fmt: skip
        stages[f"{model}/full"] = StageResult(
            f"{model}/full", "trained", 0, "h", _write(tmp_path / f"{model}f.jsonl", {"t1": 0.9}), None,
            {"train": ["a1", "a2"], "val": ["b1"], "test": ["t1"]},
        )  # fmt: skip
    views = [ModelView("b", "bytecode", "contract_classes"), ModelView("s", "source", "contract_classes")]
    return views, stages


def test_stack_variants_add_a_train_and_val_row_per_contract_built_another_way(tmp_path: Path) -> None:
    """The fold models' out-of-fold predictions from the optimizer-on build become one more row per train or
    val contract that has the build: its bytecode view from that build, its labels and other views its own; no
    test row, none for a contract predicted from its plain bytecode (a2: no such build)."""
    views, stages = _variant_stages(tmp_path)
    _write(tmp_path / "v1.jsonl", {"a1": 0.05, "a2": 0.95}, built=["a1"])
    _write(tmp_path / "v2.jsonl", {"b1": 0.45}, built=["b1"])
    variants = {"bytecode": {"o1-r200": [tmp_path / "v1.jsonl", tmp_path / "v2.jsonl"]}}
    rows, manifest = build_stacked(tmp_path, views, stages, ["fold1", "fold2"], variant_members=variants)
    by_id = {r["id"]: r for r in rows}
    assert sorted(by_id) == ["a1", "a1~o1-r200", "a2", "b1", "b1~o1-r200", "t1"]
    extra, own = by_id["a1~o1-r200"], by_id["a1"]
    assert extra["views"]["bytecode"]["reentrancy"] == 0.05 and own["views"]["bytecode"]["reentrancy"] == 0.2
    assert extra["views"]["source"] == own["views"]["source"]  # the source view has no compile setting
    assert extra["split"] == own["split"] == "train" and extra["labels"] == own["labels"]
    assert by_id["b1~o1-r200"]["split"] == "val" and by_id["b1~o1-r200"]["variant"] == "o1-r200"
    assert manifest["variant_rows"] == {"o1-r200": {"train": 1, "val": 1}}
    assert manifest["counts"] == {"train": 3, "val": 2, "test": 1}
    plain, plain_manifest = build_stacked(tmp_path, views, stages, ["fold1", "fold2"])
    assert [r for r in rows if "variant" not in r] == plain and plain_manifest["variant_rows"] == {}


def test_stack_variants_refuse_predictions_of_other_contracts(tmp_path: Path) -> None:
    """A fold model's variant predictions must cover exactly its out-of-fold contracts: one it trained on
    (or one missing) is a LeakageError naming the fold."""
    from training_pipeline.pipeline.stack import LeakageError

    views, stages = _variant_stages(tmp_path)
    _write(tmp_path / "v1.jsonl", {"a1": 0.05, "b1": 0.95})  # b1: fold1 trained on it
    _write(tmp_path / "v2.jsonl", {"b1": 0.45})
    variants = {"bytecode": {"o1-r200": [tmp_path / "v1.jsonl", tmp_path / "v2.jsonl"]}}
    with pytest.raises(LeakageError, match=r"b/fold1 o1-r200: predicted other contracts.*a2.*b1"):
        build_stacked(tmp_path, views, stages, ["fold1", "fold2"], variant_members=variants)


def test_variant_predictions_predict_the_folds_own_test_split_from_that_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fold model predicts its own test split (its fold and exclusions unchanged) with ``data.variant``
    set, into ``variant_<key>/``; a second call reuses the file while it covers the fold's contracts."""
    from omegaconf import OmegaConf

    from training_pipeline.pipeline import crossfit

    stage_dir = tmp_path / "stages" / "m" / "fold2"
    stage_dir.mkdir(parents=True)
    OmegaConf.save(
        {"data": {"fold": 2, "variant": None, "split": {"exclude_folds": [0]}}, "model": {}, "paths": {},
         "seed": 1, "trainer": {}},
        stage_dir / "config_resolved.yaml",
    )  # fmt: skip
    fold = StageResult(
        "m/fold2", "trained", 0, "h", None, "ckpt", {"train": [], "val": [], "test": ["a", "b"]}
    )
    seen = []
    cfg_ids = fold.split_ids["test"]

    def fake_predict(cfg):
        seen.append(cfg)
        out = Path(cfg.paths.output_dir) / "predictions.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        _write(out, dict.fromkeys(cfg_ids, 0.1))
        return out

    monkeypatch.setattr(crossfit, "predict", fake_predict)
    path = crossfit.variant_predictions(tmp_path, fold, "o1-r200")
    assert path == stage_dir / "variant_o1-r200" / "predictions.jsonl"
    (cfg,) = seen
    assert cfg.data.variant == "o1-r200" and cfg.data.fold == 2 and list(cfg.data.split.exclude_folds) == [0]
    assert cfg.split == "test" and cfg.ckpt_path == str(tmp_path / "ckpt")
    assert crossfit.variant_predictions(tmp_path, fold, "o1-r200") == path and len(seen) == 1  # reused
    fold.split_ids["test"].append("c")  # the fold now tests another contract: predicted again
    crossfit.variant_predictions(tmp_path, fold, "o1-r200")
    assert len(seen) == 2


@pytest.mark.parametrize(
    ("value", "adapter", "match"),
    [
        ("o1-r200", "contract_classes", "expected a list"),
        (["o1-r200", "o1-r200"], "contract_classes", "a variant twice"),
        (["o1~r200"], "contract_classes", "expected a list"),
        (["o1-r200"], "anomaly_classes", "only a contract model"),
    ],
)
def test_stack_variants_config_errors(value, adapter: str, match: str) -> None:
    from training_pipeline.errors import ConfigError
    from training_pipeline.pipeline.runner import stack_variants

    with pytest.raises(ConfigError, match=match):
        stack_variants({"stack_variants": value}, ModelView("m", "v", adapter))
    assert stack_variants({}, ModelView("m", "v", "contract_classes")) == []
