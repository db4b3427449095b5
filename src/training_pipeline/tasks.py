"""The tasks behind the command lines, as library functions over a composed config.

    train(cfg)     seed → datamodule, model, callbacks, loggers, trainer → fit → test with the best weights
    evaluate(cfg)  a checkpoint on the test split, or on any contract file given by ``data=``
    predict(cfg)   a checkpoint's predictions on a split of any data, without metrics

``training_pipeline.cli`` wraps them for ``src/train.py``, ``src/eval.py`` and the console scripts; the
Python API (``training_pipeline.api``) and ``train-all`` (``pipeline/runner.py``) call them in process.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from training_pipeline.errors import ConfigError
from training_pipeline.evaluation.callbacks import ConfusionMatrixImage, PRCurves, ReliabilityDiagram
from training_pipeline.evaluation.predictions import write_model_predictions
from training_pipeline.evaluation.report import print_metrics
from training_pipeline.models.checkpoint import load_checkpoint
from training_pipeline.utils.checks import check_known_keys, check_metric_names
from training_pipeline.utils.instantiate import instantiate_callbacks, instantiate_loggers
from training_pipeline.utils.run import write_json, write_provenance

log = logging.getLogger(__name__)
_COMMON_KEYS = {"task_name", "tags", "seed", "model", "data", "logger", "trainer", "paths", "extras"}
TRAIN_KEYS = _COMMON_KEYS | {"train", "test", "ckpt_path", "optimized_metric", "callbacks"}
EVAL_KEYS = _COMMON_KEYS | {"ckpt_path", "split"}


def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit and test; returns (metrics, objects). Everything is validated before the first step."""
    check_known_keys(cfg, TRAIN_KEYS, "train config")
    output_dir = Path(cfg.paths.output_dir)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)

    log.info("Instantiating datamodule <%s>", cfg.data._target_)
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup("fit")
    log.info("Instantiating model <%s>", cfg.model._target_)
    model = instantiate(cfg.model, _convert_="all", **datamodule.model_kwargs())  # plain hparams in ckpts
    check_metric_names(cfg, model)
    callbacks = instantiate_callbacks(
        cfg.get("callbacks"), progress_bar=cfg.trainer.get("enable_progress_bar", True)
    )
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if trainer.is_global_zero:
        write_provenance(cfg, output_dir, datamodule.data_version)
    for lg in loggers:
        optim = {
            k: OmegaConf.to_container(cfg.model[k]) for k in ("optimizer", "scheduler") if cfg.model.get(k)
        }
        lg.log_hyperparams({"data_version": datamodule.data_version, **dict(model.hparams), **optim})

    if cfg.get("train"):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    test_metrics: dict[str, float] = {}
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if cfg.get("test"):
        if not best:
            log.warning(
                "No best checkpoint (fast_dev_run or no checkpoint callback): testing the current weights"
            )
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False, weights_only=True)
        test_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        if trainer.is_global_zero:
            print_metrics(test_metrics, model.metric_classes)
            write_model_predictions(output_dir / "test_predictions.jsonl", model, datamodule)

    metrics = {**fit_metrics, **test_metrics}
    monitor = cfg.get("optimized_metric")
    ckpt_cb = trainer.checkpoint_callback
    if (
        monitor
        and ckpt_cb is not None
        and ckpt_cb.monitor == monitor
        and ckpt_cb.best_model_score is not None
    ):
        metrics[monitor] = float(ckpt_cb.best_model_score)  # the best epoch's value, not the last one's
    if trainer.is_global_zero:
        write_json(
            output_dir / "metrics.json",
            {
                "optimized_metric": monitor,
                "value": metrics.get(monitor),
                "test": test_metrics,
                "fit": fit_metrics,
                "epochs": trainer.current_epoch,
                "best_checkpoint": best or None,
                "data_version": datamodule.data_version,
            },
        )
    torch.set_grad_enabled(True)
    return metrics, {"datamodule": datamodule, "model": model, "trainer": trainer, "cfg": cfg}


def metric_value(metrics: dict[str, Any], name: str | None) -> float | None:
    """The float a sweeper optimizes; a metric the run never produced is an error, not a silent None."""
    if not name:
        return None
    if name not in metrics:
        raise ConfigError(
            f"optimized_metric={name!r} was not produced by this run; got {sorted(metrics)[:12]}"
        )
    return float(metrics[name])


def _restore(cfg: DictConfig) -> tuple[Any, Any, Any]:
    """(model, datamodule, trainer) of an eval config: the checkpoint's model, featurizing as in training."""
    check_known_keys(cfg, EVAL_KEYS, "eval config")
    model = load_checkpoint(cfg.model._target_, cfg.ckpt_path)
    datamodule = instantiate(cfg.data, eval_split=cfg.split, _convert_="all")
    if getattr(model.hparams, "tokenizer_state", None):
        datamodule.use_tokenizer_state(model.hparams.tokenizer_state)  # featurize exactly as in training
    if getattr(model.hparams, "normalizer_state", None):
        datamodule.use_normalizer_state(model.hparams.normalizer_state)  # the training split's statistics
    datamodule.prepare_data()
    datamodule.setup("test")
    trainer = instantiate(
        cfg.trainer,
        logger=instantiate_loggers(cfg.get("logger")) or False,
        callbacks=[ReliabilityDiagram(), ConfusionMatrixImage(), PRCurves()],  # what a test epoch draws
    )
    write_provenance(cfg, Path(cfg.paths.output_dir), datamodule.data_version)
    return model, datamodule, trainer


def evaluate(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Test a checkpoint on ``cfg.split`` of ``cfg.data``; writes metrics.json and predictions.jsonl."""
    output_dir = Path(cfg.paths.output_dir)
    model, datamodule, trainer = _restore(cfg)
    trainer.test(model, datamodule=datamodule, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    print_metrics(metrics, model.metric_classes)
    write_model_predictions(output_dir / "predictions.jsonl", model, datamodule)
    write_json(
        output_dir / "metrics.json",
        {
            "test": metrics,
            "checkpoint": str(cfg.ckpt_path),
            "split": cfg.split,
            "data_version": datamodule.data_version,
        },
    )
    return metrics, {"model": model, "datamodule": datamodule, "trainer": trainer}


def predict(cfg: DictConfig) -> Path:
    """A checkpoint's per-record predictions on ``cfg.split`` of ``cfg.data`` (no metrics); returns the
    path of the predictions JSONL in the run dir."""
    model, datamodule, _ = _restore(cfg)
    path = Path(cfg.paths.output_dir) / "predictions.jsonl"
    write_model_predictions(path, model, datamodule)
    return path
