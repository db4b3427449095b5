"""Train a model: compose the config → instantiate data, model, callbacks, loggers, trainer → fit → test.

python src/train.py                              # the default model (bytecode detector)
python src/train.py model=bytecode_detector experiment=bytecode_detector
python src/train.py -m hparams_search=bytecode_detector_optuna
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from training_pipeline.utils.run import set_project_root, task_wrapper

set_project_root()
log = logging.getLogger("train")
TOP_LEVEL_KEYS = {
    "task_name",
    "tags",
    "train",
    "test",
    "ckpt_path",
    "seed",
    "optimized_metric",
    "model",
    "data",
    "callbacks",
    "logger",
    "trainer",
    "paths",
    "extras",
}


def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit and test; returns (metrics, objects). Everything is validated before the first step."""
    import lightning as L
    import torch
    from hydra.utils import instantiate

    from training_pipeline.evaluation.predictions import write_model_predictions
    from training_pipeline.evaluation.report import print_metrics
    from training_pipeline.utils.checks import check_known_keys, check_metric_names
    from training_pipeline.utils.instantiate import instantiate_callbacks, instantiate_loggers
    from training_pipeline.utils.run import write_json, write_provenance

    check_known_keys(cfg, TOP_LEVEL_KEYS, "train config")
    output_dir = Path(cfg.paths.output_dir)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)

    log.info("Instantiating datamodule <%s>", cfg.data._target_)
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup("fit")
    log.info("Instantiating model <%s>", cfg.model._target_)
    model = instantiate(
        cfg.model, _convert_="all", **datamodule.model_kwargs()
    )  # plain hparams in checkpoints
    check_metric_names(cfg, model)
    callbacks = instantiate_callbacks(
        cfg.get("callbacks"), progress_bar=cfg.trainer.get("enable_progress_bar", True)
    )
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if trainer.is_global_zero:
        write_provenance(cfg, output_dir, datamodule.data_version)
    for lg in loggers:
        lg.log_hyperparams({"data_version": datamodule.data_version, **dict(model.hparams)})

    if cfg.get("train"):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    test_metrics: dict[str, float] = {}
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if cfg.get("test"):
        if not best:
            log.warning(
                "No best checkpoint (fast_dev_run or no checkpoint callback): testing the current weights"
            )
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)
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
        from training_pipeline.errors import ConfigError

        raise ConfigError(
            f"optimized_metric={name!r} was not produced by this run; got {sorted(metrics)[:12]}"
        )
    return float(metrics[name])


@hydra.main(version_base="1.3", config_path="../conf", config_name="train.yaml")
@task_wrapper
def main(cfg: DictConfig) -> float | None:
    from training_pipeline.utils.rich_tree import print_config_tree
    from training_pipeline.utils.run import quiet_known_warnings

    if cfg.extras.get("ignore_warnings"):
        quiet_known_warnings()
    if cfg.extras.get("print_config"):
        print_config_tree(cfg)
    metrics, _ = train(cfg)
    return metric_value(metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
