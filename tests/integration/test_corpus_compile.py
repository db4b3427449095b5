"""Zero compile failures: one flawed contract and its safe twin per (family, era), every shape at least once,
and a small mixed corpus (multi-label groups, repaired-only shapes, optional features)."""

from __future__ import annotations

from training_pipeline import taxonomy
from training_pipeline.corpus.build import CorpusConfig, build_corpus, corpus_key, load_corpus, load_manifest
from training_pipeline.corpus.generator import (
    COMPILER_VERSIONS,
    SHAPES,
    coverage,
    generate_corpus,
    generate_group,
)
from training_pipeline.corpus.solc import CompileJob, compile_many


def _sample() -> list[tuple[str, str, str]]:
    """A (family, era, shape) per family × era, preferring shapes not chosen yet, until every shape is in."""
    by_fe: dict[tuple[str, str], list[str]] = {}
    for fam, ver, _, shape in coverage():
        by_fe.setdefault((fam, ver), []).append(shape)
    seen: set[str] = set()
    out = []
    for i, fe in enumerate(sorted(by_fe)):
        options = by_fe[fe]
        fresh = [s for s in options if s not in seen]
        shape = fresh[0] if fresh else options[i % len(options)]
        seen.add(shape)
        out.append((*fe, shape))
    for shape in sorted(set(SHAPES) - seen):  # a shape that only fits where others were chosen
        fam, ver, _, _ = next(t for t in coverage() if t[3] == shape)
        out.append((fam, ver, shape))
    return out


def test_every_family_era_and_shape_compiles() -> None:
    sample = _sample()
    assert {(f, v) for f, v, _ in sample} == {(f, v) for f in taxonomy.FAMILIES for v in COMPILER_VERSIONS}
    assert {s for *_, s in sample} == set(SHAPES)
    pairs = [generate_group(fam, ver, [shape], seed=i) for i, (fam, ver, shape) in enumerate(sample)]
    mixed = generate_corpus(10, seed=21)
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


def test_compile_variants_are_stored_beside_bytecode(tmp_path) -> None:
    variants = [{"optimize": False}, {"optimize": True, "runs": 200}]
    cfg = CorpusConfig(n_contracts=10, seed=3, n_workers=1, compile_variants=variants)
    assert corpus_key(CorpusConfig(compile_variants=[{"optimize": False}])) == corpus_key(CorpusConfig())
    assert corpus_key(cfg) != corpus_key(CorpusConfig(n_contracts=10, seed=3))
    path = build_corpus(cfg, tmp_path)
    ds = load_corpus(path)
    assert set(ds.features["bytecode_variants"]) == {"o0", "o1-r200"}
    rows = list(ds)
    assert all(r["bytecode"] == r["bytecode_variants"]["o0"] for r in rows)
    optimized = [r["bytecode_variants"]["o1-r200"] for r in rows]
    assert all(code.startswith("0x6") for code in optimized)
    assert sum(o != r["bytecode"] for o, r in zip(optimized, rows, strict=True)) >= 8
    manifest = load_manifest(path)
    assert list(manifest["compile_variants"]) == ["o0", "o1-r200"]
    assert manifest["compile_variants"]["o1-r200"]["optimize"] is True
