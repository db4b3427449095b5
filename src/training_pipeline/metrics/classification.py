"""Multi-label metrics shared by every classifier: F1 (macro, micro, per class), P/R, AUROC, AUPRC.

Macro averages run over the classes the model was trained on that also occur in the evaluated split: a
class with no training example cannot be predicted, and a class with no example in the split has no
recall, so either would only drag the average towards zero. False alarms on absent classes still count in
micro-F1 and in the per-class precision of the classes that are present.
"""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MultilabelAUROC,
    MultilabelAveragePrecision,
    MultilabelF1Score,
    MultilabelPrecision,
    MultilabelRecall,
)
from torchmetrics.functional.classification import multilabel_stat_scores

THRESHOLD_GRID = torch.linspace(0.05, 0.95, 19)


def multilabel_metrics(num_labels: int) -> MetricCollection:
    """Metrics on binarized predictions (per-class thresholds are applied before update)."""
    kw = {"num_labels": num_labels, "threshold": 0.5, "zero_division": 0}
    return MetricCollection(
        {
            "f1_macro": MultilabelF1Score(average="macro", **kw),
            "f1_micro": MultilabelF1Score(average="micro", **kw),
            "precision_macro": MultilabelPrecision(average="macro", **kw),
            "recall_macro": MultilabelRecall(average="macro", **kw),
            "f1": MultilabelF1Score(average="none", **kw),
            "precision": MultilabelPrecision(average="none", **kw),
            "recall": MultilabelRecall(average="none", **kw),
        }
    )


def ranking_metrics(num_labels: int) -> MetricCollection:
    """Threshold-free metrics on probabilities."""
    return MetricCollection(
        {
            "auroc": MultilabelAUROC(num_labels=num_labels, average="macro"),
            "auprc": MultilabelAveragePrecision(num_labels=num_labels, average="macro"),
        }
    )


def tune_thresholds(probs: torch.Tensor, targets: torch.Tensor, default: float = 0.5) -> torch.Tensor:
    """Per-class threshold maximizing F1 on (validation) data; ``default`` for classes without positives."""
    grid = THRESHOLD_GRID.to(probs.device)
    f1 = torch.stack([f1_per_class(probs >= t, targets) for t in grid])  # (T, C)
    best = grid[f1.argmax(0)]
    has_pos = targets.sum(0) > 0
    return torch.where(has_pos, best, torch.full_like(best, default))


def f1_per_class(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(C,) F1 = 2 TP / (2 TP + FP + FN) of binarized ``preds`` (0 where a class has no TP, FP nor FN)."""
    if not len(preds):
        return torch.zeros(preds.shape[1], device=preds.device)
    # binarized before torchmetrics (its own threshold is strict ``>``, ours is ``>=``)
    stats = multilabel_stat_scores(preds.long(), targets.long(), preds.shape[1], average=None).float()
    tp, fp, fn = stats[:, 0], stats[:, 1], stats[:, 3]
    return 2 * tp / (2 * tp + fp + fn).clamp(min=1)


def flatten(prefix: str, values: dict[str, torch.Tensor], class_names: list[str]) -> dict[str, float]:
    """Scalar metrics as ``prefix/name``; per-class vectors as ``prefix/name/<class>``."""
    out: dict[str, float] = {}
    for name, value in values.items():
        if value.ndim == 0:
            out[f"{prefix}/{name}"] = float(value)
        else:
            out.update({f"{prefix}/{name}/{c}": float(v) for c, v in zip(class_names, value, strict=True)})
    return out


def evaluate_multilabel(
    stage: str,
    probs: torch.Tensor,
    targets: torch.Tensor,
    thresholds: torch.Tensor,
    class_names: list[str],
    candidates: list[int],
) -> dict[str, float]:
    """All metrics of one epoch, named ``stage/...``: micro-F1 over every candidate (trained) class, the rest
    over the candidates present in ``targets``."""
    preds = (probs >= thresholds).long()
    cand = torch.tensor(candidates, device=probs.device)
    micro = MultilabelF1Score(num_labels=len(candidates), average="micro", zero_division=0).to(probs.device)
    values = {f"{stage}/f1_micro": float(micro(preds[:, cand], targets[:, cand].long()))}
    idx = cand[targets[:, cand].sum(0) > 0]
    if len(idx) < 2:  # torchmetrics' multilabel metrics need two labels
        idx = cand
    names = [class_names[i] for i in idx.tolist()]
    per_class = multilabel_metrics(len(names)).to(probs.device)
    per_class.update(preds[:, idx].float(), targets[:, idx].long())
    values.update(flatten(stage, {k: v for k, v in per_class.compute().items() if k != "f1_micro"}, names))
    if len(probs):
        rank = ranking_metrics(len(names)).to(probs.device)
        rank.update(probs[:, idx], targets[:, idx].long())
        values.update(flatten(stage, rank.compute(), names))
    return values
