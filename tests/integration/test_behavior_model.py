"""The behavior model end to end: simulated histories (debug=fdr, a short run + eval) and the CSV importer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import compose_config
from hydra.core.global_hydra import GlobalHydra

from training_pipeline.tasks import evaluate, train

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tx_csv"
TINY = [
    "model=behavior_model",
    "data.corpus.n_contracts=60",
    "data.batch_size=8",
    "data.max_length=64",
    "model.d_model=16",
    "model.hidden=16",
    "extras.print_config=false",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]
CSV = [
    "model=behavior_model",
    "data=behavior_csv",
    f"data.path={FIXTURE / 'transactions.csv'}",
    f"data.labels_path={FIXTURE / 'labels.csv'}",
    f"data.internal_path={FIXTURE / 'internal.csv'}",
    f"data.token_path={FIXTURE / 'token_transfers.csv'}",
    "data.batch_size=2",
    "model.d_model=16",
    "model.hidden=16",
    "extras.print_config=false",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


@pytest.fixture(autouse=True)
def _clear_hydra():
    yield
    GlobalHydra.instance().clear()


def test_debug_fdr_trains_and_tests(tmp_path, data_dir) -> None:
    # detect_anomaly (on in every debug config) records a traceback per autograd op: keep sequences short
    overrides = [*TINY, f"paths.data_dir={data_dir}", "debug=fdr", "data.max_length=24", "data.batch_size=4"]
    cfg = compose_config("train.yaml", overrides, tmp_path / "fdr")
    metrics, objects = train(cfg)
    assert objects["trainer"].global_step == 1
    assert 0.0 <= metrics["test/f1_macro"] <= 1.0 and 0.0 <= metrics["test/tx_f1"] <= 1.0
    assert {"test/auroc", "test/auprc", "test/accuracy"} <= set(metrics)


def test_train_writes_predictions_and_a_confusion_matrix_and_eval_agrees(tmp_path, data_dir) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    overrides = [*TINY, f"paths.data_dir={data_dir}", "trainer.max_epochs=2", "~callbacks.rich_progress_bar"]
    cfg = compose_config("train.yaml", overrides, tmp_path / "run")
    metrics, objects = train(cfg)
    out = Path(cfg.paths.output_dir)
    for name in ("test/auroc", "test/auprc", "test/f1_macro", "test/tx_f1"):
        assert 0.0 <= metrics[name] <= 1.0, name
    lines = [json.loads(x) for x in (out / "test_predictions.jsonl").read_text().splitlines()]
    assert len(lines) == len(objects["datamodule"].splits["test"])
    assert {"id", "label", "predicted", "probs", "flagged_tx", "true_flagged_tx"} <= set(lines[0])
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert "test/confusion_matrix" in events.Tags()["images"]
    model = objects["model"]
    assert model.hparams.normalizer_state["mean"] and 0.05 <= float(model.tx_threshold) <= 0.95

    best = objects["trainer"].checkpoint_callback.best_model_path
    cfg_eval = compose_config(
        "eval.yaml",
        [*TINY[:4], f"paths.data_dir={data_dir}", f"ckpt_path={best}", "trainer.enable_progress_bar=false"],
        tmp_path / "eval",
    )
    eval_metrics, eval_objects = evaluate(cfg_eval)
    assert eval_objects["datamodule"].normalizer.state_dict() == model.hparams.normalizer_state
    for name in ("test/f1_macro", "test/auroc", "test/tx_f1"):
        assert eval_metrics[name] == pytest.approx(metrics[name], abs=1e-6), name


def test_explorer_csv_exports_train_and_test(tmp_path, data_dir) -> None:
    cfg = compose_config("train.yaml", [*CSV, f"paths.data_dir={data_dir}", "debug=fdr"], tmp_path / "csv")
    metrics, objects = train(cfg)
    dm = objects["datamodule"]
    assert {s: len(dm.splits[s]) for s in ("train", "val", "test")} == {"train": 2, "val": 2, "test": 2}
    assert dm.data_version.startswith("sha256:") and dm.import_report["counts"]
    assert "test/f1_macro" in metrics
