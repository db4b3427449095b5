"""Multi-label losses for imbalanced classes, over the assessed entries of partially labelled data."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def multilabel_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    pos_weight: torch.Tensor | None,
    kind: str = "bce",
    gamma: float = 2.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``bce``: BCE with per-class ``pos_weight``; ``focal``: the same, scaled by (1 - p_t)^gamma.

    ``mask`` (same shape, 1 = assessed, 0 = unknown) drops unassessed entries: the mean runs over assessed
    entries only. A full mask gives exactly the unmasked loss (x * 1 and a factor of exactly 1).
    """
    bce = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight, reduction="none")
    if kind == "focal":
        p = torch.sigmoid(logits)
        p_t = p * targets + (1 - p) * (1 - targets)
        bce = bce * (1 - p_t).pow(gamma)
    elif kind != "bce":
        raise ValueError(f"loss={kind!r}: expected 'bce' or 'focal'")
    if mask is None:
        return bce.mean()
    mask = mask.to(bce.dtype)
    # mean over all entries rescaled by entries / assessed: the assessed mean, bit-identical when all count
    return (bce * mask).mean() * (mask.numel() / mask.sum().clamp(min=1))
