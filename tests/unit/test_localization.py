"""Token attributions → ranked source lines → top-k hit rates against vulnerable_lines."""

from __future__ import annotations

import pytest
import torch

from training_pipeline.metrics.localization import hit_rates, line_scores, rank_lines

CLASSES = ["reentrancy", "arithmetic", "other"]


def test_line_scores_sum_or_max_per_line_and_drop_special_tokens() -> None:
    scores = torch.tensor([[9.0, 1.0, 2.0, 0.5], [9.0, 3.0, -1.0, 0.0]])
    lines = torch.tensor([[0, 4, 4, 7], [0, 7, 5, 0]])
    assert line_scores(scores, lines, "sum") == {4: 3.0, 5: -1.0, 7: 3.5}
    assert line_scores(scores, lines, "max") == {4: 2.0, 5: -1.0, 7: 3.0}
    assert line_scores(torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.long)) == {}


def test_rank_lines_orders_by_score_then_line() -> None:
    assert rank_lines({3: 1.0, 9: 5.0, 1: 1.0, 4: -2.0}, top_k=3) == [[9, 5.0], [1, 1.0], [3, 1.0]]


def test_hit_rates_per_class_and_overall() -> None:
    ranked = [
        {"reentrancy": [[12, 3.0], [5, 1.0], [8, 0.5]]},
        {"reentrancy": [[1, 3.0], [2, 1.0], [30, 0.5]], "arithmetic": [[7, 1.0]]},
        {"arithmetic": [[4, 2.0]]},
    ]
    truth = [{"reentrancy": [12]}, {"reentrancy": [30], "arithmetic": [9]}, None]
    out = hit_rates(ranked, truth, CLASSES)
    assert out["test/loc_top1/reentrancy"] == 0.5 and out["test/loc_top3/reentrancy"] == 1.0
    assert out["test/loc_top1/arithmetic"] == 0.0
    assert out["test/loc_top1"] == pytest.approx(1 / 3) and out["test/loc_top3"] == pytest.approx(2 / 3)
    assert out["test/loc_pairs"] == 3 and "test/loc_top1/other" not in out


def test_a_class_that_was_not_ranked_is_a_miss() -> None:
    out = hit_rates([{}], [{"other": [3]}], CLASSES, prefix="val")
    assert out["val/loc_top3"] == 0.0 and out["val/loc_top3/other"] == 0.0
