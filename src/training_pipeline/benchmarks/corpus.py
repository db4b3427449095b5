"""Corpus build against its floor, the bare compiler, side by side on the same contracts and 2 workers.

The contracts are generated once; then (a) exactly those sources go through SolcPool with an empty cache, and
(b) ``build_corpus`` of the same config runs from scratch (empty data dir, empty compile cache: generate,
compile, assign folds, save with HF datasets, hash). The build should reach at least 80% of the bare
throughput. The full run alternates the two twice (a b b a) so a load change on a shared machine hits both.
"""

from __future__ import annotations

import tempfile
import time

from training_pipeline.benchmarks.compile import WORKERS, bare_compile, mean_lines
from training_pipeline.corpus.build import CorpusConfig, build_corpus, load_manifest
from training_pipeline.corpus.generator import COMPILER_VERSIONS, generate_corpus


def _build(cfg: CorpusConfig) -> tuple[float, dict, float]:
    """Seconds for a from-scratch build, its manifest, and the seconds of a second (cached) call."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = build_corpus(cfg, tmp)
        seconds = time.perf_counter() - start
        manifest = load_manifest(path)
        start = time.perf_counter()
        build_corpus(cfg, tmp)
        reuse = time.perf_counter() - start
    return seconds, manifest, reuse


def run(quick: bool = False, n_contracts: int | None = None) -> dict:
    n = n_contracts or (24 if quick else 200)
    versions = ("0.8.26",) if quick else COMPILER_VERSIONS  # quick: one compiler to load, seconds not minutes
    cfg = CorpusConfig(n_contracts=n, seed=7, compiler_versions=versions, n_workers=WORKERS)
    contracts = generate_corpus(
        n,
        seed=cfg.seed,
        compiler_versions=cfg.compiler_versions,
        safe_fraction=cfg.safe_fraction,
        multi_label_fraction=cfg.multi_label_fraction,
    )
    rounds = 1 if quick else 2
    bare_s = build_s = reuse = 0.0
    manifest: dict = {}
    for r in range(rounds):
        order = ("bare", "build") if r % 2 == 0 else ("build", "bare")
        for what in order:
            if what == "bare":
                bare_s += bare_compile(contracts)
            else:
                seconds, manifest, reuse = _build(cfg)
                build_s += seconds
    build_rate, bare_rate = rounds * n / build_s, rounds * n / bare_s
    return {
        "corpus_build": {
            "contracts": n,
            "mean_lines": mean_lines(contracts),
            "versions": list(versions),
            "rounds": rounds,
            "seconds": round(build_s / rounds, 2),
            "contracts_per_s": round(build_rate, 2),
            "bare_compile_seconds": round(bare_s / rounds, 2),
            "bare_compile_contracts_per_s": round(bare_rate, 2),
            "build_vs_bare": round(build_rate / bare_rate, 3),
            "generate_seconds": manifest["build"]["generate_seconds"],
            "compile_workers": WORKERS,
            "cached_reuse_seconds": round(reuse, 3),
        }
    }
