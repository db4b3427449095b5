"""Realism of the generated corpus: short single-purpose contracts, pre-0.4.22 idioms, real 0.4 flaw shapes.

Short contracts stay within 20-150 lines and keep the labelling contract (labels, ``vulnerable_lines`` on the
flawed statement, a repaired twin); legacy 0.4 files use the idioms real 0.4 code does; every short shape and
its twin compiles with the bundled solc of its era (slow: a few hundred compilations).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from training_pipeline.corpus.build import CorpusConfig, corpus_key
from training_pipeline.corpus.generator import (
    COMPILER_VERSIONS,
    SHAPES,
    GeneratedContract,
    generate_corpus,
    generate_group,
)
from training_pipeline.corpus.solc import CompileJob, compile_many
from training_pipeline.corpus.templates.short import SHORT_SHAPES

CORPUS_YAML = Path(__file__).parents[2] / "src/training_pipeline/conf/data/_corpus.yaml"
NEW_SHAPES = sorted(s for s in SHAPES if SHAPES[s].short_only)


@pytest.fixture(scope="module")
def corpus() -> list[GeneratedContract]:
    return generate_corpus(400, seed=5, short_fraction=0.4, legacy_fraction=0.6)


def _lines(c: GeneratedContract, label: str) -> list[str]:
    rows = c.source_code.splitlines()
    return [rows[i - 1].strip() for i in c.vulnerable_lines[label]]


def test_short_contracts_are_20_to_150_lines_of_one_contract(corpus) -> None:
    short = [c for c in corpus if c.short]
    assert abs(len(short) - 0.4 * len(corpus)) <= 4
    assert {c.family for c in short} == set(SHORT_SHAPES)
    for c in short:
        n = len(c.source_code.splitlines())
        assert 20 <= n <= 150, (c.id, n)
        assert re.findall(r"^contract (\w+)", c.source_code, re.M) == [c.contract_name], c.id
    assert min(len(c.source_code.splitlines()) for c in corpus if not c.short) >= 90  # long ones as before
    labelled = Counter(label for c in short for label in c.labels)
    assert labelled["reentrancy"] > 10 and labelled["unchecked_low_level_calls"] > 10, labelled
    groups: dict[str, list[GeneratedContract]] = {}
    for c in short:
        groups.setdefault(c.group, []).append(c)
    for group in groups.values():  # a flawed contract and its repaired twin
        assert sorted(bool(c.labels) for c in group) == [False, True], [c.id for c in group]


def test_knobs_are_deterministic_and_off_means_no_short_or_legacy(corpus) -> None:
    assert generate_corpus(400, seed=5, short_fraction=0.4, legacy_fraction=0.6) == corpus
    plain = generate_corpus(120, seed=5)
    assert plain == generate_corpus(120, seed=5, short_fraction=0.0, legacy_fraction=0.0)
    assert not any(c.short for c in plain)
    assert not any(
        re.search(r"^\s*var |^pragma solidity \^0\.4\.(0|4|8|11|13|16);", c.source_code, re.M) for c in plain
    )
    with pytest.raises(ValueError, match="short_fraction"):
        generate_corpus(20, short_fraction=1.5)


def test_config_defaults_match_the_yaml_and_change_the_key() -> None:
    conf = yaml.safe_load(CORPUS_YAML.read_text())
    cfg = CorpusConfig()
    assert (conf["short_fraction"], conf["legacy_fraction"]) == (cfg.short_fraction, cfg.legacy_fraction)
    assert cfg.short_fraction == 0 and cfg.legacy_fraction == 0  # off: no real-world gain (docs/data.md)
    assert corpus_key(CorpusConfig(short_fraction=0.4, legacy_fraction=0.6)) != corpus_key(cfg)


OLD_IDIOMS = {
    "exact pragma": r"^pragma solidity 0\.4\.26;",
    "pre-0.4.22 caret pragma": r"^pragma solidity \^0\.4\.(1?\d|2[01]);",
    "throw": r"\bthrow;",
    "suicide": r"\bsuicide\(",
    "sha3": r"\bsha3\(",
    "var": r"^\s*var \w+ = ",
    "constant function": r"\) (public )?constant returns \(",
    "call.value": r"msg\.sender\.call\.value\(",
    "fallback without payable": r"^\s*function \(\)( public)?\s*\{?$",
    "event without emit": r"^\s*[A-Z]\w*\(msg\.sender, ",
}


def test_legacy_04_files_use_the_old_idioms(corpus) -> None:
    old = [c for c in corpus if c.compiler_version == "0.4.26"]
    newer = "\n".join(c.source_code for c in corpus if c.compiler_version != "0.4.26")
    for idiom, pattern in OLD_IDIOMS.items():
        assert any(re.search(pattern, c.source_code, re.M) for c in old), idiom
    assert any(re.search(rf"^\s*function {c.contract_name}\(", c.source_code, re.M) for c in old)
    for gone in (r"\bthrow;", r"\bsuicide\(", r"\bsha3\(", r"^\s*var "):
        assert not re.search(gone, newer, re.M), gone
    # the unchecked send of the ignored_send shape, written the 0.4 way
    vul, twin = generate_group("vault", "0.4.26", ["unchecked_low_level_calls/ignored_send"], 3, legacy=True)
    assert _lines(vul, "unchecked_low_level_calls") and all(
        re.fullmatch(r"msg\.sender\.send\(\w+\);", t) for t in _lines(vul, "unchecked_low_level_calls")
    )
    assert re.search(r"(require\(|if \(!)msg\.sender\.send\(", twin.source_code)


def _pairs(shape: str, legacy: bool) -> list[tuple[GeneratedContract, GeneratedContract]]:
    fams = [f for f, shapes in SHORT_SHAPES.items() if shape in shapes]
    return [tuple(generate_group(f, "0.4.26", [shape], seed=i, legacy=legacy)) for i, f in enumerate(fams)]


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("shape", NEW_SHAPES)
def test_new_shapes_label_the_flawed_statement(shape: str, legacy: bool) -> None:
    cls, name = shape.split("/")
    for vul, twin in _pairs(shape, legacy):
        assert vul.short and vul.labels == (cls,) and vul.shapes == (shape,)
        assert twin.labels == () and twin.vulnerable_lines == {} and twin.group == vul.group
        texts = _lines(vul, cls)
        if name == "call_then_debit":
            assert re.fullmatch(r"if \(msg\.sender\.call\.value\((\w+)\)\(\)\) \{", texts[0]), texts
            assert re.fullmatch(r"\w+\[msg\.sender\] -= \w+;", texts[1]) and len(texts) == 2, texts
            debit = texts[1]
            rows = [r.strip() for r in twin.source_code.splitlines()]
            call = next(i for i, r in enumerate(rows) if ".call.value(" in r)
            assert rows.index(debit) < call and rows[call].startswith(("require(", "if (!")), rows
        elif name == "call_value_all":
            ledger = re.search(r"\.call\.value\((\w+)\[msg\.sender\]\)\(\)", texts[0])
            assert ledger and texts[1] == f"{ledger.group(1)}[msg.sender] = 0;" and len(texts) == 2, texts
            rows = [r.strip() for r in twin.source_code.splitlines()]
            call = next(i for i, r in enumerate(rows) if ".call.value(" in r)
            assert rows.index(texts[1]) < call and f"{ledger.group(1)}[msg.sender])" not in rows[call]
        else:  # a dropped result: the statement is the bare call, the twin checks it
            (text,) = texts
            op = {"forward_call": ".call.value(", "signature_call": ".call(bytes4(", "payout_send": ".send("}
            assert op.get(name, ".delegatecall(") in text and text.endswith(");"), text
            assert not text.startswith(("require", "if", "assert", "(bool")), text
            assert text.rstrip(";") in twin.source_code
            checked = [r.strip() for r in twin.source_code.splitlines() if text.rstrip(";") in r]
            assert checked and all(r.startswith(("require(", "if (!")) for r in checked), checked


def test_unknown_short_requests_are_refused() -> None:
    with pytest.raises(ValueError, match="only in short"):
        generate_group("vault", "0.4.26", ["reentrancy/call_then_debit"], short=False)
    with pytest.raises(ValueError, match="no short contract"):
        generate_group("staking_rewards", "0.4.26", [], short=True)
    with pytest.raises(ValueError, match="short vault contract carries"):
        generate_group("vault", "0.4.26", ["denial_of_service/loop_push"], short=True)


@pytest.mark.slow
def test_every_short_shape_and_twin_compiles() -> None:
    """Each (short family, era, shape): flawed + twin (legacy too on 0.4); a safe file per family × era."""
    contracts: list[GeneratedContract] = []
    i = 0
    for fam, shapes in SHORT_SHAPES.items():
        for ver in COMPILER_VERSIONS:
            for legacy in (False, True) if ver == "0.4.26" else (False,):
                i += 1
                contracts += generate_group(fam, ver, [], seed=i, short=True, legacy=legacy)
                for shape in shapes:
                    if ver in SHAPES[shape].versions:
                        i += 1
                        contracts += generate_group(fam, ver, [shape], seed=i, short=True, legacy=legacy)
    assert {s for c in contracts for s in c.shapes} == {s for v in SHORT_SHAPES.values() for s in v}
    results = compile_many(
        [CompileJob(c.source_code, c.compiler_version, c.contract_name) for c in contracts],
        n_workers=1,
        cache_dir=False,
    )
    failures = [(c, r) for c, r in zip(contracts, results, strict=True) if not r.ok]
    assert not failures, "\n".join(f"{c.id} {c.shapes}: {r.error}" for c, r in failures[:5])
    by_group: dict[str, set[str]] = {}
    for c, r in zip(contracts, results, strict=True):
        assert r.bytecode.startswith("0x6")
        by_group.setdefault(c.group, set()).add(r.bytecode)
    same = [g for g, codes in by_group.items() if "-none-" not in g and len(codes) != 2]
    assert not same, same  # a flawed contract and its twin never compile to the same bytecode
