"""scripts/train_all.py end to end, tiny: cross-fitting by ids, stacking, aggregator, resume, scanning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY_CORPUS, compose_config
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from training_pipeline.pipeline.runner import run_pipeline

ONE_STEP = ["trainer.max_epochs=1", "+trainer.limit_train_batches=1"]
MODEL_OVERRIDES = {
    "bytecode_detector": [
        *ONE_STEP,
        "data.batch_size=8",
        "model.channels=16",
        "model.embed_dim=16",
        "model.depth=2",
    ],
    "code_analyzer": [
        *ONE_STEP,
        "data.tokenizer.vocab_size=300",
        "model.hidden_size=16",
        "model.num_layers=1",
        "model.num_heads=2",
        "model.intermediate_size=32",
        "data.window.size=64",
        "data.window.stride=48",
        "data.window.max_windows=2",
    ],
    "behavior_model": [*ONE_STEP, "model.d_model=8", "model.hidden=8", "data.max_length=32"],
}
ROOT = Path(__file__).resolve().parents[2]
INNER = 3  # the fewest that work: 4 corpus folds (outer test + test, val and train of each inner model)


def _quoted(items: list[str]) -> str:
    return "[" + ",".join(f'"{i}"' for i in items) + "]"


def pipeline_cfg(pipeline_dir: Path, data_dir: Path, *extra: str):
    overrides = [
        "name=tiny",
        f"paths.data_dir={data_dir}",
        f"corpus.n_contracts={TINY_CORPUS}",
        f"inner_folds={INNER}",
        "real_data.enabled=false",  # the generated corpus alone (real sources: the last test below)
        f"aggregator.overrides={_quoted(['trainer.max_epochs=3'])}",
        "aggregator_inputs=crossfit_mean",  # the longer path (fold models at test and scan time)
        *(f"models.{m}.overrides={_quoted(o)}" for m, o in MODEL_OVERRIDES.items()),
        *extra,
    ]
    cfg = compose_config("pipeline.yaml", overrides, pipeline_dir)
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, dict]:
    pdir = tmp_path_factory.mktemp("pipeline") / "tiny"
    summary = run_pipeline(pipeline_cfg(pdir, data_dir))
    return pdir, summary


def _manifest(pdir: Path, stage: str) -> dict:
    return json.loads((pdir / "stages" / stage / "manifest.json").read_text())


def _predicted_ids(pdir: Path, manifest: dict) -> set[str]:
    lines = (pdir / manifest["predictions"]).read_text().splitlines()
    return {json.loads(line)["id"] for line in lines if line.strip()}


def test_crossfit_never_predicts_a_contract_it_trained_on(pipeline) -> None:
    pdir, summary = pipeline
    models = list(summary["artifacts"]["base_models"].values())
    assert {m["model"] for m in models} == set(MODEL_OVERRIDES)
    for m in (m["model"] for m in models):
        full = _manifest(pdir, f"{m}/full")
        outer_test = set(full["split_ids"]["test"])
        assert _predicted_ids(pdir, full) <= outer_test
        oof: list[str] = []
        for k in range(1, INNER + 1):
            inner = _manifest(pdir, f"{m}/fold{k}")
            seen = set(inner["split_ids"]["train"]) | set(inner["split_ids"]["val"])
            predicted = _predicted_ids(pdir, inner)
            assert predicted and not predicted & seen, f"{m}/fold{k} predicted a contract it trained on"
            assert not (seen | set(inner["split_ids"]["test"])) & outer_test, f"{m}/fold{k} saw the test fold"
            oof += predicted
        assert len(oof) == len(set(oof))  # one out-of-fold prediction per contract
        outer_train = set(full["split_ids"]["train"]) | set(full["split_ids"]["val"])
        assert set(oof) == outer_train  # every training contract gets one


def test_stacked_rows_use_oof_for_training_and_the_outer_test_fold_for_test(pipeline) -> None:
    pdir, _ = pipeline
    rows = [json.loads(line) for line in (pdir / "stacked" / "stacked.jsonl").read_text().splitlines()]
    full = _manifest(pdir, "bytecode_detector/full")
    test_ids = set(full["split_ids"]["test"])
    assert {r["id"] for r in rows if r["split"] == "test"} == test_ids
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    assert all(set(r["views"]) == {"bytecode", "source", "behavior"} for r in rows)
    agg = _manifest(pdir, "aggregator")
    assert agg["checkpoint"] and (pdir / agg["checkpoint"]).is_file()
    comparison = json.loads((pdir / "comparison.json").read_text())
    methods = {(r["method"], r["views"]) for r in comparison}
    assert ("aggregator", "all views") in methods and ("max of models", "without behavior") in methods


def test_crossfit_mean_test_rows_and_scanner_average_the_fold_models(pipeline, tmp_path: Path) -> None:
    import shutil

    from training_pipeline.data.stacked import mean_probs
    from training_pipeline.pipeline.views import read_view_predictions
    from training_pipeline.scan import Scanner, read_inputs

    pdir, summary = pipeline
    artifacts = summary["artifacts"]
    assert artifacts["aggregator_inputs"] == "crossfit_mean" and artifacts["guard"]["chosen"]
    rows = [json.loads(line) for line in (pdir / "stacked" / "stacked.jsonl").read_text().splitlines()]
    test = {r["id"]: r for r in rows if r["split"] == "test"}
    art = artifacts["base_models"]["bytecode"]
    assert [f["fold"] for f in art["folds"]] == list(range(1, INNER + 1))
    stage = pdir / "stages" / "bytecode_detector"
    members = [
        read_view_predictions(
            stage / f"fold{f['fold']}" / "outer_test" / "predictions.jsonl", "contract_classes"
        )
        for f in art["folds"]
    ]
    assert all(set(m) == set(test) for m in members)
    rid = next(iter(test))
    expected = mean_probs([m[rid]["probs"] for m in members])
    assert test[rid]["views"]["bytecode"] == pytest.approx(expected)
    comparison = json.loads((pdir / "comparison.json").read_text())
    assert any(r["method"].startswith("guarded") for r in comparison)
    scanner = Scanner.from_pipeline(pdir)
    assert scanner.models["aggregator_inputs"] == "crossfit_mean"
    assert all(len(v.folds) == INNER for v in scanner.views)
    hexfile = Path(__file__).resolve().parents[1] / "fixtures" / "evm" / "vault-0.8.26.hex"
    entry = scanner.scan(read_inputs([str(hexfile)]))[0]["views"]["bytecode"]
    full = next(v.module for v in scanner.views if v.view == "bytecode")
    thresholds = dict(zip(full.class_names, full.thresholds.tolist(), strict=True))
    # the view's entry is the full model's own (its classes at its thresholds), the fold mean beside it
    assert set(entry["predicted"]) == {c for c, p in entry["probs"].items() if p >= thresholds[c]}
    assert set(entry["aggregator_probs"]) == set(entry["probs"])
    assert entry["aggregator_probs"] != entry["probs"]
    old = tmp_path / "old"  # a run dir from before: no aggregator_inputs, no fold checkpoints
    shutil.copytree(pdir, old)
    info = json.loads((old / "pipeline.json").read_text())
    del info["artifacts"]["aggregator_inputs"], info["artifacts"]["guard"]
    for model in info["artifacts"]["base_models"].values():
        del model["folds"]
    (old / "pipeline.json").write_text(json.dumps(info))
    legacy = Scanner.from_pipeline(old)
    assert legacy.models["aggregator_inputs"] == "full" and all(not v.folds for v in legacy.views)
    report = legacy.scan(read_inputs([str(hexfile)]))[0]
    assert 0.0 <= report["risk"] <= 1.0


def test_a_pipeline_package_scans_exactly_like_its_run_dir(pipeline, tmp_path: Path) -> None:
    from training_pipeline.corpus.generator import generate_group
    from training_pipeline.deploy.package import package_run
    from training_pipeline.scan import Scanner, read_inputs

    pdir, _ = pipeline
    packages = package_run(pdir, tmp_path / "packages")
    by_name = {p.name: p for p in packages}
    assert set(by_name) == {
        "scathat-bytecode_detector",
        "scathat-code_analyzer",
        "scathat-behavior_model",
        "scathat-pipeline",
    }
    pipe = by_name["scathat-pipeline"]
    assert pipe.meta["models"] == {p.meta["model"]: p.id for p in packages if p is not pipe}
    assert all(v["folds"] == INNER for v in pipe.meta["views"].values())  # crossfit_mean: folds packaged
    assert pipe.meta["git_commit"] and pipe.meta["data_version"] and pipe.meta["metrics"]["comparison"]
    assert all((p.path.parent / f"{p.path.name}.tar.gz").is_file() for p in packages)
    profile = json.loads((pipe.path / "reference_profile.json").read_text())  # covered by the manifest
    assert profile["features"]["bytecode_length"]["n"] > 0 and profile["scores"]
    vuln, _ = generate_group("vault", "0.8.26", ["reentrancy/call_before_write"], seed=3)
    (tmp_path / "vuln.sol").write_text(vuln.source_code)
    hexfile = Path(__file__).resolve().parents[1] / "fixtures" / "evm" / "vault-0.8.26.hex"
    txs = Path(__file__).resolve().parents[1] / "fixtures" / "tx_csv" / "transactions.csv"
    items = read_inputs([str(tmp_path / "vuln.sol"), str(hexfile)])
    items += read_inputs([str(hexfile)], transactions=str(txs))
    from_dir = Scanner.from_pipeline(pdir).scan(items)
    scanner = Scanner.from_model(str(pipe.path))
    assert scanner.models["package_id"] == pipe.id and scanner.guard == Scanner.from_pipeline(pdir).guard
    assert scanner.scan(items) == from_dir  # every view, folds, aggregator, guard: the same numbers
    single = Scanner.from_model(str(by_name["scathat-code_analyzer"].path))
    assert single.scan(items[:1])[0]["top_lines"]  # the BPE tokenizer and localization travel too


def test_package_register_promote_serve_answers_like_predict(
    pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The deployment path end to end: package -> register -> promote -> serve on 127.0.0.1 -> POST
    /v1/scan gives the probabilities predict.py gives with the same (champion) package."""
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    import predict
    from training_pipeline.corpus.generator import generate_group
    from training_pipeline.deploy import audit
    from training_pipeline.deploy.cli import main as deploy
    from training_pipeline.serve.app import create_app

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("SCATHAT_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    pdir, _ = pipeline
    out = tmp_path / "packages"
    assert deploy(["package", str(pdir), "--out", str(out), "--promote", "champion", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    champion = next(r for r in rows if r["name"] == "scathat-pipeline")
    vuln, _ = generate_group("vault", "0.8.26", ["reentrancy/call_before_write"], seed=5)
    sol = tmp_path / "vuln.sol"
    sol.write_text(vuln.source_code)
    assert predict.main([str(sol), "--json"]) == 0  # default model: models:/scathat-pipeline@champion
    cli = json.loads(capsys.readouterr().out)
    assert cli["models"]["package_id"] == champion["package_id"] and cli["models"]["version"] == 1

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("SCATHAT_API_KEYS", "ci:secret-scan-key:scan")
    app = create_app({"inference_log": {"path": str(tmp_path / "inference.jsonl")}})
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/readyz").status_code == 200
        headers = {"Authorization": "Bearer secret-scan-key"}
        answer = httpx.post(f"{url}/v1/scan", json={"source": sol.read_text()}, headers=headers, timeout=60)
        assert answer.status_code == 200, answer.text
        served = answer.json()
        assert httpx.post(f"{url}/v1/scan", json={"source": "x"}, timeout=10).status_code == 401
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    expected = cli["reports"][0]
    report = served["report"]
    assert served["models"]["package_id"] == champion["package_id"]
    for key in ("risk", "risk_level", "vulnerabilities", "contributions", "missing_views", "compiler"):
        assert report[key] == expected[key], key
    actions = [e["action"] for e in audit.read()]
    assert actions.count("package") == 4 and actions.count("register") == 4 and actions[-1] == "promote"
    assert audit.verify()[0]


def test_rerun_resumes_without_training(pipeline, data_dir: Path) -> None:
    pdir, first = pipeline
    assert len(first["trained"]) == 3 * (INNER + 1) + 1
    again = run_pipeline(pipeline_cfg(pdir, data_dir))
    assert again["trained"] == [] and len(again["skipped"]) == len(first["trained"])
    forced = run_pipeline(pipeline_cfg(pdir, data_dir, "force=[aggregator]"))
    assert forced["trained"] == ["aggregator"]


def test_scan_with_the_pipeline_ranks_and_explains(pipeline, tmp_path: Path) -> None:
    from training_pipeline.corpus.generator import generate_group
    from training_pipeline.scan import Scanner, read_inputs

    pdir, _ = pipeline
    vuln, safe = generate_group("vault", "0.8.26", ["reentrancy/call_before_write"], seed=1)
    (tmp_path / "vuln.sol").write_text(vuln.source_code)
    (tmp_path / "safe.sol").write_text(safe.source_code)
    hexfile = Path(__file__).resolve().parents[1] / "fixtures" / "evm" / "vault-0.8.26.hex"
    items = read_inputs([str(tmp_path / "vuln.sol"), str(tmp_path / "safe.sol"), str(hexfile)])
    reports = Scanner.from_pipeline(pdir).scan(items)
    assert len(reports) == 3
    for r in reports:
        assert 0.0 <= r["risk"] <= 1.0 and r["risk_level"] in ("low", "medium", "high", "critical")
        assert len(r["vulnerabilities"]) == 9
    sol, byte = reports[0], reports[2]
    assert sol["compiler"] == "0.8.26" and set(sol["contributions"]) == {"bytecode", "source"}
    assert sol["missing_views"] == ["behavior"] and sol["top_lines"] and "text" in sol["top_lines"][0]
    assert set(byte["contributions"]) == {"bytecode"} and set(byte["missing_views"]) == {"source", "behavior"}


def test_example_contracts_come_from_the_outer_test_fold(pipeline, tmp_path: Path) -> None:
    import importlib.util

    from training_pipeline import taxonomy

    spec = importlib.util.spec_from_file_location(
        "example_contracts", ROOT / "scripts" / "example_contracts.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    pdir, _ = pipeline
    test_ids = set(_manifest(pdir, "bytecode_detector/full")["split_ids"]["test"])
    records, fold = script.run_corpus(pdir)
    assert {r["id"] for r in records if r["fold"] == fold} == test_ids
    cls = next(c for c in taxonomy.VULNERABILITY_CLASSES if _has_pair(script, records, fold, c))
    flawed, safe = script.pick_pair(records, fold, cls)
    assert {flawed["id"], safe["id"]} <= test_ids and flawed["group"] == safe["group"]
    assert list(flawed["labels"]) == [cls] and not safe["labels"]
    out = tmp_path / "examples"
    assert script.main(["--pipeline-dir", str(pdir), "--out", str(out), "--vulnerability", cls]) == 0
    assert (out / "safe_twin.sol").read_text() == safe["source_code"]
    assert (out / "vulnerable_runtime.hex").read_text().strip() == flawed["bytecode"]
    (out / "safe_twin.sol").write_text("mine")
    assert script.main(["--pipeline-dir", str(pdir), "--out", str(out), "--vulnerability", cls]) == 2
    assert (out / "safe_twin.sol").read_text() == "mine"  # nothing overwritten without --force


def _has_pair(script, records: list[dict], fold: int, cls: str) -> bool:
    try:
        script.pick_pair(records, fold, cls)
    except ValueError:
        return False
    return True


def test_excluded_folds_are_unused_and_val_skips_them() -> None:
    from training_pipeline.errors import ConfigError
    from training_pipeline.utils.splits import SplitConfig, split_names

    folds = [0, 1, 2, 3, 4] * 4
    cfg = SplitConfig(n_folds=5, exclude_folds=[0])
    for fold in (1, 2, 3, 4):
        names = split_names(folds, [None] * len(folds), cfg, fold)
        assert all(n == "unused" for f, n in zip(folds, names, strict=True) if f == 0)
        assert {f for f, n in zip(folds, names, strict=True) if n == "test"} == {fold}
        assert {f for f, n in zip(folds, names, strict=True) if n == "val"} == {fold % 4 + 1}  # 4 -> 1, not 0
    with pytest.raises(ConfigError, match="exclude_folds"):
        split_names(folds, [None] * len(folds), cfg, 0)
    with pytest.raises(ConfigError, match="fewer than 3"):
        SplitConfig(n_folds=4, exclude_folds=[0, 1])


def test_real_data_in_the_mix_validates_on_real_rows_and_masks_what_they_do_not_assess(
    tmp_path: Path, data_dir: Path
) -> None:
    """A labelled "real" file source beside the corpus (a quarter of it assessing no class, like audited npm
    code; a quarter partially labelled, like CGT): the contract model validates on real rows only, the
    behavior view is masked on them, the stacked rows carry their unassessed classes, and the aggregator gets
    the false-alarm budget. With ``stack_variants``, each train/val contract that has an optimizer-on build
    (the corpus's, not the real file's) gets one more stacked row from the fold models' predictions of it."""
    from training_pipeline import taxonomy
    from training_pipeline.config import compose_task
    from training_pipeline.data.contracts import load_generated_corpus
    from training_pipeline.data.records import write_records
    from training_pipeline.models.aggregator import Aggregator
    from training_pipeline.models.checkpoint import load_checkpoint
    from training_pipeline.pipeline.runner import stage_overrides

    classes = list(taxonomy.VULNERABILITY_CLASSES)
    probe = pipeline_cfg(tmp_path / "probe", data_dir)
    stage = compose_task("train.yaml", stage_overrides(probe, "bytecode_detector"), tmp_path / "s")
    corpus = load_generated_corpus(dict(stage.data.corpus), data_dir).records
    real = []
    for i, r in enumerate(corpus[:48]):
        rec = {k: r[k] for k in ("source_code", "bytecode", "labels", "compiler_version", "family")}
        rec |= {"id": f"real/{r['id']}", "vulnerable_lines": {}}
        if i % 4 == 0:  # audited: no label, nothing assessed
            rec |= {"labels": [], "negative_labels": []}
        elif i % 4 == 1:  # partial: the last class not assessed
            rec["negative_labels"] = [c for c in classes[:-1] if c not in rec["labels"]]
        real.append(rec)
    path = write_records(real, tmp_path / "real.jsonl")
    contract = ["data.sources=[corpus,file]", f"data.path={path}", "data.val_sources=[file]",
                "model.max_audited_flag_rate=0.5"]  # fmt: skip
    aggregator = ["model.max_audited_flag_rate=0.5", "data.budget_splits=[val,train]"]
    pdir = tmp_path / "real_mix"
    cfg = pipeline_cfg(
        pdir,
        data_dir,
        "real_data.enabled=true",
        "real_data.corpus={}",
        f"real_data.contract_overrides={_quoted(contract)}",
        f"real_data.aggregator_overrides={_quoted(aggregator)}",
        "models.code_analyzer.enabled=false",
        "models.bytecode_detector.stack_variants=[o1-r200]",
    )
    summary = run_pipeline(cfg)
    full = _manifest(pdir, "bytecode_detector/full")
    assert full["split_ids"]["val"] and all(i.startswith("real/") for i in full["split_ids"]["val"])
    assert any(not i.startswith("real/") for i in full["split_ids"]["test"])  # the corpus test fold too
    rows = [json.loads(line) for line in (pdir / "stacked" / "stacked.jsonl").read_text().splitlines()]
    real_rows = [r for r in rows if r["id"].startswith("real/")]
    assert real_rows and all("behavior" not in r["views"] for r in real_rows)
    assert any(r.get("unassessed") == classes for r in real_rows)  # audited
    assert any(r.get("unassessed") == classes[-1:] for r in real_rows)  # partial
    assert not any(r.get("unassessed") for r in rows if not r["id"].startswith("real/"))
    by_id = {r["id"]: r for r in rows}
    built = {
        r["id"] for r in rows if r["split"] != "test" and "bytecode" in r["views"] and "variant" not in r
    }
    built -= {r["id"] for r in real_rows}  # the real file has no optimizer-on build
    extra = {rid.removesuffix("~o1-r200") for rid in by_id if rid.endswith("~o1-r200")}
    assert built and extra == built
    for rid in built:
        own, other = by_id[rid], by_id[f"{rid}~o1-r200"]
        assert other["split"] == own["split"] and other["labels"] == own["labels"]
        assert other["views"].get("behavior") == own["views"].get("behavior")
    assert any(
        by_id[f"{rid}~o1-r200"]["views"]["bytecode"] != by_id[rid]["views"]["bytecode"] for rid in built
    )
    variant_files = list(pdir.glob("stages/bytecode_detector/fold*/variant_o1-r200/predictions.jsonl"))
    assert len(variant_files) == INNER
    agg = load_checkpoint(Aggregator, pdir / summary["artifacts"]["aggregator"])
    assert agg.hparams.max_audited_flag_rate == 0.5
    resolved = OmegaConf.load(pdir / "stages" / "aggregator" / "config_resolved.yaml")
    assert list(resolved.data.budget_splits) == [
        "val",
        "train",
    ]  # the training split's audited rows count too


def test_the_aggregators_thresholds_can_be_retuned(pipeline, tmp_path: Path, capsys) -> None:
    """The aggregator refits its calibration in the validation pass (autograd): re-tuning must allow it, and
    the same budget gives back the same thresholds and temperature; what they flag on its validation rows
    is read from its own outputs (class probabilities and label mask, not the view mask)."""
    from training_pipeline.evaluation.retune import main
    from training_pipeline.models.aggregator import Aggregator
    from training_pipeline.models.checkpoint import load_checkpoint

    pdir, summary = pipeline
    stage = pdir / "stages" / "aggregator"
    assert main([str(stage), "--out", str(tmp_path / "agg"), "--max-flag-rate", "none"]) == 0
    assert "on validation (" in capsys.readouterr().out
    before = load_checkpoint(Aggregator, pdir / summary["artifacts"]["aggregator"])
    after = load_checkpoint(Aggregator, tmp_path / "agg" / "checkpoints" / "best.ckpt")
    assert torch.equal(before.thresholds, after.thresholds)
    assert torch.allclose(before.temperature, after.temperature, atol=1e-4)
