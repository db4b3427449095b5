"""Evaluate a checkpoint on the test split, or on any contract file given by ``data=``.

python src/eval.py ckpt_path=outputs/train/runs/<run>/checkpoints/last.ckpt
python src/eval.py ckpt_path=... data=bytecode_file data.path=contracts.jsonl split=all
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from training_pipeline.utils.run import set_project_root, task_wrapper

set_project_root()
log = logging.getLogger("eval")
TOP_LEVEL_KEYS = {
    "task_name",
    "tags",
    "ckpt_path",
    "split",
    "seed",
    "model",
    "data",
    "logger",
    "trainer",
    "paths",
    "extras",
}


def load_checkpoint(model_target: str, ckpt_path: str | Path) -> Any:
    """Load a LightningModule checkpoint; a missing or corrupted file is a one-line error."""
    from hydra.utils import get_class

    from training_pipeline.errors import DataError

    path = Path(ckpt_path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint (ckpt_path)")
    try:
        return get_class(model_target).load_from_checkpoint(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated zip, wrong model class, not a checkpoint at all
        raise DataError(
            f"{path}: cannot load checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        ) from None


def evaluate(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    from hydra.utils import instantiate

    from training_pipeline.evaluation.predictions import write_model_predictions
    from training_pipeline.evaluation.report import print_metrics
    from training_pipeline.utils.checks import check_known_keys
    from training_pipeline.utils.instantiate import instantiate_loggers
    from training_pipeline.utils.run import write_json, write_provenance

    check_known_keys(cfg, TOP_LEVEL_KEYS, "eval config")
    output_dir = Path(cfg.paths.output_dir)
    model = load_checkpoint(cfg.model._target_, cfg.ckpt_path)
    datamodule = instantiate(cfg.data, eval_split=cfg.split, _convert_="all")
    if getattr(model.hparams, "tokenizer_state", None):
        datamodule.use_tokenizer_state(model.hparams.tokenizer_state)  # featurize exactly as in training
    if getattr(model.hparams, "normalizer_state", None):
        datamodule.use_normalizer_state(model.hparams.normalizer_state)  # the training split's statistics
    datamodule.prepare_data()
    datamodule.setup("test")
    trainer = instantiate(cfg.trainer, logger=instantiate_loggers(cfg.get("logger")) or False, callbacks=[])
    write_provenance(cfg, output_dir, datamodule.data_version)
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


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval.yaml")
@task_wrapper
def main(cfg: DictConfig) -> None:
    from training_pipeline.utils.run import quiet_known_warnings

    if cfg.extras.get("ignore_warnings"):
        quiet_known_warnings()
    evaluate(cfg)


if __name__ == "__main__":
    main()
