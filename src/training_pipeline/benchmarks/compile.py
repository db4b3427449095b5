"""Bare solc-js throughput through SolcPool on generated contracts: the floor the corpus build is held to.

``bare_compile`` times exactly what the corpus build compiles (same sources, same 2 workers, an empty compile
cache) and nothing else; ``run`` reports it for a freshly generated set of contracts of every era.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from training_pipeline.corpus.generator import COMPILER_VERSIONS, GeneratedContract, generate_corpus
from training_pipeline.corpus.solc import CompileJob, SolcPool

WORKERS = 2


def mean_lines(contracts: Sequence[GeneratedContract]) -> float:
    return round(statistics.mean(c.source_code.count("\n") for c in contracts), 1)


def bare_compile(contracts: Sequence[GeneratedContract], n_workers: int = WORKERS) -> float:
    """Seconds to compile ``contracts`` through a new SolcPool with an empty cache (workers start cold)."""
    jobs = [CompileJob(c.source_code, c.compiler_version, c.contract_name) for c in contracts]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        with SolcPool(n_workers=n_workers, cache_dir=Path(tmp) / "solc_cache") as pool:
            results = pool.compile(jobs)
        seconds = time.perf_counter() - start
    failed = [r.error for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} generated contracts failed to compile, first: {failed[0]}")
    return seconds


def run(quick: bool = False) -> dict:
    """Compile N generated contracts of every era on 2 workers, cold (empty cache, new workers)."""
    n = 20 if quick else 200
    contracts = generate_corpus(n, seed=7, compiler_versions=COMPILER_VERSIONS)
    seconds = bare_compile(contracts)
    return {
        "compile": {
            "contracts": n,
            "seconds": round(seconds, 3),
            "contracts_per_s": round(n / seconds, 2),
            "mean_lines": mean_lines(contracts),
            "versions": sorted({c.compiler_version for c in contracts}),
            "workers": WORKERS,
        }
    }
