"""Single-label (multiclass) and binary metrics, threshold tuning and a confusion-matrix image.

Used by the behavior model: history classes (one of ``taxonomy.ANOMALY_TYPES``), anomaly-vs-normal ranking
and per-transaction anomaly flags. Macro averages run over the classes present in the evaluated split (as
in ``metrics.py``). The confusion matrix is drawn with numpy alone (no plotting library needed).
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    multiclass_confusion_matrix,
)

THRESHOLD_GRID = torch.linspace(0.05, 0.95, 19)


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) counts: rows are true classes, columns predicted ones."""
    if not len(preds):
        return torch.zeros(num_classes, num_classes, dtype=torch.long)
    return multiclass_confusion_matrix(preds, targets, num_classes)


def per_class_prf(cm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    cm = cm.double()
    tp = cm.diag()
    precision = tp / cm.sum(0).clamp(min=1)
    recall = tp / cm.sum(1).clamp(min=1)
    f1 = 2 * tp / (cm.sum(0) + cm.sum(1)).clamp(min=1)
    return precision, recall, f1


def evaluate_multiclass(
    stage: str, preds: torch.Tensor, targets: torch.Tensor, class_names: list[str]
) -> dict[str, float]:
    """Accuracy, macro P/R/F1 over the classes present in ``targets``, and per-class P/R/F1."""
    cm = confusion_matrix(preds, targets, len(class_names))
    precision, recall, f1 = per_class_prf(cm)
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


def binary_prf(scores: torch.Tensor, targets: torch.Tensor, threshold: float) -> tuple[float, float, float]:
    """(precision, recall, F1) of ``scores >= threshold``."""
    pred, tgt = scores >= threshold, targets.bool()
    tp = float((pred & tgt).sum())
    fp, fn = float((pred & ~tgt).sum()), float((~pred & tgt).sum())
    return tp / max(tp + fp, 1.0), tp / max(tp + fn, 1.0), 2 * tp / max(2 * tp + fp + fn, 1.0)


def tune_binary_threshold(scores: torch.Tensor, targets: torch.Tensor, default: float = 0.5) -> float:
    """The grid threshold with the best F1 (``default`` without positives)."""
    if not len(scores) or not targets.bool().any():
        return default
    grid = THRESHOLD_GRID.to(scores.device)
    pred = scores.unsqueeze(0) >= grid.unsqueeze(1)
    tgt = targets.bool().unsqueeze(0)
    tp = (pred & tgt).sum(1).float()
    f1 = 2 * tp / (pred.sum(1) + tgt.sum(1)).float().clamp(min=1)
    return float(grid[f1.argmax()])


# --- a confusion matrix as an image (HWC uint8), without matplotlib ----------------------------------------
_DIGITS = {  # 3x5 bitmap font
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001010010010",
    "8": "111101111101111",
    "9": "111101111001111",
}


def _draw_text(
    img: np.ndarray, text: str, top: int, left: int, color: tuple[int, int, int], scale: int
) -> None:
    for k, ch in enumerate(text):
        glyph = np.array([int(b) for b in _DIGITS[ch]], dtype=bool).reshape(5, 3)
        glyph = np.kron(glyph, np.ones((scale, scale), dtype=bool))
        y, x = top, left + k * 4 * scale
        region = img[y : y + glyph.shape[0], x : x + glyph.shape[1]]
        region[glyph[: region.shape[0], : region.shape[1]]] = color


def confusion_image(cm: torch.Tensor | np.ndarray, cell: int = 48, scale: int = 3) -> np.ndarray:
    """Rows = true class index, columns = predicted; cells shaded by row share, with their counts.

    The first row and column carry the class indices (the order of the model's ``class_names``)."""
    cm = np.asarray(cm.cpu() if isinstance(cm, torch.Tensor) else cm, dtype=np.int64)
    n = cm.shape[0]
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    img = np.full(((n + 1) * cell, (n + 1) * cell, 3), 255, dtype=np.uint8)
    lo, hi = np.array([247, 251, 255]), np.array([8, 48, 107])  # white to dark blue
    for i in range(n):
        _draw_text(img, str(i), (i + 1) * cell + cell // 3, cell // 3, (90, 90, 90), scale)
        _draw_text(img, str(i), cell // 3, (i + 1) * cell + cell // 3, (90, 90, 90), scale)
        for j in range(n):
            color = (lo + (hi - lo) * share[i, j]).astype(np.uint8)
            y, x = (i + 1) * cell, (j + 1) * cell
            img[y + 1 : y + cell - 1, x + 1 : x + cell - 1] = color
            text = str(int(cm[i, j]))[:4]
            width = len(text) * 4 * scale - scale
            ink = (255, 255, 255) if share[i, j] > 0.5 else (20, 20, 20)
            _draw_text(img, text, y + (cell - 5 * scale) // 2, x + (cell - width) // 2, ink, scale)
    return img


def confusion_markdown(cm: torch.Tensor, class_names: list[str]) -> str:
    """The same matrix as a markdown table with class names (TensorBoard's text tab)."""
    head = "| true \\ predicted | " + " | ".join(f"{i} {c}" for i, c in enumerate(class_names)) + " |"
    sep = "|---" * (len(class_names) + 1) + "|"
    rows = [
        f"| {i} {c} | " + " | ".join(str(int(v)) for v in cm[i]) + " |" for i, c in enumerate(class_names)
    ]
    return "\n".join([head, sep, *rows])
