"""One variant of a source (``augment_source``) and the recompiling driver over records."""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training_pipeline.corpus.augment.idioms import idioms
from training_pipeline.corpus.augment.layout import (
    insert_comments,
    random_style,
    reformat,
    reorder,
    strip_comments,
)
from training_pipeline.corpus.augment.names import rename
from training_pipeline.corpus.augment.scope import scan
from training_pipeline.corpus.solc import SUPPORTED_VERSIONS, CompileJob, SolcPool
from training_pipeline.errors import ConfigError
from training_pipeline.utils.solidity import Tok, render, tokenize

log = logging.getLogger(__name__)

TRANSFORMS = ("rename", "reorder", "comments", "format", "idioms")


@dataclass(frozen=True)
class AugmentConfig:
    """``data.augment.*``: how many variants of each training contract, made by which transforms."""

    enabled: bool = False
    copies: int = 2
    transforms: Sequence[str] = TRANSFORMS
    seed: int = 0
    n_workers: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "transforms", tuple(self.transforms))
        unknown = [t for t in self.transforms if t not in TRANSFORMS]
        if unknown:
            raise ConfigError(
                f"data.augment.transforms: unknown {unknown}; expected some of {list(TRANSFORMS)}"
            )
        if not self.transforms:
            raise ConfigError("data.augment.transforms: empty; name at least one transform")
        if self.copies < 1:
            raise ConfigError(f"data.augment.copies={self.copies}: need at least 1")


def line_map(toks: Sequence[Tok]) -> dict[int, int]:
    """Original line → line of the rendered tokens where its first code token now sits."""
    out: dict[int, int] = {}
    line = 1
    for t in toks:
        if t.code and t.line is not None and t.line not in out:
            out[t.line] = line
        line += t.text.count("\n")
    return out


@dataclass
class Variant:
    """An augmented source, where each original line went (``lines``) and what was renamed."""

    source: str
    lines: dict[int, int]
    renames: dict[str, str]
    transforms: tuple[str, ...]


def augment_source(
    source: str,
    rng: random.Random,
    transforms: Sequence[str] = TRANSFORMS,
    compiler_version: str | None = None,
) -> Variant:
    """Apply the given transforms (in a fixed order, each with its own random choices) to one source."""
    toks = tokenize(source)
    info = scan(toks)
    renames: dict[str, str] = {}
    declared = set(info.eligible) | info.blocked
    if "rename" in transforms:
        renames = rename(toks, rng, info)
    if "idioms" in transforms:
        toks = idioms(toks, rng, compiler_version, declared | set(renames.values()))
    if "reorder" in transforms:
        toks = reorder(toks, rng)
    if "comments" in transforms:
        mode = rng.choice(("strip", "insert", "both"))
        if mode in ("strip", "both"):
            toks = strip_comments(toks)
        if mode in ("insert", "both"):
            toks = insert_comments(toks, rng)
    if "format" in transforms:
        toks = reformat(toks, random_style(rng))
    return Variant(render(toks), line_map(toks), renames, tuple(transforms))


def remap_lines(
    vulnerable_lines: dict[str, list[int]] | None, lines: dict[int, int]
) -> dict[str, list[int]] | None:
    """Move every vulnerable line to where its statement now is; None when a line has no code any more."""
    if vulnerable_lines is None:
        return None
    out = {}
    for label, nums in vulnerable_lines.items():
        if any(n not in lines for n in nums):
            return None
        out[label] = sorted({lines[n] for n in nums})
    return out


def variant_rng(seed: int, rid: str, k: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}\t{rid}\t{k}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass
class AugmentStats:
    """What one ``augment_records`` call did (also logged)."""

    contracts: int = 0
    skipped: int = 0  # no source, no compiler version, or an unsupported compiler
    variants: int = 0  # attempted (distinct from their original)
    unchanged: int = 0
    unmapped: int = 0  # a vulnerable line that no longer holds code
    failed: int = 0  # did not compile
    kept: int = 0
    transform_seconds: float = 0.0
    compile_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def failure_rate(self) -> float:
        return self.failed / self.variants if self.variants else 0.0


def augment_records(
    records: list[dict[str, Any]],
    cfg: AugmentConfig,
    data_dir: Path | str,
    stats: AugmentStats | None = None,
) -> list[dict[str, Any]]:
    """``cfg.copies`` recompiled variants of every record with source (id ``<id>~aug<k>``), deterministic."""

    stats = stats if stats is not None else AugmentStats()
    start = time.perf_counter()
    pending: list[tuple[dict[str, Any], int, Variant, dict | None]] = []
    for r in records:
        stats.contracts += 1
        source, version = r.get("source_code"), r.get("compiler_version")
        if not source or version not in SUPPORTED_VERSIONS:
            stats.skipped += 1
            continue
        seen = {source}
        for k in range(cfg.copies):
            variant = augment_source(source, variant_rng(cfg.seed, r["id"], k), cfg.transforms, version)
            if variant.source in seen:
                stats.unchanged += 1
                continue
            seen.add(variant.source)
            lines = remap_lines(r.get("vulnerable_lines"), variant.lines)
            if lines is None and r.get("vulnerable_lines") is not None:
                stats.unmapped += 1
                continue
            pending.append((r, k, variant, lines))
    stats.variants = len(pending)
    stats.transform_seconds = time.perf_counter() - start

    start = time.perf_counter()
    jobs = [CompileJob(v.source, r["compiler_version"], r.get("contract_name")) for r, _, v, _ in pending]
    log.info("Compiling %d augmented variants with %d solc-js workers", len(jobs), cfg.n_workers)
    next_log = [0.25]

    def progress(done: int, total: int) -> None:  # a cold first run of the default corpus takes minutes
        if total and done / total >= next_log[0] and done < total:
            next_log[0] = done / total + 0.25
            log.info("compiled %d/%d augmented variants", done, total)

    with SolcPool(n_workers=cfg.n_workers, cache_dir=Path(data_dir) / "solc_cache") as pool:
        results = pool.compile(jobs, progress=progress)
    stats.compile_seconds = time.perf_counter() - start

    out = []
    for (r, k, variant, lines), result in zip(pending, results, strict=True):
        if not result.ok:
            stats.failed += 1
            if len(stats.errors) < 5:
                stats.errors.append(f"{r['id']}~aug{k} ({'+'.join(variant.transforms)}): {result.error}")
            continue
        out.append(
            {
                **r,
                "id": f"{r['id']}~aug{k}",
                "source_code": variant.source,
                "bytecode": result.bytecode,
                "vulnerable_lines": lines,
                "augmented_from": r["id"],
                "split": "train",
            }
        )
    stats.kept = len(out)
    log.info(
        "Augmented %d of %d contracts: %d variants kept, %d failed to compile (%.1f%%), %d unchanged, "
        "%d with unmappable lines, %d skipped; %.1f ms/variant transform, %.1f s compile",
        stats.contracts - stats.skipped,
        stats.contracts,
        stats.kept,
        stats.failed,
        100 * stats.failure_rate,
        stats.unchanged,
        stats.unmapped,
        stats.skipped,
        1000 * stats.transform_seconds / max(1, stats.variants + stats.unchanged + stats.unmapped),
        stats.compile_seconds,
    )
    for err in stats.errors:
        log.warning("augmented variant dropped: %s", err[:300])
    return out
