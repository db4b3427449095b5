"""Every generated shape compiles: one flawed contract and its safe twin per (family, era, class, shape)."""

from __future__ import annotations

from training_pipeline.corpus.generator import coverage, generate_corpus, generate_group
from training_pipeline.corpus.solc import CompileJob, compile_many


def test_coverage_sample_and_a_mixed_corpus_compile() -> None:
    pairs = [generate_group(fam, ver, [shape], seed=i) for i, (fam, ver, _, shape) in enumerate(coverage())]
    mixed = generate_corpus(60, seed=21)  # multi-label groups, repaired-only shapes, optional features
    contracts = [c for pair in pairs for c in pair] + mixed
    results = compile_many(
        [CompileJob(c.source_code, c.compiler_version, c.contract_name) for c in contracts],
        n_workers=2,
        cache_dir=False,
    )
    failures = [(c, r) for c, r in zip(contracts, results, strict=True) if not r.ok]
    assert not failures, "\n".join(f"{c.id} {c.shapes}: {r.error}" for c, r in failures[:5])
    for c, r in zip(contracts, results, strict=True):
        assert r.contract == c.contract_name and r.bytecode.startswith("0x6") and len(r.bytecode) > 200
    by_id = {c.id: r for c, r in zip(contracts, results, strict=True)}
    for flawed, twin in pairs:
        assert flawed.labels and not twin.labels
        assert by_id[flawed.id].bytecode != by_id[twin.id].bytecode, flawed.id
