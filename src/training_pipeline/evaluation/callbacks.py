"""Callbacks that turn what a model computed in its test epoch into files and TensorBoard entries.

They act at ``on_test_end`` (after the module's own ``on_test_epoch_end``) and only on modules that expose
what they draw, so ``callbacks/default.yaml`` can list them for every model.
"""

from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure

from training_pipeline.evaluation.plots import (
    confusion_figure,
    confusion_markdown,
    reliability_figure,
    save_figure,
)


def _tensorboards(trainer: Trainer) -> list[TensorBoardLogger]:
    return [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]


def _log_figure(trainer: Trainer, tag: str, fig: Figure, step: int) -> None:
    for logger in _tensorboards(trainer):
        logger.experiment.add_figure(tag, fig, step, close=False)


class ReliabilityDiagram(Callback):
    """The aggregator's test calibration: ``reliability_test.png`` and ``calibration.json`` in the run dir
    (``trainer.default_root_dir``) and the diagram as a TensorBoard image (``test/reliability``)."""

    def __init__(self, filename: str = "reliability_test.png", report: str = "calibration.json") -> None:
        self.filename, self.report = filename, report

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        report = getattr(pl_module, "calibration_report", None)
        if not report or not trainer.is_global_zero:
            return
        root = Path(trainer.default_root_dir)
        root.mkdir(parents=True, exist_ok=True)
        fig = reliability_figure(report["test"]["bins"], report["test"]["bins_raw"])
        save_figure(fig, root / self.filename)
        (root / self.report).write_text(json.dumps(report, indent=2) + "\n")
        _log_figure(trainer, "test/reliability", fig, pl_module.global_step)


class ConfusionMatrixImage(Callback):
    """The behavior model's test confusion matrix in TensorBoard: an image and a table with class names."""

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        cm = getattr(pl_module, "test_confusion", None)
        if cm is None or not trainer.is_global_zero:
            return
        names = list(pl_module.class_names)
        _log_figure(trainer, "test/confusion_matrix", confusion_figure(cm, names), pl_module.global_step)
        for logger in _tensorboards(trainer):
            logger.experiment.add_text("test/confusion_matrix_classes", confusion_markdown(cm, names))
