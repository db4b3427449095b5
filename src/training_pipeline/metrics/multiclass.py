"""Single-label (multiclass) and binary metrics and threshold tuning, all on torchmetrics.

Used by the behavior model: history classes (one of ``taxonomy.ANOMALY_TYPES``), anomaly-vs-normal ranking
and per-transaction anomaly flags. Macro averages run over the classes present in the evaluated split (as
in ``classification.py``). The confusion-matrix figure is drawn in ``evaluation.plots``.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_stat_scores,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

THRESHOLD_GRID = torch.linspace(0.05, 0.95, 19)


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) counts: rows are true classes, columns predicted ones."""
    if not len(preds):
        return torch.zeros(num_classes, num_classes, dtype=torch.long)
    return multiclass_confusion_matrix(preds, targets, num_classes)


def evaluate_multiclass(
    stage: str, preds: torch.Tensor, targets: torch.Tensor, class_names: list[str]
) -> dict[str, float]:
    """Accuracy, macro P/R/F1 over the classes present in ``targets``, and per-class P/R/F1."""
    n = len(class_names)
    cm = confusion_matrix(preds, targets, n)
    if len(preds):
        kw = {"num_classes": n, "average": "none", "zero_division": 0}
        precision = multiclass_precision(preds, targets, **kw).double()
        recall = multiclass_recall(preds, targets, **kw).double()
        f1 = multiclass_f1_score(preds, targets, **kw).double()
    else:
        precision = recall = f1 = torch.zeros(n, dtype=torch.float64)
    present = cm.sum(1) > 0
    if not present.any():
        present = torch.ones_like(present)
    out = {
        f"{stage}/accuracy": float(cm.diag().sum() / cm.sum().clamp(min=1)),
        f"{stage}/f1_macro": float(f1[present].mean()),
        f"{stage}/precision_macro": float(precision[present].mean()),
        f"{stage}/recall_macro": float(recall[present].mean()),
    }
    for i, c in enumerate(class_names):
        if present[i]:
            out.update(
                {
                    f"{stage}/f1/{c}": float(f1[i]),
                    f"{stage}/precision/{c}": float(precision[i]),
                    f"{stage}/recall/{c}": float(recall[i]),
                }
            )
    return out


def binary_ranking(scores: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """(AUROC, AUPRC) of ``scores`` for binary ``targets``; NaN when a class is missing."""
    t = targets.long()
    if not len(t) or t.min() == t.max():
        return float("nan"), float("nan")
    return float(binary_auroc(scores.float(), t)), float(binary_average_precision(scores.float(), t))


def _counts(scores: torch.Tensor, targets: torch.Tensor, threshold: float) -> tuple[float, float, float]:
    """(TP, FP, FN) of ``scores >= threshold`` (binarized here: torchmetrics' own cut is strict ``>``)."""
    if not len(scores):
        return 0.0, 0.0, 0.0
    tp, fp, _, fn, _ = binary_stat_scores((scores >= threshold).long(), targets.long()).tolist()
    return float(tp), float(fp), float(fn)


def binary_prf(scores: torch.Tensor, targets: torch.Tensor, threshold: float) -> tuple[float, float, float]:
    """(precision, recall, F1) of ``scores >= threshold``."""
    tp, fp, fn = _counts(scores, targets, threshold)
    return tp / max(tp + fp, 1.0), tp / max(tp + fn, 1.0), 2 * tp / max(2 * tp + fp + fn, 1.0)


def tune_binary_threshold(scores: torch.Tensor, targets: torch.Tensor, default: float = 0.5) -> float:
    """The grid threshold with the best F1 (``default`` without positives)."""
    if not len(scores) or not targets.bool().any():
        return default
    f1 = torch.tensor([binary_prf(scores, targets, t)[2] for t in THRESHOLD_GRID.tolist()])
    return float(THRESHOLD_GRID[f1.argmax()])
