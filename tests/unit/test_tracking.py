"""MLflow tracking: ``logger=mlflow``, the store's location, ``train-all``'s parent and child runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_CORPUS, compose_config
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from training_pipeline.utils import tracking

pytest.importorskip("mlflow")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite store in tmp_path, named by MLFLOW_TRACKING_URI as a user would."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv(tracking.ENV_URI, uri)
    return uri


def test_default_store_is_under_the_project_root_and_the_env_var_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(tracking.ENV_URI, raising=False)
    root = tmp_path / "proj"
    assert tracking.tracking_uri(root) == f"sqlite:///{root / 'outputs' / 'mlflow' / 'mlflow.db'}"
    assert tracking.artifact_location(root) == (root / "outputs" / "mlflow" / "artifacts").as_uri()
    monkeypatch.setenv("PROJECT_ROOT", str(root))
    assert tracking.tracking_uri() == f"sqlite:///{root / 'outputs' / 'mlflow' / 'mlflow.db'}"
    other = tmp_path / "elsewhere" / "store.db"
    monkeypatch.setenv(tracking.ENV_URI, f"sqlite:///{other}")
    assert tracking.tracking_uri(root) == f"sqlite:///{other}"
    assert tracking.artifact_location(root) == (other.parent / "artifacts").as_uri()
    monkeypatch.setenv(tracking.ENV_URI, "http://mlflow.internal:5000")
    assert tracking.artifact_location(root) is None  # the server chooses
    assert tracking.experiment_for("training_pipeline.models.code_analyzer.CodeAnalyzer") == (
        "scathat-code_analyzer"
    )


def test_ensure_experiment_creates_the_store_and_its_artifact_location(store: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    exp_id = tracking.ensure_experiment("scathat-test")
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    assert tracking.ensure_experiment("scathat-test") == exp_id  # found, not created twice
    exp = MlflowClient(store).get_experiment(exp_id)
    assert exp.artifact_location == (tmp_path / "mlruns" / "artifacts").as_uri()


def test_logger_mlflow_composes_beside_tensorboard_and_honours_the_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = compose_config("train.yaml", ["logger=mlflow"], tmp_path / "run")
    GlobalHydra.instance().clear()
    assert list(cfg.logger) == ["tensorboard", "mlflow"]
    monkeypatch.delenv(tracking.ENV_URI, raising=False)
    assert cfg.logger.mlflow.tracking_uri == f"sqlite:///{cfg.paths.root_dir}/outputs/mlflow/mlflow.db"
    monkeypatch.setenv(tracking.ENV_URI, "sqlite:////elsewhere/x.db")
    assert cfg.logger.mlflow.tracking_uri == "sqlite:////elsewhere/x.db"


@pytest.mark.slow
def test_training_with_logger_mlflow_writes_a_run_with_val_metrics_and_the_config(
    cfg_train, store: str
) -> None:
    from mlflow import MlflowClient

    from training_pipeline.tasks import train

    with open_dict(cfg_train):
        cfg_train.logger = compose_config(
            "train.yaml", ["logger=mlflow"], Path(cfg_train.paths.output_dir)
        ).logger
    GlobalHydra.instance().clear()
    train(cfg_train)
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("scathat-bytecode_detector")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == Path(cfg_train.paths.output_dir).name
    metrics = run.data.metrics
    assert "val/f1_macro" in metrics and "test/f1_macro" in metrics
    assert metrics["best/val/f1_macro"] == pytest.approx(
        json.loads((Path(cfg_train.paths.output_dir) / "metrics.json").read_text())["value"]
    )
    assert len(client.get_metric_history(run.info.run_id, "val/f1_macro")) == 2  # one per epoch
    params = run.data.params
    assert params["config/trainer/max_epochs"] == "2" and params["config/model/channels"] == "16"
    assert "data_version" in params and not any(k.endswith("_state") for k in params)
    assert (Path(cfg_train.paths.output_dir) / "tensorboard").is_dir()  # TensorBoard still writes
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "config_resolved.yaml" in artifacts


ONE_STEP = ["trainer.max_epochs=1", "+trainer.limit_train_batches=1"]
BYTECODE_ONLY = [
    f"corpus.n_contracts={TINY_CORPUS}",
    "inner_folds=3",
    "real_data.enabled=false",
    "models.code_analyzer.enabled=false",
    "models.behavior_model.enabled=false",
    "aggregator.enabled=false",
    "aggregator_inputs=full",
    'models.bytecode_detector.overrides=["trainer.max_epochs=1","+trainer.limit_train_batches=1",'
    '"data.batch_size=8","model.channels=16","model.embed_dim=16","model.depth=2"]',
]


@pytest.mark.slow
def test_train_all_tracks_a_parent_run_with_a_child_per_trained_stage(
    tmp_path: Path, data_dir: Path, store: str
) -> None:
    from mlflow import MlflowClient

    from training_pipeline.pipeline.runner import run_pipeline

    def cfg(*extra: str):
        overrides = ["name=tracked", f"paths.data_dir={data_dir}", "tracking.enabled=true", *BYTECODE_ONLY]
        c = compose_config("pipeline.yaml", [*overrides, *extra], tmp_path / "tracked")
        GlobalHydra.instance().clear()
        return c

    summary = run_pipeline(cfg())
    run_id = summary["artifacts"]["mlflow_run_id"]
    pipeline_json = json.loads((tmp_path / "tracked" / "pipeline.json").read_text())
    assert pipeline_json["artifacts"]["mlflow_run_id"] == run_id
    client = MlflowClient(store)
    parent = client.get_run(run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["pipeline.name"] == "tracked"
    exp_id = parent.info.experiment_id
    assert client.get_experiment(exp_id).name == "scathat-pipeline"
    children = client.search_runs([exp_id], f"tags.`mlflow.parentRunId` = '{run_id}'")
    stages = sorted(c.data.tags[tracking.STAGE_TAG] for c in children)
    assert stages == sorted(summary["trained"]) and len(stages) == 4  # 3 folds + full
    assert all(c.info.status == "FINISHED" and "val/f1_macro" in c.data.metrics for c in children)
    full = next(c for c in children if c.data.tags[tracking.STAGE_TAG] == "bytecode_detector/full")
    assert parent.data.metrics["bytecode_detector/full/test/auroc"] == pytest.approx(
        summary["stages"]["bytecode_detector/full"]["metrics"]["test/auroc"]
    )
    assert full.data.metrics["test/auroc"] == pytest.approx(
        parent.data.metrics["bytecode_detector/full/test/auroc"], abs=1e-4
    )
    assert "pipeline.json" in [a.path for a in client.list_artifacts(run_id)]

    again = run_pipeline(cfg("force=[bytecode_detector/full]"))  # resumed: the folds are skipped
    rerun = client.get_run(again["artifacts"]["mlflow_run_id"])
    assert rerun.info.run_id != run_id and rerun.data.tags["pipeline.skipped"].count("fold") == 3
    children = client.search_runs([exp_id], f"tags.`mlflow.parentRunId` = '{rerun.info.run_id}'")
    assert [c.data.tags[tracking.STAGE_TAG] for c in children] == ["bytecode_detector/full"]
    assert "bytecode_detector/fold1/test/auroc" in rerun.data.metrics  # skipped stages' metrics on the parent
