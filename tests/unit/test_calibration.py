"""Calibration: ECE, temperature scaling and isotonic regression fitted on validation improve its ECE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training_pipeline.evaluation.plots import confusion_figure, figure_array, reliability_figure
from training_pipeline.metrics.calibration import (
    apply_isotonic,
    brier_score,
    expected_calibration_error,
    fit_isotonic,
    fit_temperature,
    reliability_bins,
)


def overconfident(n: int = 2000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels drawn from sigmoid(z); the model reports 4 z: right ranking, far too sure."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator=g) * 1.5
    y = (torch.rand(n, generator=g) < torch.sigmoid(z)).float()
    return 4 * z, y


def test_ece_is_zero_for_calibrated_bins_and_large_for_overconfident() -> None:
    p = torch.tensor([0.25] * 4 + [0.75] * 4)
    y = torch.tensor([1, 0, 0, 0, 1, 1, 1, 0], dtype=torch.float)
    assert expected_calibration_error(p, y) < 1e-9
    logits, y = overconfident()
    assert expected_calibration_error(torch.sigmoid(logits), y) > 0.1
    bins = reliability_bins(torch.sigmoid(logits), y, n_bins=10)
    assert len(bins) == 10 and sum(b["count"] for b in bins) == len(y)


def test_temperature_scaling_improves_ece_and_brier_on_val() -> None:
    logits, y = overconfident()
    t = fit_temperature(logits, y)
    assert 3.0 < t < 5.5  # the true inflation is 4
    raw, cal = torch.sigmoid(logits), torch.sigmoid(logits / t)
    assert expected_calibration_error(cal, y) < 0.5 * expected_calibration_error(raw, y)
    assert brier_score(cal, y) < brier_score(raw, y)
    test_logits, test_y = overconfident(seed=1)  # and it carries over to unseen data
    assert expected_calibration_error(torch.sigmoid(test_logits / t), test_y) < expected_calibration_error(
        torch.sigmoid(test_logits), test_y
    )


def test_isotonic_map_is_monotone_and_improves_ece() -> None:
    logits, y = overconfident()
    table = fit_isotonic(logits, y)
    assert torch.all(table[1:] >= table[:-1] - 1e-7)
    cal = apply_isotonic(logits, table)
    assert expected_calibration_error(cal, y) < 0.5 * expected_calibration_error(torch.sigmoid(logits), y)
    assert float(cal.min()) >= 0.005 - 1e-6 and float(cal.max()) <= 0.995 + 1e-6


def test_degenerate_validation_leaves_scores_alone() -> None:
    assert fit_temperature(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0])) == 1.0
    table = fit_isotonic(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0]))
    assert torch.allclose(apply_isotonic(torch.tensor([0.0]), table), torch.tensor([0.5]), atol=1e-3)


def test_ece_matches_the_bin_definition() -> None:
    """torchmetrics' ECE equals the count-weighted gap of our reliability bins (edges included)."""
    logits, y = overconfident(500, seed=3)
    p = torch.sigmoid(logits)
    p[:4] = torch.tensor([0.1, 0.2, 0.5, 0.9])  # on bin edges
    for n_bins in (5, 10, 15):
        bins = reliability_bins(p, y, n_bins)
        gap = sum(b["count"] * abs(b["frequency"] - b["confidence"]) for b in bins if b["count"]) / len(p)
        assert expected_calibration_error(p, y, n_bins) == pytest.approx(gap, abs=1e-6)


def test_reliability_and_confusion_figures_render_rgb() -> None:
    logits, y = overconfident(200)
    fig = reliability_figure(
        reliability_bins(torch.sigmoid(logits / 4), y), reliability_bins(torch.sigmoid(logits), y)
    )
    img = figure_array(fig)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    cm = figure_array(confusion_figure(torch.tensor([[3, 1], [0, 4]]), ["normal", "exploit_drain"]))
    assert cm.ndim == 3 and cm.shape[2] == 3 and (cm < 255).any()
