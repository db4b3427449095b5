"""The seed's Python API: thin layers over the same Hydra configs the command lines use.

    from training_pipeline import ModelTrainer, HyperparameterOptimizer, ModelEvaluator

    result = ModelTrainer("code_analyzer").train(dataset_path="contracts.jsonl", config_path="my.yaml")
    best = HyperparameterOptimizer().optimize(model_type="bytecode_detector", n_trials=100, metric="accuracy")
    metrics = ModelEvaluator().evaluate(model_path=result["best_checkpoint"], test_dataset="holdout.jsonl")

Every call composes ``conf/train.yaml`` or ``conf/eval.yaml`` (``overrides`` as on the command line), so a
misspelled key is an error before anything runs, and returns plain data: metric dicts, best parameters, paths.

Metric names: the names the models log (``val/f1_macro``, ``test/auroc``, ...), or the aliases in
``METRIC_ALIASES``: ``accuracy`` means history-class accuracy (``val/accuracy``) for the behavior model and
exact-match (subset) accuracy (``val/subset_accuracy``) for the multi-label contract models where they log it;
a name the model never logs is a ConfigError listing the names it does log.
"""

from __future__ import annotations

import datetime as _dt
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.utils import get_class
from omegaconf import OmegaConf, open_dict

from training_pipeline.config import CONF_DIR, compose_task, project_root
from training_pipeline.errors import ConfigError, DataError
from training_pipeline.scan.models import checkpoint_model_option
from training_pipeline.tasks import evaluate, train

MODEL_TYPES = ("bytecode_detector", "code_analyzer", "behavior_model", "aggregator")
METRIC_ALIASES: dict[str, tuple[str, ...]] = {
    "accuracy": ("val/accuracy", "val/subset_accuracy", "val/exact_match"),
    "f1": ("val/f1_macro",),
    "f1_macro": ("val/f1_macro",),
    "auroc": ("val/auroc",),
    "auprc": ("val/auprc",),
    "loss": ("val/loss",),
}
MINIMIZED = ("loss", "ece", "brier", "nll")


def _check_model(model_type: str) -> str:
    if model_type not in MODEL_TYPES:
        raise ConfigError(f"model_type={model_type!r}: expected one of {', '.join(MODEL_TYPES)}")
    return model_type


def _run_dir(kind: str, name: str, output_dir: str | Path | None) -> Path:
    if output_dir is not None:
        return Path(output_dir).resolve()
    stamp = _dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    return project_root() / "outputs" / "api" / kind / f"{name}_{stamp}"


def logged_metrics(model_type: str) -> set[str]:
    """Metric names a model type logs (without training it)."""
    target = OmegaConf.load(CONF_DIR / "model" / f"{_check_model(model_type)}.yaml")["_target_"]
    cls = get_class(target)
    return set(cls.logged_metric_names()) if hasattr(cls, "logged_metric_names") else set()


def resolve_metric(model_type: str, metric: str) -> str:
    """The logged metric ``metric`` names (a logged name or an alias), else a ConfigError listing them."""
    known = logged_metrics(model_type)
    if metric in known:
        return metric
    for candidate in METRIC_ALIASES.get(metric, ()):
        if candidate in known:
            return candidate
    val = sorted(m for m in known if m.startswith("val/"))
    alias = f" (alias of {', '.join(METRIC_ALIASES[metric])})" if metric in METRIC_ALIASES else ""
    raise ConfigError(f"metric={metric!r}{alias} is not logged by {model_type}; valid: {', '.join(val)}")


def _merge_config_file(cfg, config_path: str | Path | None):
    """Merge a YAML file of config values (same layout as the composed config) into ``cfg``; unknown keys
    are errors (the composed config is in struct mode)."""
    if config_path is None:
        return cfg
    path = Path(config_path)
    if not path.is_file():
        raise DataError(f"{path}: no such config file (config_path)")
    extra = OmegaConf.load(path)
    extra.pop("defaults", None)
    return OmegaConf.merge(cfg, extra)


def _dataset_overrides(
    model_type: str, dataset_path: str | Path | None, labels_path: str | Path | None
) -> list[str]:
    if dataset_path is None:
        return []
    path = Path(dataset_path).resolve()
    if not path.exists():
        raise DataError(f"{path}: no such dataset (dataset_path)")
    if model_type == "behavior_model":
        if labels_path is None:
            raise ConfigError("behavior_model with a dataset_path needs labels_path (a CSV of address,label)")
        return ["data=behavior_csv", f"data.path={path}", f"data.labels_path={Path(labels_path).resolve()}"]
    if model_type == "aggregator":
        return [f"data.pipeline_dir={path}"]
    return [f"data.path={path}"]


def _pipeline_dir_of(ckpt: Path) -> Path:
    """The train-all run dir an aggregator checkpoint belongs to (the folder holding ``stacked/``)."""
    for folder in ckpt.parents:
        if (folder / "stacked").is_dir():
            return folder
    raise DataError(f"{ckpt}: not inside a train-all run dir (no stacked/ above it); give test_dataset")


class ModelTrainer:
    """Train one model type with ``conf/train.yaml`` (``python src/train.py model=<model_type> ...``)."""

    def __init__(self, model_type: str = "bytecode_detector", overrides: Sequence[str] = ()) -> None:
        self.model_type = _check_model(model_type)
        self.overrides = list(overrides)

    def config(
        self,
        dataset_path: str | Path | None = None,
        config_path: str | Path | None = None,
        labels_path: str | Path | None = None,
        overrides: Sequence[str] = (),
        output_dir: str | Path | None = None,
    ):
        out = _run_dir("train", self.model_type, output_dir)
        model = ["experiment=aggregator"] if self.model_type == "aggregator" else [f"model={self.model_type}"]
        cfg = compose_task(
            "train.yaml",
            [
                *model,
                *_dataset_overrides(self.model_type, dataset_path, labels_path),
                *self.overrides,
                *overrides,
            ],
            out,
        )
        return _merge_config_file(cfg, config_path)

    def train(
        self,
        dataset_path: str | Path | None = None,
        config_path: str | Path | None = None,
        labels_path: str | Path | None = None,
        overrides: Sequence[str] = (),
        output_dir: str | Path | None = None,
    ) -> dict[str, Any]:
        """Fit and test. ``dataset_path``: a contract interchange file (contract models), a transaction CSV
        with ``labels_path`` (behavior model) or a pipeline dir (aggregator); None = the generated corpus.
        ``config_path``: a YAML of config values merged over the composed config (e.g.
        ``trainer: {max_epochs: 5}``).
        Returns ``{"metrics", "output_dir", "best_checkpoint", "test_predictions"}``."""
        cfg = self.config(dataset_path, config_path, labels_path, overrides, output_dir)
        metrics, objects = train(cfg)
        out = Path(cfg.paths.output_dir)
        trainer = objects["trainer"]
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        preds = out / "test_predictions.jsonl"
        return {
            "metrics": {k: float(v) for k, v in metrics.items()},
            "output_dir": str(out),
            "best_checkpoint": best or None,
            "test_predictions": str(preds) if preds.is_file() else None,
        }


class HyperparameterOptimizer:
    """Optuna search over ``conf/hparams_search/<model_type>_optuna.yaml`` (the same sweep as
    ``python src/train.py -m hparams_search=<model_type>_optuna``), run as a Hydra multirun."""

    def __init__(self, overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> None:
        self.overrides, self.output_dir = list(overrides), output_dir

    def command(
        self, model_type: str, n_trials: int, metric: str, overrides: Sequence[str] = ()
    ) -> tuple[list[str], Path, str]:
        _check_model(model_type)
        search = CONF_DIR / "hparams_search" / f"{model_type}_optuna.yaml"
        if not search.is_file():
            have = sorted(p.stem for p in (CONF_DIR / "hparams_search").glob("*_optuna.yaml"))
            raise ConfigError(f"no Optuna search space for {model_type!r}; available: {', '.join(have)}")
        if n_trials < 1:
            raise ConfigError(f"n_trials={n_trials}: need at least 1")
        name = resolve_metric(model_type, metric)
        direction = "minimize" if name.split("/")[-1] in MINIMIZED else "maximize"
        sweep_dir = _run_dir("optimize", model_type, self.output_dir)
        study = f"{model_type}-{name.replace('/', '_')}"
        # A sweep is a Hydra multirun: its sweeper and launcher own the process (and exit it), so it runs in a
        # child process of the package's own command line, leaving the caller's Hydra and torch state alone.
        cmd = [
            sys.executable,
            "-m",
            "training_pipeline",
            "train",
            "-m",
            f"hparams_search={model_type}_optuna",
            f"optimized_metric={name}",
            f"hydra.sweeper.n_trials={n_trials}",
            f"hydra.sweeper.direction={direction}",
            f"hydra.sweeper.study_name={study}",
            f"hydra.sweep.dir={sweep_dir}",
            f"paths.log_dir={sweep_dir / 'logs'}",
            *self.overrides,
            *overrides,
        ]
        return cmd, sweep_dir, name

    def optimize(
        self,
        model_type: str = "bytecode_detector",
        n_trials: int = 100,
        metric: str = "val/f1_macro",
        overrides: Sequence[str] = (),
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Run ``n_trials`` trials; returns ``{"best_params", "best_value", "metric", "direction", "n_trials",
        "sweep_dir"}``. The study is stored in SQLite under the sweep dir's ``logs/optuna``."""
        cmd, sweep_dir, name = self.command(model_type, n_trials, metric, overrides)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RuntimeError(f"hyperparameter search failed (exit {proc.returncode}): {tail}")
        results = sweep_dir / "optimization_results.yaml"
        if not results.is_file():
            raise RuntimeError(f"{results}: the sweep wrote no results")
        best = OmegaConf.to_container(OmegaConf.load(results), resolve=True)
        return {
            "best_params": best.get("best_params", {}),
            "best_value": best.get("best_value"),
            "metric": name,
            "direction": "minimize" if name.split("/")[-1] in MINIMIZED else "maximize",
            "n_trials": n_trials,
            "sweep_dir": str(sweep_dir),
        }


class ModelEvaluator:
    """Evaluate a checkpoint with ``conf/eval.yaml`` (``python src/eval.py ckpt_path=...``)."""

    def __init__(self, overrides: Sequence[str] = ()) -> None:
        self.overrides = list(overrides)

    def evaluate(
        self,
        model_path: str | Path,
        test_dataset: str | Path | None = None,
        labels_path: str | Path | None = None,
        split: str | None = None,
        overrides: Sequence[str] = (),
        output_dir: str | Path | None = None,
    ) -> dict[str, Any]:
        """Metrics of ``model_path`` on ``test_dataset`` (every record of it) or, without one, on the test
        split of the data the model type trains on. Returns ``{"metrics", "output_dir", "predictions"}``."""
        ckpt = Path(model_path).resolve()
        if not ckpt.is_file():
            raise DataError(f"{ckpt}: no such checkpoint (model_path)")
        model_type = checkpoint_model_option(ckpt)
        out = _run_dir("eval", model_type, output_dir)
        data = _dataset_overrides(model_type, test_dataset, labels_path)
        split = split or ("all" if test_dataset is not None and model_type != "aggregator" else "test")
        cfg = compose_task(
            "eval.yaml",
            [
                f"model={model_type}",
                f"ckpt_path={ckpt}",
                f"split={split}",
                *data,
                *self.overrides,
                *overrides,
            ],
            out,
        )
        if model_type == "aggregator" and test_dataset is None:
            with open_dict(cfg):  # the pipeline dir the checkpoint was trained on
                cfg.data.pipeline_dir = str(_pipeline_dir_of(ckpt))
        metrics, _ = evaluate(cfg)
        preds = out / "predictions.jsonl"
        return {
            "metrics": {k: float(v) for k, v in metrics.items()},
            "output_dir": str(out),
            "predictions": str(preds) if preds.is_file() else None,
        }
