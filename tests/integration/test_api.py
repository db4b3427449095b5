"""The seed's Python API: ModelTrainer, HyperparameterOptimizer, ModelEvaluator over the Hydra configs."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY_CORPUS

from training_pipeline import HyperparameterOptimizer, ModelEvaluator, ModelTrainer
from training_pipeline.api import resolve_metric
from training_pipeline.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[2]
QUIET = [
    "extras.print_config=false",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]
TINY_CONFIG = """
trainer:
  max_epochs: 1
data:
  batch_size: 8
model:
  channels: 16
  embed_dim: 16
  depth: 2
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """The tiny corpus exported as a contract interchange file (with its folds)."""
    from training_pipeline.data.contracts import load_generated_corpus
    from training_pipeline.data.records import write_records

    records = load_generated_corpus({"n_contracts": TINY_CORPUS}, data_dir).records
    path = tmp_path_factory.mktemp("api") / "contracts.jsonl"
    write_records(records, path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, dataset: Path, data_dir: Path) -> dict:
    out = tmp_path_factory.mktemp("api_train")
    config = out / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    trainer = ModelTrainer("bytecode_detector", overrides=[f"paths.data_dir={data_dir}", *QUIET])
    return trainer.train(dataset_path=dataset, config_path=config, output_dir=out / "run")


def test_trainer_returns_metrics_and_paths(trained: dict) -> None:
    assert "test/f1_macro" in trained["metrics"] and "val/f1_macro" in trained["metrics"]
    assert Path(trained["best_checkpoint"]).is_file() and Path(trained["test_predictions"]).is_file()
    assert (Path(trained["output_dir"]) / "config_resolved.yaml").is_file()


def test_trainer_config_is_the_hydra_config(dataset: Path, tmp_path: Path) -> None:
    config = tmp_path / "my.yaml"
    config.write_text("trainer:\n  max_epochs: 3\nmodel:\n  num_layers: 1\n")
    cfg = ModelTrainer("code_analyzer").config(
        dataset_path=dataset, config_path=config, output_dir=tmp_path / "o"
    )
    assert cfg.model._target_.endswith("CodeAnalyzer") and cfg.data.path == str(dataset.resolve())
    assert cfg.trainer.max_epochs == 3 and cfg.model.num_layers == 1
    config.write_text("trainer:\n  max_epoch: 3\n")  # a typo is an error, not silently ignored
    with pytest.raises(Exception, match="max_epoch"):
        ModelTrainer("code_analyzer").config(config_path=config, output_dir=tmp_path / "o")
    with pytest.raises(ConfigError, match="model_type"):
        ModelTrainer("transformer")
    with pytest.raises(DataError, match="no such dataset"):
        ModelTrainer("bytecode_detector").config(dataset_path=tmp_path / "none.jsonl")


def test_evaluator_on_a_contract_file(trained: dict, dataset: Path, tmp_path: Path) -> None:
    result = ModelEvaluator(overrides=QUIET).evaluate(
        model_path=trained["best_checkpoint"], test_dataset=dataset, output_dir=tmp_path / "eval"
    )
    assert "test/f1_macro" in result["metrics"] and Path(result["predictions"]).is_file()
    n = len(Path(result["predictions"]).read_text().splitlines())
    assert n == len(dataset.read_text().splitlines())  # split=all: every record of the file


def test_single_checkpoint_scan(trained: dict) -> None:
    from training_pipeline.scan import Scanner, read_inputs

    items = read_inputs([str(ROOT / "tests" / "fixtures" / "evm" / "vault-0.5.17.hex")])
    (report,) = Scanner.from_checkpoint(trained["best_checkpoint"]).scan(items)
    assert 0.0 <= report["risk"] <= 1.0 and report["calibrated"] is False
    assert report["views"]["bytecode"]["present"] and len(report["vulnerabilities"]) == 9


def test_metric_names_map_to_logged_ones() -> None:
    assert resolve_metric("behavior_model", "accuracy") == "val/accuracy"
    assert resolve_metric("bytecode_detector", "f1_macro") == "val/f1_macro"
    assert resolve_metric("aggregator", "auroc") == "val/auroc"
    try:
        name = resolve_metric("bytecode_detector", "accuracy")
        assert name in ("val/subset_accuracy", "val/exact_match", "val/accuracy")
    except ConfigError as exc:  # the contract models log no exact-match accuracy (yet): a clear error
        assert "val/f1_macro" in str(exc) and "accuracy" in str(exc)
    with pytest.raises(ConfigError, match="valid"):
        resolve_metric("bytecode_detector", "val/f1_macr")
    with pytest.raises(ConfigError, match="no Optuna search space"):
        HyperparameterOptimizer().command("aggregator", 1, "auroc")


def test_optimizer_runs_a_study(tmp_path: Path, data_dir: Path) -> None:
    tiny = [
        f"paths.data_dir={data_dir}",
        f"data.corpus.n_contracts={TINY_CORPUS}",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=1",
        "model.embed_dim=8",
        *QUIET,
    ]
    result = HyperparameterOptimizer(overrides=tiny, output_dir=tmp_path / "sweep").optimize(
        model_type="bytecode_detector", n_trials=1, metric="f1_macro", timeout=600
    )
    assert result["metric"] == "val/f1_macro" and result["direction"] == "maximize"
    assert (
        set(result["best_params"]) >= {"model.optimizer.lr", "model.channels"}
        and result["best_value"] is not None
    )
