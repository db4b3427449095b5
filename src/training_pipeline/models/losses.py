"""Multi-label losses for imbalanced classes over the weighted entries of partly or weakly labelled data."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def multilabel_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    pos_weight: torch.Tensor | None,
    kind: str = "bce",
    gamma: float = 2.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """``bce``: BCE with per-class ``pos_weight``; ``focal``: the same, scaled by (1 - p_t)^gamma.

    ``weight`` (same shape) weighs each entry: 0 leaves it out (unassessed), 1 is a human label, less a weak
    label or a down-weighted source. The loss is the mean of weight × term over the entries that count
    (weight > 0): a 0/1 mask gives the assessed mean, a full mask exactly the unweighted loss (x * 1 and a
    factor of exactly 1), and an entry of weight w moves the loss w times as much as a human label would.
    """
    bce = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight, reduction="none")
    if kind == "focal":
        p = torch.sigmoid(logits)
        p_t = p * targets + (1 - p) * (1 - targets)
        bce = bce * (1 - p_t).pow(gamma)
    elif kind != "bce":
        raise ValueError(f"loss={kind!r}: expected 'bce' or 'focal'")
    if weight is None:
        return bce.mean()
    weight = weight.to(bce.dtype)
    counted = (weight > 0).to(bce.dtype).sum().clamp(min=1)
    # mean over all entries rescaled by entries / counted: bit-identical to the plain mean when all count
    return (bce * weight).mean() * (weight.numel() / counted)


def bernoulli_symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Mean symmetric KL divergence between per-entry Bernoulli predictions: KL(p‖q) + KL(q‖p), which for
    Bernoullis is exactly (p - q)·(logit p - logit q); 0 when the two agree, and it needs no label."""
    return ((torch.sigmoid(logits_a) - torch.sigmoid(logits_b)) * (logits_a - logits_b)).mean()
