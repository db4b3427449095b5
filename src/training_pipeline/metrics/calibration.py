"""Probability calibration for the risk score: expected calibration error, reliability bins, temperature
scaling and isotonic regression (both fitted on validation, applied everywhere else).

ECE comes from torchmetrics (``binary_calibration_error``); torchmetrics has no public API for the bins
themselves, so ``reliability_bins`` counts them with ``torch.bucketize`` (the same edges). The reliability
diagram is drawn in ``evaluation.plots``.

Both calibrators are stored as fixed-size tensors (a temperature; an isotonic map sampled on a grid of logits)
so a checkpoint carries them as buffers and ``load_from_checkpoint`` restores them without a config.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.classification import binary_calibration_error

METHODS = ("auto", "temperature", "isotonic", "none")
FITTED = ("temperature", "isotonic", "none")  # what "auto" chooses among, in order of preference
ISOTONIC_GRID = torch.linspace(-12.0, 12.0, 241)  # logits at which the isotonic map is stored
Scores = torch.Tensor | np.ndarray | Sequence[float]


def _np(x: Scores) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def reliability_bins(probs: Scores, targets: Scores, n_bins: int = 10) -> list[dict[str, float]]:
    """Equal-width bins of predicted probability: count, mean confidence and observed frequency per bin."""
    p, y = torch.from_numpy(_np(probs).ravel()), torch.from_numpy(_np(targets).ravel())
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)
    which = (torch.bucketize(p, edges[1:-1], right=True)).clamp(0, n_bins - 1)
    count = torch.bincount(which, minlength=n_bins)
    conf = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, which, p)
    freq = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, which, y)
    return [
        {
            "lo": float(edges[b]),
            "hi": float(edges[b + 1]),
            "count": int(count[b]),
            "confidence": float(conf[b] / count[b]) if count[b] else float("nan"),
            "frequency": float(freq[b] / count[b]) if count[b] else float("nan"),
        }
        for b in range(n_bins)
    ]


def expected_calibration_error(probs: Scores, targets: Scores, n_bins: int = 10) -> float:
    """ECE: the count-weighted mean |observed frequency - mean confidence| over equal-width bins."""
    p, y = torch.from_numpy(_np(probs).ravel()), torch.from_numpy(_np(targets).ravel())
    if not len(p):
        return float("nan")
    return float(binary_calibration_error(p, y.long(), n_bins=n_bins, norm="l1"))


def brier_score(probs: Scores, targets: Scores) -> float:
    """Mean squared error of the probabilities against the 0/1 targets."""
    p, y = _np(probs).ravel(), _np(targets).ravel()
    return float(np.mean((p - y) ** 2)) if len(p) else float("nan")


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, max_iter: int = 100) -> float:
    """The temperature T > 0 minimizing the binary NLL of sigmoid(logits / T) (LBFGS on log T)."""
    z, y = logits.detach().double().flatten(), targets.detach().double().flatten()
    if len(z) < 2 or y.min() == y.max():
        return 1.0  # one class only: nothing to calibrate against
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z / log_t.exp(), y)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    t = float(log_t.detach().exp())
    return float(np.clip(t, 0.05, 20.0)) if np.isfinite(t) else 1.0


def pav(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators: a non-decreasing step fit of y on x (returns block x-means and values)."""
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    vals, weights, xsum = [], [], []
    for xi, yi in zip(xs, ys, strict=True):
        vals.append(float(yi))
        weights.append(1.0)
        xsum.append(float(xi))
        while len(vals) > 1 and vals[-2] > vals[-1]:
            w = weights[-2] + weights[-1]
            v = (vals[-2] * weights[-2] + vals[-1] * weights[-1]) / w
            s = xsum[-2] + xsum[-1]
            vals[-2:], weights[-2:], xsum[-2:] = [v], [w], [s]
    centers = np.array(xsum) / np.array(weights)
    return centers, np.array(vals)


def fit_isotonic(
    logits: torch.Tensor, targets: torch.Tensor, grid: torch.Tensor = ISOTONIC_GRID
) -> torch.Tensor:
    """Isotonic map logit -> probability sampled on ``grid`` (linear between block centres, clipped to
    [0.005, 0.995] so a calibrated score never claims certainty from a few validation contracts)."""
    z, y = _np(logits).ravel(), _np(targets).ravel()
    if len(z) < 2 or y.min() == y.max():
        return torch.sigmoid(grid).float()
    centers, values = pav(z, y)
    mapped = np.interp(_np(grid), centers, values)
    return torch.from_numpy(np.clip(mapped, 0.005, 0.995)).float()


def apply_isotonic(
    logits: torch.Tensor, table: torch.Tensor, grid: torch.Tensor = ISOTONIC_GRID
) -> torch.Tensor:
    """Piecewise-linear lookup of the stored isotonic map (differentiable-free, any device)."""
    g = grid.to(logits.device, logits.dtype)
    t = table.to(logits.device, logits.dtype)
    z = logits.clamp(float(g[0]), float(g[-1]))
    idx = torch.searchsorted(g, z.contiguous()).clamp(1, len(g) - 1)
    x0, x1 = g[idx - 1], g[idx]
    y0, y1 = t[idx - 1], t[idx]
    w = (z - x0) / (x1 - x0)
    return y0 + w * (y1 - y0)


def calibration_summary(
    raw_probs: Scores, calibrated_probs: Scores, targets: Scores, n_bins: int = 10
) -> dict[str, Any]:
    """ECE and Brier before and after calibration, with the reliability bins of both."""
    return {
        "ece_raw": expected_calibration_error(raw_probs, targets, n_bins),
        "ece": expected_calibration_error(calibrated_probs, targets, n_bins),
        "brier_raw": brier_score(raw_probs, targets),
        "brier": brier_score(calibrated_probs, targets),
        "bins_raw": reliability_bins(raw_probs, targets, n_bins),
        "bins": reliability_bins(calibrated_probs, targets, n_bins),
    }
