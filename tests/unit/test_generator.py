"""The contract generator: determinism, counts, labels and their lines, twins, per-class shapes, no leaks."""

from __future__ import annotations

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

CALL = re.compile(r"\.call\b|\.call\.value\(|\.call\{value|\.transfer\(|\.send\(")
ARITH = re.compile(r"\s(-=|\+=|\*=|-|\+|\*)\s")
TIME = re.compile(r"\bnow\b|block\.timestamp")
ENTROPY = re.compile(
    r"\bnow\b|block\.(timestamp|difficulty|prevrandao|number|coinbase|blockhash)|\bblockhash\("
)
SOLIDITY_ALLOWED = {"unchecked", "SafeMath"}  # a keyword and the (twin-invariant) library name


# --- a little Solidity scanning -----------------------------------------------------------------------------
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


def functions(src: str) -> dict[str, tuple[int, int]]:
    """Function/constructor/modifier name → (header line, closing-brace line), 1-based."""
    code, _, _ = split_source(src)
    out = {}
    for m in re.finditer(r"\b(function|modifier)\s+(\w+)|\b(constructor|receive)\s*\(", code):
        name = m.group(2) or m.group(3)
        depth, j = 0, code.index("{", m.end())
        while True:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            if depth == 0:
                break
            j += 1
        out[name] = (code.count("\n", 0, m.start()) + 1, code.count("\n", 0, j) + 1)
    return out


def enclosing(src: str, line: int) -> tuple[str, int, int]:
    hits = [(name, a, b) for name, (a, b) in functions(src).items() if a <= line <= b]
    assert hits, f"line {line} is outside every function"
    return min(hits, key=lambda h: h[2] - h[1])


def lines_of(src: str) -> list[str]:
    return src.splitlines()


def fn_lines(src: str, name: str) -> list[str]:
    a, b = functions(src)[name]
    return [ln.strip() for ln in lines_of(src)[a - 1 : b]]


def in_unchecked(src: str, line: int) -> bool:
    """True when 1-based ``line`` lies inside an ``unchecked { }`` block (or opens one inline)."""
    code, _, _ = split_source(src)
    rows = code.splitlines()
    if "unchecked {" in rows[line - 1]:
        return True
    depth_stack: list[bool] = []
    for row in rows[: line - 1]:
        for tok in re.finditer(r"unchecked\s*\{|\{|\}", row):
            if tok.group().startswith("unchecked"):
                depth_stack.append(True)
            elif tok.group() == "{":
                depth_stack.append(False)
            elif depth_stack:
                depth_stack.pop()
    return any(depth_stack)


def n_params(header: str) -> int:
    inside = header.split("(", 1)[1].split(")", 1)[0].strip()
    return len(inside.split(",")) if inside else 0


def modifiers_declared(src: str) -> set[str]:
    return set(re.findall(r"\bmodifier\s+(\w+)", split_source(src)[0]))


# --- fixtures -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus() -> list[GeneratedContract]:
    return generate_corpus(600, seed=11)


@pytest.fixture(scope="module")
def twins() -> list[tuple[GeneratedContract, GeneratedContract]]:
    """One (flawed, safe twin) pair per coverage tuple, plus a second seed for variety."""
    out = []
    for seed in (0, 1):
        for i, (fam, ver, _, shape) in enumerate(coverage()):
            vul, safe = generate_group(fam, ver, [shape], seed=seed * 1000 + i)
            out.append((vul, safe))
    return out


def with_shape(pairs, shape_prefix: str):
    found = [(v, s) for v, s in pairs if v.shapes[0].startswith(shape_prefix)]
    assert found, shape_prefix
    return found


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
        generate_corpus(5, compiler_versions=["0.7.6"])
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
    assert len(shapes_per_class) >= 8 and all(len(s) >= 2 for s in shapes_per_class.values())
    assert {f for f, *_ in cov} == set(taxonomy.FAMILIES)
    assert {v for _, v, *_ in cov} == {"0.4.26", "0.5.17", "0.8.26"}
    assert len(cov) == len(set(cov))
    for vul, safe in twins:
        assert len(vul.labels) == 1 and vul.shapes == (vul.shapes[0],) and safe.labels == ()


def test_spread_over_classes_and_shapes() -> None:
    cs = generate_corpus(1500, seed=9)
    per_class = Counter(label for c in cs for label in c.labels)
    assert set(per_class) == {cls for _, _, cls, _ in coverage()}
    assert max(per_class.values()) - min(per_class.values()) <= 3
    assert {s for c in cs for s in c.shapes} == set(SHAPES)
    assert len({c.family for c in cs if c.labels}) == 5
    assert min(Counter(c.compiler_version for c in cs).values()) > 0.25 * len(cs)


def test_realistic_sizes(corpus: list[GeneratedContract]) -> None:
    sizes = [len(lines_of(c.source_code)) for c in corpus]
    assert min(sizes) >= 50 and max(sizes) <= 280
    assert 90 <= statistics.mean(sizes) <= 190


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
                assert 0 < len(diff) <= 14, diff
            elif "access_control/misnamed_constructor" in c.shapes:  # the same name in another case
                assert {i.lower() for i in members(c.source_code)} == {
                    i.lower() for i in members(twin.source_code)
                }
            else:
                assert members(c.source_code) == members(twin.source_code)
                assert len(diff) <= len(c.shapes), diff  # at most a local of each repair (`bool ok`)


# --- per-class code shapes ----------------------------------------------------------------------------------
def test_reentrancy_call_precedes_the_write_and_the_twin_reverses_it(twins) -> None:
    for vul, safe in with_shape(twins, "reentrancy/"):
        rows = lines_of(vul.source_code)
        lines = vul.vulnerable_lines["reentrancy"]
        calls = [ln for ln in lines if CALL.search(rows[ln - 1])]
        assert len(calls) == 1, (vul.id, [rows[ln - 1] for ln in lines])
        call = calls[0]
        assert (
            ".transfer(" not in rows[call - 1] and ".send(" not in rows[call - 1]
        )  # 2300 gas cannot re-enter
        name, _, end = enclosing(vul.source_code, call)
        writes = [ln for ln in lines if ln > call and re.search(r"[^=!<>]=[^=]", rows[ln - 1])]
        assert writes and all(w <= end for w in writes), vul.id
        write_text = rows[writes[0] - 1].strip()
        body = fn_lines(safe.source_code, name)
        call_idx = next(i for i, t in enumerate(body) if CALL.search(t))
        assert write_text in body and body.index(write_text) < call_idx, (safe.id, body)


def test_access_control_flawed_function_lacks_the_check_the_twin_has(twins) -> None:
    for vul, safe in with_shape(twins, "access_control/"):
        shape = vul.shapes[0].split("/")[1]
        rows, trows = lines_of(vul.source_code), lines_of(safe.source_code)
        line = vul.vulnerable_lines["access_control"][0]
        if shape == "tx_origin":
            assert "tx.origin" in rows[line - 1]
            assert "tx.origin" not in safe.source_code
            name = enclosing(vul.source_code, line)[0]
            assert any("msg.sender" in t for t in fn_lines(safe.source_code, name))
            continue
        header = rows[line - 1]
        m = re.search(r"function\s+(\w+)", header)
        assert m, header
        name = m.group(1)
        if shape == "misnamed_constructor":
            assert name != vul.contract_name and name.lower() == vul.contract_name.lower()
            assert re.search(rf"function\s+{vul.contract_name}\s*\(", safe.source_code)
            continue
        twin_header = trows[functions(safe.source_code)[name][0] - 1]
        mods = modifiers_declared(vul.source_code)
        vul_mods = {t for t in re.findall(r"\w+", header) if t in mods}
        if shape in ("missing_modifier", "unprotected_selfdestruct"):
            assert not vul_mods, header
            assert {t for t in re.findall(r"\w+", twin_header) if t in mods}, twin_header
            if shape == "unprotected_selfdestruct":
                assert any(
                    re.search(r"\b(selfdestruct|suicide)\(", rows[ln - 1])
                    for ln in vul.vulnerable_lines["access_control"]
                )
        else:  # unprotected_initializer: the twin checks the flag it sets, the flawed one only sets it
            flag = re.search(r"(\w+) = true;", "\n".join(fn_lines(vul.source_code, name))).group(1)
            guard = [
                t for t in fn_lines(safe.source_code, name) if flag in t and ("require" in t or "if (" in t)
            ]
            assert guard and not [t for t in fn_lines(vul.source_code, name) if flag in t and "require" in t]


def test_arithmetic_line_wraps_and_the_twin_checks(twins) -> None:
    for vul, safe in with_shape(twins, "arithmetic/"):
        rows = lines_of(vul.source_code)
        for line in vul.vulnerable_lines["arithmetic"]:
            text = rows[line - 1]
            assert ARITH.search(text) and not re.search(r"\.(add|sub|mul)\(", text), text
            if vul.compiler_version.startswith("0.8"):
                assert in_unchecked(vul.source_code, line), (vul.id, text)
            else:
                assert "library SafeMath" in vul.source_code
        name = enclosing(vul.source_code, vul.vulnerable_lines["arithmetic"][0])[0]
        body = fn_lines(safe.source_code, name)
        guarded = any(re.search(r"\.(add|sub|mul)\(", t) for t in body) or any(
            re.search(r"(require|if) ?\(.*(>=|<=|<|>)", t) and not ARITH.search(t.split("(", 1)[1])
            for t in body
        )
        if vul.compiler_version.startswith("0.8"):
            unchecked_ops = [i for i, t in enumerate(body) if "unchecked" in t]
            assert not unchecked_ops or guarded, body
        else:
            assert guarded, body


def test_unchecked_call_result_dropped_and_twin_checks(twins) -> None:
    for vul, safe in with_shape(twins, "unchecked_low_level_calls/"):
        rows = lines_of(vul.source_code)
        (line,) = vul.vulnerable_lines["unchecked_low_level_calls"]
        text = rows[line - 1].strip()
        assert re.search(r"\.call\b|\.call\.value|\.call\{|\.send\(", text) and not text.startswith(
            ("require", "if")
        )
        name, _, end = enclosing(vul.source_code, line)
        rest = [r.strip() for r in rows[line:end]]
        bound = re.match(r"\(bool (\w+), \)", text)
        if bound:  # assigned but never read
            assert not any(re.search(rf"\b{bound.group(1)}\b", r) for r in rest)
        body = fn_lines(safe.source_code, name)
        i = next(i for i, t in enumerate(body) if re.search(r"\.call\b|\.call\.value|\.call\{|\.send\(", t))
        bound = re.match(r"\(bool (\w+), \)", body[i])
        if bound:  # the result is tested on the next line
            assert re.search(rf"(require\(|if \(!){bound.group(1)}\b", body[i + 1]), body
        else:
            assert body[i].startswith(("require(", "if (!")), body


def test_randomness_and_time_lines(twins) -> None:
    for vul, safe in with_shape(twins, "bad_randomness/"):
        rows = lines_of(vul.source_code)
        texts = [rows[ln - 1] for ln in vul.vulnerable_lines["bad_randomness"]]
        private = re.findall(r"uint256 private (\w+);", vul.source_code)
        assert any(ENTROPY.search(t) or any(p in t for p in private) for t in texts), texts
        name = enclosing(vul.source_code, vul.vulnerable_lines["bad_randomness"][0])[0]
        draw = " ".join(fn_lines(safe.source_code, name))
        assert not ENTROPY.search(draw) and "private" not in safe.source_code, draw
    for vul, safe in with_shape(twins, "time_manipulation/"):
        rows = lines_of(vul.source_code)
        for ln in vul.vulnerable_lines["time_manipulation"]:
            text = rows[ln - 1]
            assert TIME.search(text), text
            if "short_window" in vul.shapes[0]:
                assert re.search(r"\d+ (seconds|minutes)\b", text)
                assert not re.search(r"\d+ (seconds|minutes)\b", safe.source_code)
            else:
                assert "%" in text
        code = split_source(safe.source_code)[0]
        assert not re.search(r"(\bnow\b|block\.timestamp) %", code)


def test_denial_of_service_and_front_running_lines(twins) -> None:
    for vul, safe in with_shape(twins, "denial_of_service/"):
        rows = lines_of(vul.source_code)
        texts = [rows[ln - 1] for ln in vul.vulnerable_lines["denial_of_service"]]
        assert any(re.search(r"\.transfer\(|\.send\(", t) for t in texts), texts
        if "loop_push" in vul.shapes[0]:
            assert any(t.strip().startswith("for (") for t in texts)
        name = enclosing(vul.source_code, vul.vulnerable_lines["denial_of_service"][-1])[0]
        assert not any(re.search(r"\.transfer\(|\.send\(", t) for t in fn_lines(safe.source_code, name))
    for vul, safe in with_shape(twins, "front_running/"):
        rows = lines_of(vul.source_code)
        (ln,) = vul.vulnerable_lines["front_running"]
        text, shape = rows[ln - 1], vul.shapes[0]
        name = enclosing(vul.source_code, ln)[0]
        if shape.endswith("approve_race"):
            assert name == "approve" and re.search(r"\]\[\w+\] = \w+;", text)
            assert any("== 0 ||" in t for t in fn_lines(safe.source_code, "approve"))
        elif shape.endswith("public_answer"):
            assert re.search(r"(keccak256|sha3)\(", text) and re.search("[!=]=", text)
            assert len(functions(safe.source_code)) == len(functions(vul.source_code)) + 1  # the commit step
        else:  # price_change: the twin's buyer states the least it accepts
            assert " / " in text and "msg.value" in text
            assert (
                n_params(fn_lines(safe.source_code, name)[0])
                == n_params(fn_lines(vul.source_code, name)[0]) + 1
            )


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
