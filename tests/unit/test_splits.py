"""Grouped splits never let a group straddle train/val/test."""

from __future__ import annotations

import pytest

from training_pipeline.errors import ConfigError
from training_pipeline.utils.splits import SplitConfig, assign_folds, split_names, stable_fold

GROUPS = [f"g{i // 3}" for i in range(90)]  # 30 groups of 3 (a contract, its twin, a sibling)
FAMILIES = [("a", "b", "c")[(i // 3) % 3] for i in range(90)]


def test_folds_are_per_group_and_balanced() -> None:
    folds = assign_folds(GROUPS, FAMILIES, n_folds=5, seed=0)
    assert set(folds) == set(GROUPS)
    counts = [list(folds.values()).count(f) for f in range(5)]
    assert max(counts) - min(counts) <= 1


@pytest.mark.parametrize("fold", range(5))
def test_random_split_is_disjoint_by_group(fold: int) -> None:
    folds = assign_folds(GROUPS, FAMILIES, 5, 0)
    names = split_names([folds[g] for g in GROUPS], FAMILIES, SplitConfig(), fold)
    side = {}
    for g, n in zip(GROUPS, names, strict=True):
        assert side.setdefault(g, n) == n
    assert {"train", "val", "test"} <= set(names)


def test_each_group_is_tested_exactly_once_across_folds() -> None:
    folds = assign_folds(GROUPS, FAMILIES, 5, 0)
    tested = [
        g
        for f in range(5)
        for g, n in zip(
            GROUPS, split_names([folds[g] for g in GROUPS], FAMILIES, SplitConfig(), f), strict=True
        )
        if n == "test"
    ]
    assert sorted(set(tested)) == sorted(set(GROUPS)) and len(tested) == len(GROUPS)


def test_leave_families_out_holds_whole_families_out() -> None:
    folds = assign_folds(GROUPS, FAMILIES, 5, 0)
    cfg = SplitConfig(strategy="leave_families_out", holdout_families=["b"])
    names = split_names([folds[g] for g in GROUPS], FAMILIES, cfg, 0)
    assert {f for f, n in zip(FAMILIES, names, strict=True) if n == "test"} == {"b"}
    assert "b" not in {f for f, n in zip(FAMILIES, names, strict=True) if n in ("train", "val")}


def test_bad_split_config_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="strategy"):
        SplitConfig(strategy="stratified")
    with pytest.raises(ConfigError, match="fold=7"):
        split_names([0], ["a"], SplitConfig(), 7)


def test_stable_fold_is_deterministic() -> None:
    assert stable_fold("x", 5, 0) == stable_fold("x", 5, 0)
    assert len({stable_fold(f"id{i}", 5, 0) for i in range(50)}) == 5
