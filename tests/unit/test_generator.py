"""The contract generator: determinism, counts, labels and their lines, twins, per-class shapes, no leaks."""

from __future__ import annotations

import functools
import re
import statistics
from collections import Counter, defaultdict

import pytest

from training_pipeline import taxonomy
from training_pipeline.corpus.generator import (
    COMPILER_VERSIONS,
    SHAPES,
    GeneratedContract,
    coverage,
    generate_corpus,
    generate_group,
    generate_one,
)
from training_pipeline.corpus.templates.names import LEAK_WORDS

SOLIDITY_ALLOWED = {"unchecked", "SafeMath"}  # a keyword and the (twin-invariant) library name


# --- a little Solidity scanning -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def split_source(src: str) -> tuple[str, list[str], list[str]]:
    """(code with comments and string literals blanked, newlines kept; comments; string literals)."""
    code, comments, strings = [], [], []
    i, n = 0, len(src)
    while i < n:
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            comments.append(src[i:j])
            code.append(" " * (j - i))
            i = j
        elif src.startswith("/*", i):
            j = src.index("*/", i) + 2
            comments.append(src[i:j])
            code.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif src[i] == '"':
            j = src.index('"', i + 1) + 1
            strings.append(src[i + 1 : j - 1])
            code.append('""' + " " * (j - i - 2))
            i = j
        else:
            code.append(src[i])
            i += 1
    return "".join(code), comments, strings


# Keywords, units and globals: the same language in both twins, not names a template chose.
BUILTINS = set(
    "wei gwei szabo finney ether seconds minutes hours days weeks tx msg block abi now this require revert "
    "assert throw keccak256 sha3 blockhash selfdestruct suicide payable address bool string bytes bytes32 "
    "uint uint256 "
    "uint8 true false if else for return returns emit unchecked public external internal private view pure "
    "constant payable memory storage function modifier event error constructor receive".split()
)


def words(src: str) -> set[str]:
    """Every word token of the code, comments and string literals removed."""
    return set(re.findall(r"[A-Za-z_$][\w$]*", split_source(src)[0]))


def identifiers(src: str) -> set[str]:
    """Names the template chose: word tokens that are not member accesses (``.transfer``) or builtins."""
    return set(re.findall(r"(?<![.\w$])[A-Za-z_$][\w$]*", split_source(src)[0])) - BUILTINS


def members(src: str) -> set[str]:
    """Declared names: contracts, functions, modifiers, events, errors, structs and state variables."""
    code, _, _ = split_source(src)
    out = set(re.findall(r"\b(?:contract|library|function|modifier|event|error|struct)\s+(\w+)", code))
    depth = 0
    for row in code.splitlines():
        stripped = row.strip()
        if (
            depth == 1
            and stripped.endswith(";")
            and not stripped.startswith(("using", "event", "error", "function"))
        ):
            out.add(re.findall(r"(\w+)\s*(?:=|;)", stripped)[0])
        depth += row.count("{") - row.count("}")
    return out


def lines_of(src: str) -> list[str]:
    return src.splitlines()


# --- fixtures -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus() -> list[GeneratedContract]:
    return generate_corpus(600, seed=11)


@pytest.fixture(scope="module")
def twins() -> list[tuple[GeneratedContract, GeneratedContract]]:
    """One (flawed, safe twin) pair per coverage tuple (tests/unit/test_shapes.py checks their lines)."""
    out = []
    for i, (fam, ver, _, shape) in enumerate(coverage()):
        vul, safe = generate_group(fam, ver, [shape], seed=1000 + i)
        out.append((vul, safe))
    return out


# --- API, determinism, counts -------------------------------------------------------------------------------
def test_same_seed_same_corpus_and_other_seed_differs() -> None:
    a, b, c = generate_corpus(40, seed=5), generate_corpus(40, seed=5), generate_corpus(40, seed=6)
    assert a == b
    assert [x.source_code for x in a] != [x.source_code for x in c]
    assert sum(x.source_code == y.source_code for x, y in zip(a, c, strict=True)) < 5


@pytest.mark.parametrize("n", [1, 2, 3, 5, 17, 100])
def test_exact_count_and_stable_ids(n: int) -> None:
    cs = generate_corpus(n, seed=3)
    assert len(cs) == n
    assert [c.id for c in cs] == [f"gen-3-{i}" for i in range(n)]
    assert len({c.source_code for c in cs}) == n


def test_record_fields_and_labels(corpus: list[GeneratedContract]) -> None:
    for c in corpus:
        assert c.family in taxonomy.FAMILIES and c.compiler_version in COMPILER_VERSIONS
        assert list(c.labels) == sorted(set(c.labels))
        assert set(c.labels) <= set(taxonomy.VULNERABILITY_CLASSES)
        assert sorted({SHAPES[s].cls for s in c.shapes}) == list(c.labels)
        assert set(c.vulnerable_lines) == set(c.labels)
        rows = lines_of(c.source_code)
        for label, lines in c.vulnerable_lines.items():
            assert lines and lines == sorted(set(lines)), (c.id, label)
            assert all(1 <= ln <= len(rows) and rows[ln - 1].strip() for ln in lines), (c.id, label, lines)
        assert re.search(rf"^contract {c.contract_name}\b", c.source_code, re.M)
        assert c.source_code.rstrip().endswith("}")
        assert "pragma solidity" in c.source_code


def test_fractions_follow_the_arguments(corpus: list[GeneratedContract]) -> None:
    safe = sum(not c.labels for c in corpus) / len(corpus)
    multi = sum(len(c.labels) > 1 for c in corpus) / len(corpus)
    assert abs(safe - 0.4) < 0.03 and abs(multi - 0.15) < 0.03
    for sf, mf in ((0.0, 0.0), (1.0, 0.0), (0.1, 0.5), (0.6, 0.05)):
        cs = generate_corpus(151, seed=2, safe_fraction=sf, multi_label_fraction=mf)
        assert len(cs) == 151
        assert abs(sum(not c.labels for c in cs) / 151 - sf) < 0.03
        assert abs(sum(len(c.labels) > 1 for c in cs) / 151 - mf) < 0.03


def test_filters_and_validation() -> None:
    cs = generate_corpus(30, seed=1, families=["vault", "auction"], compiler_versions=["0.8.26"])
    assert {c.family for c in cs} <= {"vault", "auction"} and {c.compiler_version for c in cs} == {"0.8.26"}
    with pytest.raises(ValueError, match="unknown family"):
        generate_corpus(5, families=["dex"])
    with pytest.raises(ValueError, match="compiler version"):
        generate_corpus(5, compiler_versions=["0.9.0"])
    with pytest.raises(ValueError, match="unknown shape"):
        generate_one("vault", "0.8.26", [("reentrancy", "nope")])
    with pytest.raises(ValueError, match="does not fit"):
        generate_one("vault", "0.8.26", ["bad_randomness/blockhash"])
    with pytest.raises(ValueError, match="does not fit"):
        generate_one("vault", "0.8.26", ["access_control/misnamed_constructor"])
    with pytest.raises(ValueError, match="cannot share"):
        generate_one("vault", "0.4.26", ["reentrancy/withdraw_all", "unchecked_low_level_calls/ignored_send"])


def test_generate_one_matches_its_group() -> None:
    vul = generate_one("auction", "0.5.17", [("denial_of_service", "refund_push")], seed=4)
    safe = generate_one("auction", "0.5.17", [("denial_of_service", "refund_push")], seed=4, safe_twin=True)
    assert vul.labels == ("denial_of_service",) and vul.shapes == ("denial_of_service/refund_push",)
    assert safe.labels == () and safe.vulnerable_lines == {} and safe.group == vul.group
    two = generate_one("lottery", "0.8.26", ["reentrancy/withdraw_all", "bad_randomness/blockhash"], seed=1)
    assert two.labels == ("bad_randomness", "reentrancy")


def test_coverage_is_broad_and_every_tuple_renders(twins) -> None:
    cov = coverage()
    shapes_per_class = defaultdict(set)
    for _, _, cls, shape in cov:
        shapes_per_class[cls].add(shape)
    assert set(shapes_per_class) == set(taxonomy.VULNERABILITY_CLASSES)
    assert all(len(s) >= 3 for s in shapes_per_class.values())
    assert {f for f, *_ in cov} == set(taxonomy.FAMILIES) and len(taxonomy.FAMILIES) >= 10
    assert {v for _, v, *_ in cov} == {"0.4.26", "0.5.17", "0.6.12", "0.7.6", "0.8.26"}
    assert len(cov) == len(set(cov))
    for vul, safe in twins:
        assert len(vul.labels) == 1 and vul.shapes == (vul.shapes[0],) and safe.labels == ()


def test_spread_over_classes_and_shapes() -> None:
    cs = generate_corpus(1500, seed=9)
    per_class = Counter(label for c in cs for label in c.labels)
    assert set(per_class) == {cls for _, _, cls, _ in coverage()}
    assert max(per_class.values()) - min(per_class.values()) <= 3
    assert {s for c in cs for s in c.shapes} == {s for s in SHAPES if not SHAPES[s].short_only}
    assert {c.family for c in cs if c.labels} == set(taxonomy.FAMILIES)
    assert min(Counter(c.compiler_version for c in cs).values()) > 0.15 * len(cs)
    randomness = {c.family for c in cs if "bad_randomness" in c.labels}
    assert len(randomness) >= 3  # leave-families-out can hold out the lottery and still see the class


def test_realistic_sizes(corpus: list[GeneratedContract]) -> None:
    sizes = [len(lines_of(c.source_code)) for c in corpus]
    assert min(sizes) >= 90 and max(sizes) <= 700
    assert 200 <= statistics.mean(sizes) <= 400
    assert statistics.pstdev(sizes) > 40  # spread out, not one size


# --- groups and twins ---------------------------------------------------------------------------------------
def test_groups_hold_a_safe_twin_with_the_same_identifiers(corpus: list[GeneratedContract]) -> None:
    groups = defaultdict(list)
    for c in corpus:
        groups[c.group].append(c)
    for group in groups.values():
        assert len({(c.family, c.compiler_version, c.contract_name) for c in group}) == 1
        safe = [c for c in group if not c.labels]
        assert len(safe) == 1, [c.id for c in group]
        twin = safe[0]
        for c in group:
            if c is twin:
                continue
            assert c.labels and c.source_code != twin.source_code
            diff = identifiers(c.source_code) ^ identifiers(twin.source_code)
            if any(SHAPES[s].adds_identifiers for s in c.shapes):  # commit-reveal state, a min-out parameter
                assert len(diff) <= 16, diff
            elif "access_control/misnamed_constructor" in c.shapes:  # the same name in another case
                assert {i.lower() for i in members(c.source_code)} == {
                    i.lower() for i in members(twin.source_code)
                }
            else:
                assert members(c.source_code) == members(twin.source_code)
                assert len(diff) <= len(c.shapes), diff  # at most a local of each repair (`bool ok`)


# --- eras and texture ---------------------------------------------------------------------------------------
def test_each_era_writes_its_own_idioms(corpus: list[GeneratedContract]) -> None:
    by_era = defaultdict(list)
    for c in corpus:
        by_era[c.compiler_version].append(split_source(c.source_code)[0])
    assert set(by_era) == set(COMPILER_VERSIONS)
    joined = {v: "\n".join(codes) for v, codes in by_era.items()}
    old, v5, v6, v7, v8 = (joined[v] for v in COMPILER_VERSIONS)
    assert "throw;" in old and re.search(r"\bnow\b", old) and ".call.value(" in old
    assert "address payable" not in old and "emit " in old
    for v in (v5, v6, v7, v8):
        assert "address payable" in v and "throw;" not in v and "suicide(" not in v
    assert ".call.value(" in v5 and "call{value:" not in v5
    assert ".call.value(" in v6 and "call{value:" in v6 and "receive() external payable" in v6
    for v in (v7, v8):
        assert not re.search(r"\bnow\b", v) and ".call.value(" not in v and "finney" not in v
    for v in (old, v5, v6, v7):
        assert "using SafeMath" in v and "unchecked {" not in v
    assert "unchecked {" in v8 and "using SafeMath" not in v8 and re.search(r"revert \w+\(\);", v8)
    assert re.search(r"^\s*function (\w+)\(.*\) public\s*\{?$", old, re.M)  # 0.4: constructor or not


def test_texture_inheritance_interfaces_libraries_natspec(corpus: list[GeneratedContract]) -> None:
    src = [c.source_code for c in corpus]
    share = lambda pat: sum(bool(re.search(pat, s, re.M)) for s in src) / len(src)  # noqa: E731
    assert share(r"^contract \w+ is \w+") > 0.1  # inheritance
    assert share(r"^interface \w+") > 0.3
    assert share(r"^library (Math|Address|Strings)") > 0.3
    assert share(r"@param \w+ ") > 0.5 and share(r"^\s*// ") > 0.5
    assert share(r"^\s*modifier \w+") > 0.9 and share(r"^\s*event \w+") > 0.9
    assert {re.search(r"^( +)function ", s, re.M).group(1) for s in src} >= {"  ", "    "}  # indent styles


def test_hard_negatives_appear_in_safe_contracts(corpus: list[GeneratedContract]) -> None:
    safe = [split_source(c.source_code)[0] for c in corpus if not c.labels]
    joined = "\n".join(safe)
    assert re.search(r"unchecked \{ \+\+\w+; \}", joined)  # a loop counter that cannot overflow
    assert re.search(r"emit \w+\(\w+, (block\.timestamp|now)\);", joined)  # the timestamp is only logged
    assert re.search(r"\b(selfdestruct|suicide)\(", joined)  # owner-only selfdestruct
    assert re.search(r"\)\.transfer\(\w+, \w+\)", joined)  # an owner's external call after the updates
    assert re.search(r"(msg\.sender|\w+)\.call(\.value\(|\{value)", joined)  # a call after the state write


# --- leakage ------------------------------------------------------------------------------------------------
def test_no_identifier_comment_or_string_hints_at_the_label(corpus, twins) -> None:
    samples = list(corpus) + [c for pair in twins for c in pair]
    for c in samples:
        code, comments, strings = split_source(c.source_code)
        for ident in words(c.source_code) - SOLIDITY_ALLOWED:
            low = ident.lower()
            assert not any(w in low for w in LEAK_WORDS), (c.id, ident)
        for text in comments + strings:
            low = text.replace("SafeMath", "").lower()
            assert not any(w in low for w in LEAK_WORDS), (c.id, text)
            assert not re.search(r"\bcei\b", low), (c.id, text)
        assert "unchecked_" not in code
