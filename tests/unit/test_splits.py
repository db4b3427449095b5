"""Grouped splits never let a group straddle train/val/test."""

from __future__ import annotations

import pytest

from training_pipeline.errors import ConfigError
from training_pipeline.utils.splits import (
    SplitConfig,
    assign_folds,
    assign_folds_by_size,
    split_names,
    stable_fold,
)

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


def _loads(groups: list[str], folds: dict[str, int], n_folds: int) -> list[int]:
    return [sum(folds[g] == f for g in groups) for f in range(n_folds)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_folds_by_size_balance_records_not_groups(seed: int) -> None:
    # eight groups of 50, 30, 20, 20, 10, 10, 5, 5 records: round robin would put 50 + 10 + ... in one fold;
    # the largest-first deal fills three folds with 50 records each, whatever the seed
    sizes = {"a": 50, "b": 30, "c": 20, "d": 20, "e": 10, "f": 10, "g": 5, "h": 5}
    groups = [g for g, n in sizes.items() for _ in range(n)]
    folds = assign_folds_by_size(groups, n_folds=3, seed=seed)
    assert set(folds) == set(sizes) and set(folds.values()) <= {0, 1, 2}
    assert _loads(groups, folds, 3) == [50, 50, 50]
    assert folds == assign_folds_by_size(list(reversed(groups)), 3, seed)  # order of the records: no matter


def test_folds_by_size_seed_moves_the_groups() -> None:
    groups = [f"g{i}" for i in range(20) for _ in range(3)]  # 20 groups of 3: every deal is balanced
    dealt = {seed: assign_folds_by_size(groups, 5, seed) for seed in range(4)}
    assert all(_loads(groups, d, 5) == [12] * 5 for d in dealt.values())
    assert len({tuple(sorted(d.items())) for d in dealt.values()}) > 1
