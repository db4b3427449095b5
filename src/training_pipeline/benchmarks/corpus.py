"""Corpus build throughput: generate + compile (cold compile cache) + store, contracts per second."""

from __future__ import annotations

import tempfile
import time

from training_pipeline.corpus.build import CorpusConfig, build_corpus, load_manifest


def run(quick: bool = False, n_contracts: int | None = None) -> dict:
    n = n_contracts or (60 if quick else 400)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = build_corpus(CorpusConfig(n_contracts=n, seed=7), tmp)  # fresh dir: nothing cached
        seconds = time.perf_counter() - start
        manifest = load_manifest(path)
        start = time.perf_counter()
        build_corpus(CorpusConfig(n_contracts=n, seed=7), tmp)
        reuse = time.perf_counter() - start
    return {
        "corpus_build": {
            "contracts": n,
            "seconds": round(seconds, 2),
            "contracts_per_s": round(n / seconds, 2),
            "generate_seconds": manifest["build"]["generate_seconds"],
            "compile_workers": 2,
            "cached_reuse_seconds": round(reuse, 3),
        }
    }
