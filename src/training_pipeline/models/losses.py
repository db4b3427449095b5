"""Multi-label losses for imbalanced classes."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def multilabel_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    pos_weight: torch.Tensor | None,
    kind: str = "bce",
    gamma: float = 2.0,
) -> torch.Tensor:
    """``bce``: BCE with per-class ``pos_weight``; ``focal``: the same, scaled by (1 - p_t)^gamma."""
    bce = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight, reduction="none")
    if kind == "focal":
        p = torch.sigmoid(logits)
        p_t = p * targets + (1 - p) * (1 - targets)
        bce = bce * (1 - p_t).pow(gamma)
    elif kind != "bce":
        raise ValueError(f"loss={kind!r}: expected 'bce' or 'focal'")
    return bce.mean()
