"""Threshold tuning and metric flattening."""

from __future__ import annotations

import pytest
import torch

from training_pipeline.evaluation.metrics import flatten, tune_thresholds


def test_tune_thresholds_finds_the_separating_cut() -> None:
    # class 0 separable at 0.3 (positives at 0.35-0.4), class 1 separable at 0.8, class 2 has no positives
    probs = torch.tensor([[0.35, 0.9, 0.1], [0.4, 0.85, 0.2], [0.1, 0.6, 0.3], [0.2, 0.7, 0.9]])
    targets = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=torch.float)
    t = tune_thresholds(probs, targets)
    assert 0.2 < t[0] <= 0.35
    assert 0.7 < t[1] <= 0.85
    assert t[2] == 0.5  # no positives: the default stays


def test_flatten_names_scalars_and_per_class_values() -> None:
    out = flatten("val", {"f1_macro": torch.tensor(0.5), "f1": torch.tensor([0.2, 0.8])}, ["a", "b"])
    assert out == pytest.approx({"val/f1_macro": 0.5, "val/f1/a": 0.2, "val/f1/b": 0.8})
