"""Grouped splits: a contract, its safe twin and its template siblings always land on the same side."""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from training_pipeline.errors import ConfigError

STRATEGIES = ("random", "leave_families_out")


@dataclass(frozen=True)
class SplitConfig:
    """How records become train/val/test. ``fold`` f of ``n_folds``: test = fold f, val = fold f+1.

    ``exclude_folds`` are left out entirely ('unused'): cross-fitting inside the outer training folds
    (``scripts/train_all.py``) excludes the outer test fold, so no inner model ever sees it, not even as
    validation (val is then the next fold after f that is not excluded).
    """

    strategy: str = "random"
    n_folds: int = 5
    seed: int = 0
    holdout_families: Sequence[str] = field(default_factory=lambda: ("auction",))
    exclude_folds: Sequence[int] = ()

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"data.split.strategy={self.strategy!r}: expected one of {', '.join(STRATEGIES)}"
            )
        if self.n_folds < 3:
            raise ConfigError(
                f"data.split.n_folds={self.n_folds}: need at least 3 (train, val and test folds)"
            )
        bad = [f for f in self.exclude_folds if not 0 <= int(f) < self.n_folds]
        if bad:
            raise ConfigError(f"data.split.exclude_folds={list(bad)}: expected folds 0..{self.n_folds - 1}")
        if self.strategy == "random" and self.n_folds - len(set(self.exclude_folds)) < 3:
            raise ConfigError(
                f"data.split.exclude_folds={list(self.exclude_folds)} leaves fewer than 3 of "
                f"{self.n_folds} folds (train, val and test)"
            )


def assign_folds(
    groups: Sequence[str], strata: Sequence[str | None], n_folds: int, seed: int
) -> dict[str, int]:
    """Fold id per group, groups shuffled within each stratum (family) and dealt round robin."""
    by_stratum: dict[str, set[str]] = defaultdict(set)
    for group, stratum in zip(groups, strata, strict=True):
        by_stratum[str(stratum)].add(group)
    rng = random.Random(seed)
    folds: dict[str, int] = {}
    offset = 0
    for stratum in sorted(by_stratum):
        members = sorted(by_stratum[stratum])
        rng.shuffle(members)
        for i, group in enumerate(members):
            folds.setdefault(group, (offset + i) % n_folds)
        offset += len(members)
    return folds


def assign_folds_by_size(groups: Sequence[str], n_folds: int, seed: int) -> dict[str, int]:
    """Fold id per group, folds balanced in records: the largest group first, each to the fold holding the
    fewest records so far (ties: groups of one size and folds in a seeded order). For a few groups of very
    different sizes (an npm release or clone group: 1 to 129 contracts), where dealing groups round robin can
    leave the validation fold with a tenth of the records and the test fold with a third (scikit-learn's
    GroupKFold balances the same way, but has no seed and returns index arrays, not a fold per group)."""
    sizes = Counter(groups)
    rng = random.Random(seed)
    order = sorted(sizes)
    rng.shuffle(order)
    order.sort(key=lambda g: -sizes[g])  # stable: equal sizes keep the seeded order
    fold_order = list(range(n_folds))
    rng.shuffle(fold_order)
    load = dict.fromkeys(fold_order, 0)
    folds: dict[str, int] = {}
    for group in order:
        fold = min(fold_order, key=lambda f: load[f])  # first lightest in the seeded fold order
        folds[group] = fold
        load[fold] += sizes[group]
    return folds


def stable_fold(key: str, n_folds: int, seed: int) -> int:
    """Fold from a hash: for records whose group set is not known in advance."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % n_folds


def split_names(
    folds: Sequence[int], families: Sequence[str | None], cfg: SplitConfig, fold: int
) -> list[str]:
    """'train' | 'val' | 'test' per record for the chosen strategy and fold ('unused': an excluded fold)."""
    if not 0 <= fold < cfg.n_folds:
        raise ConfigError(f"data.fold={fold}: expected 0..{cfg.n_folds - 1}")
    excluded = {int(f) for f in cfg.exclude_folds}
    if fold in excluded and cfg.strategy == "random":
        raise ConfigError(f"data.fold={fold} is one of data.split.exclude_folds={sorted(excluded)}")
    val_fold = next(
        v for v in ((fold + k) % cfg.n_folds for k in range(1, cfg.n_folds + 1)) if v not in excluded
    )
    holdout = set(cfg.holdout_families)
    names = []
    for f, fam in zip(folds, families, strict=True):
        if f in excluded:
            names.append("unused")
        elif cfg.strategy == "leave_families_out":
            # Held-out families are the test set; the rest trains, with one fold kept for validation.
            names.append("test" if fam in holdout else ("val" if f == val_fold else "train"))
        else:
            names.append("test" if f == fold else ("val" if f == val_fold else "train"))
    return names
