"""Callbacks that turn what a model computed in its test epoch into files and TensorBoard entries.

They act at ``on_test_end`` (after the module's own ``on_test_epoch_end``) and only on modules that expose
what they draw, so ``callbacks/default.yaml`` can list them for every model. They reuse the test-set rows the
module keeps for the predictions file (``test_predictions``), so nothing is recomputed:

- contract classifiers (bytecode detector, code analyzer): ``probs``, ``targets`` and ``mask`` per contract
  and class (mask 0 = the class was not assessed for that contract: such entries are left out everywhere);
- the aggregator: ``class_probs`` and ``labels`` per contract, ``risk`` and ``risk_calibrated``;
- the behavior model: ``probs`` per history and class, ``labels`` (the true class index).

TensorBoard tags: ``test/pr_curve/<class>`` (``PRCurves``), ``test/confusion_per_class`` and
``test/confusion_matrix`` (``ConfusionMatrixImage``), ``test/reliability`` (``ReliabilityDiagram``) and the
HParams tab (``HParamsSummary``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure

from training_pipeline.evaluation.plots import (
    confusion_figure,
    confusion_markdown,
    multilabel_confusion_figure,
    multilabel_reliability_figure,
    reliability_figure,
    save_figure,
)
from training_pipeline.metrics.calibration import (
    brier_score,
    expected_calibration_error,
    reliability_bins,
)


def _tensorboards(trainer: Trainer) -> list[TensorBoardLogger]:
    return [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]


def _log_figure(trainer: Trainer, tag: str, fig: Figure, step: int) -> None:
    for logger in _tensorboards(trainer):
        logger.experiment.add_figure(tag, fig, step, close=False)


# -- the test rows a module kept ----------------------------------------------------------------------------
@dataclass
class MultilabelRows:
    """Test probabilities, 0/1 targets and assessed mask (N, C), class names, decision thresholds (C) and,
    where the module decides per row (era-group thresholds, ``model.era_max_flags``), its flags (N, C)."""

    probs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    class_names: list[str]
    thresholds: torch.Tensor | None
    flags: torch.Tensor | None = None

    def assessed(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(targets, probabilities) of class ``k`` over the contracts where it was assessed."""
        keep = self.mask[:, k] > 0.5
        return self.targets[keep, k], self.probs[keep, k]

    def flagged(self, k: int) -> torch.Tensor:
        """Whether class ``k`` is flagged, over the contracts where it was assessed: the module's own flags,
        else its threshold (0.5 without one)."""
        keep = self.mask[:, k] > 0.5
        if self.flags is not None:
            return self.flags[keep, k]
        return self.probs[keep, k] >= (float(self.thresholds[k]) if self.thresholds is not None else 0.5)


def multilabel_rows(pl_module: LightningModule) -> MultilabelRows | None:
    """The multi-label vulnerability rows of a contract classifier's (or the aggregator's) last test epoch;
    None for other modules or before a test epoch."""
    preds = getattr(pl_module, "test_predictions", None) or {}
    names = list(getattr(pl_module, "class_names", []))
    for p_key, y_key in (("probs", "targets"), ("class_probs", "labels")):
        probs, targets = preds.get(p_key), preds.get(y_key)
        if torch.is_tensor(probs) and torch.is_tensor(targets) and probs.ndim == 2 and targets.ndim == 2:
            if probs.shape[1] != len(names) or not len(probs):
                return None
            mask = preds.get("mask") if p_key == "probs" else None
            mask = torch.ones_like(targets) if mask is None or mask.shape != targets.shape else mask
            thresholds = getattr(pl_module, "thresholds", None)
            flags = None
            if p_key == "probs" and hasattr(pl_module, "thresholds_for"):  # as its test metrics decide
                rows = pl_module.thresholds_for(preds.get("era"), len(probs), probs)
                flags = (probs.to(rows.device) >= rows).cpu()
            return MultilabelRows(
                probs.float().cpu(),
                targets.float().cpu(),
                mask.float().cpu(),
                names,
                thresholds.detach().float().cpu() if torch.is_tensor(thresholds) else None,
                flags,
            )
    return None


def pr_curve_inputs(pl_module: LightningModule) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per class (one-vs-rest for the behavior model's history classes; the aggregator's ``risk`` too):
    (0/1 labels, scores) over the test rows where that class was assessed; classes without any left out."""
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    rows = multilabel_rows(pl_module)
    preds = getattr(pl_module, "test_predictions", None) or {}
    if rows is not None:
        for k, name in enumerate(rows.class_names):
            y, p = rows.assessed(k)
            if len(y):
                out[name] = (y.bool(), p)
        risk, score = preds.get("risk"), preds.get("risk_calibrated")
        if torch.is_tensor(risk) and torch.is_tensor(score) and len(risk):
            out["risk"] = (risk.cpu() > 0.5, score.float().cpu())
        return out
    probs, labels = preds.get("probs"), preds.get("labels")
    names = list(getattr(pl_module, "class_names", []))
    if torch.is_tensor(probs) and torch.is_tensor(labels) and probs.ndim == 2 and labels.ndim == 1:
        if probs.shape[1] == len(names) and len(labels):
            for k, name in enumerate(names):
                out[name] = (labels.cpu() == k, probs[:, k].float().cpu())
    return out


def multilabel_confusion(rows: MultilabelRows) -> torch.Tensor:
    """(C, 2, 2) counts per class as the module flags it, over assessed entries: [[TN, FP], [FN, TP]]."""
    cms = torch.zeros((len(rows.class_names), 2, 2), dtype=torch.long)
    for k in range(len(rows.class_names)):
        y, _ = rows.assessed(k)
        truth, pred = (y > 0.5).long(), rows.flagged(k).long()
        cms[k] = torch.bincount(truth * 2 + pred, minlength=4).view(2, 2)
    return cms


def multilabel_calibration(rows: MultilabelRows, n_bins: int = 10) -> dict[str, Any]:
    """ECE, Brier and reliability bins of the vulnerability probabilities: pooled over every assessed
    (contract, class) entry, and per class (classes with no assessed entry left out)."""
    keep = rows.mask > 0.5
    p, y = rows.probs[keep], rows.targets[keep]

    def summary(p: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        return {
            "count": len(p),
            "positives": int((y > 0.5).sum()),
            "ece": expected_calibration_error(p, y, n_bins),
            "brier": brier_score(p, y),
            "bins": reliability_bins(p, y, n_bins),
        }

    per_class = {}
    for k, name in enumerate(rows.class_names):
        yk, pk = rows.assessed(k)
        if len(yk):
            per_class[name] = summary(pk, yk)
    return {"kind": "multilabel", "n_bins": n_bins, "pooled": summary(p, y), "per_class": per_class}


# -- callbacks ----------------------------------------------------------------------------------------------
class ReliabilityDiagram(Callback):
    """Test calibration: ``reliability_test.png`` and ``calibration.json`` in the run dir
    (``trainer.default_root_dir``) and the diagram as a TensorBoard image (``test/reliability``).

    The aggregator's calibrated risk (with the raw one outlined) where the module has a calibration report;
    else a contract classifier's vulnerability probabilities, pooled over assessed entries and per class.
    """

    def __init__(
        self, filename: str = "reliability_test.png", report: str = "calibration.json", n_bins: int = 10
    ) -> None:
        self.filename, self.report, self.n_bins = filename, report, n_bins

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        report = getattr(pl_module, "calibration_report", None)
        if report:
            fig = reliability_figure(report["test"]["bins"], report["test"]["bins_raw"])
        else:
            rows = multilabel_rows(pl_module)
            if rows is None:
                return
            report = multilabel_calibration(rows, self.n_bins)
            per_class = {c: r["bins"] for c, r in report["per_class"].items()}
            fig = multilabel_reliability_figure(report["pooled"]["bins"], per_class)
        root = Path(trainer.default_root_dir)
        root.mkdir(parents=True, exist_ok=True)
        save_figure(fig, root / self.filename)
        (root / self.report).write_text(json.dumps(report, indent=2) + "\n")
        _log_figure(trainer, "test/reliability", fig, pl_module.global_step)


class ConfusionMatrixImage(Callback):
    """Test confusion in TensorBoard: the behavior model's matrix (``test/confusion_matrix``, an image and a
    table with class names); for multi-label models one 2×2 matrix per class at its tuned threshold, over
    the contracts where the class was assessed (``test/confusion_per_class``)."""

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        step = pl_module.global_step
        cm = getattr(pl_module, "test_confusion", None)
        if cm is not None:
            names = list(pl_module.class_names)
            _log_figure(trainer, "test/confusion_matrix", confusion_figure(cm, names), step)
            for logger in _tensorboards(trainer):
                logger.experiment.add_text("test/confusion_matrix_classes", confusion_markdown(cm, names))
        rows = multilabel_rows(pl_module)
        if rows is not None and _tensorboards(trainer):
            fig = multilabel_confusion_figure(multilabel_confusion(rows), rows.class_names, rows.thresholds)
            _log_figure(trainer, "test/confusion_per_class", fig, step)


class PRCurves(Callback):
    """A TensorBoard precision-recall curve per class on the test set (``test/pr_curve/<class>``): assessed
    entries only for contract classifiers, one-vs-rest for the behavior model's history classes."""

    def __init__(self, num_thresholds: int = 127) -> None:
        self.num_thresholds = num_thresholds

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        loggers = _tensorboards(trainer)
        if not loggers or not trainer.is_global_zero:
            return
        for name, (labels, scores) in pr_curve_inputs(pl_module).items():
            for logger in loggers:
                logger.experiment.add_pr_curve(
                    f"test/pr_curve/{name}",
                    labels,
                    scores.clamp(0.0, 1.0),
                    pl_module.global_step,
                    num_thresholds=self.num_thresholds,
                )


# -- the HParams tab ----------------------------------------------------------------------------------------
def hparam_values(
    params: Mapping[str, Any], max_chars: int = 250, max_items: int = 32, prefix: str = ""
) -> dict[str, bool | int | float | str]:
    """Nested hyperparameters flattened to ``{"a/b": value}`` of the types TensorBoard's HParams plugin takes.

    Learnt state (``*_state``: tokenizers, normalizers) and mappings of more than ``max_items`` entries are
    left out, lists become their text, and values whose text exceeds ``max_chars`` are dropped.
    """
    out: dict[str, bool | int | float | str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if str(key).endswith("_state"):
            continue
        if isinstance(value, Mapping):
            if len(value) <= max_items:
                out |= hparam_values(value, max_chars, max_items, f"{name}/")
            continue
        if torch.is_tensor(value) and value.numel() == 1:
            value = value.item()
        if isinstance(value, bool | int | str) or (isinstance(value, float) and math.isfinite(value)):
            text = value
        else:
            text = str(value)
        if not isinstance(text, str) or len(text) <= max_chars:
            out[name] = text
    return out


def scalar_metrics(
    metrics: Mapping[str, Any], stages: Sequence[str] = ("val", "test"), per_class: bool = False
) -> dict[str, float]:
    """The finite scalars among ``metrics`` whose first name part is one of ``stages``; per-class ones
    (``test/f1/reentrancy``: more than one ``/``) only with ``per_class``."""
    out = {}
    for name, value in metrics.items():
        parts = name.split("/")
        if parts[0] not in stages or (len(parts) > 2 and not per_class):
            continue
        if torch.is_tensor(value):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, int | float) and math.isfinite(float(value)):
            out[name] = float(value)
    return out


def log_hparams_with_metrics(
    logger: TensorBoardLogger, params: Mapping[str, Any], metrics: Mapping[str, float], step: int
) -> None:
    """One HParams session: the flattened ``params`` beside the ``metrics`` (logged as scalars at ``step``,
    which the plugin reads as the session's values)."""
    from torch.utils.tensorboard.summary import hparams

    logger.log_metrics(dict(metrics), step)
    writer = logger.experiment._get_file_writer()
    for summary in hparams(hparam_values(params), dict(metrics)):
        writer.add_summary(summary, step)
    logger.experiment.flush()


class HParamsSummary(Callback):
    """Fills TensorBoard's HParams tab once the final metrics exist (at the end of the test run): the
    logger's hyperparameters (model, data, optimizer) beside the run's final metrics, logged as
    ``<prefix><metric>``: the last epoch's ``val/`` values, the best checkpoint's monitored value
    (``hp/best/<monitor>``) and the ``test/`` values (per-class metrics only with ``per_class``).

    ``logger.tensorboard.default_hp_metric`` is false, so Lightning itself writes no HParams session (one
    with a placeholder metric would hide this one); a run without a test epoch gets none.
    """

    def __init__(
        self, stages: Sequence[str] = ("val", "test"), prefix: str = "hp/", per_class: bool = False
    ) -> None:
        self.stages, self.prefix, self.per_class = tuple(stages), prefix, per_class
        self._fit: dict[str, float] = {}

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # the test run clears the val/ metrics from callback_metrics: keep them now
        self._fit = scalar_metrics(trainer.callback_metrics, self.stages, self.per_class)
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and ckpt.monitor and ckpt.best_model_score is not None:
            self._fit[f"best/{ckpt.monitor}"] = float(ckpt.best_model_score)

    def final_metrics(self, trainer: Trainer) -> dict[str, float]:
        """The fit's kept metrics updated with the test run's, each named ``<prefix><metric>``."""
        metrics = self._fit | scalar_metrics(trainer.callback_metrics, self.stages, self.per_class)
        return {f"{self.prefix}{k}": v for k, v in metrics.items()}

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = self.final_metrics(trainer)
        if not metrics:
            return
        for logger in _tensorboards(trainer):
            params = dict(logger.hparams) or dict(pl_module.hparams)
            log_hparams_with_metrics(logger, params, metrics, pl_module.global_step)
