"""Every class × shape: the labelled lines hold the shape's characteristic construct; the twin repairs it.

One flawed contract and its twin per (family, era, shape) the generator supports; each shape has a check of
the text on its ``vulnerable_lines`` and of the twin (no labels, the construct repaired).
"""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from training_pipeline import taxonomy
from training_pipeline.corpus.generator import SHAPES, GeneratedContract, coverage, generate_group

CALL = re.compile(r"\.call\b|\.call\.value\(|\.call\{value")
PUSH = re.compile(r"\.transfer\(|\.send\(")
TIME = re.compile(r"\bnow\b|block\.timestamp")
SHORT = re.compile(r"\d+ (seconds|minutes)\b")
ENTROPY = re.compile(r"\bnow\b|block\.(timestamp|difficulty|prevrandao|number|coinbase)|blockhash\(")
WRITE = re.compile(r"(\+=|-=|= 0;|= true;|\.(add|sub)\()")
SAFE_OP = re.compile(r"\.(add|sub|mul)\(")


def strip_comments(src: str) -> str:
    src = re.sub(r"/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group()), src, flags=re.S)
    return re.sub(r"//[^\n]*", "", src)


def functions(src: str) -> dict[str, tuple[int, int]]:
    """Function / modifier / constructor name → (header line, closing line), 1-based."""
    code = strip_comments(src)
    out = {}
    for m in re.finditer(r"\b(function|modifier)\s+(\w+)|\b(constructor|receive|fallback)\s*\(", code):
        name = m.group(2) or m.group(3)
        depth, j = 0, code.index("{", m.end())
        while True:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            if depth == 0:
                break
            j += 1
        out[name] = (code.count("\n", 0, m.start()) + 1, code.count("\n", 0, j) + 1)
    return out


def enclosing(src: str, line: int) -> str:
    hits = [(n, a, b) for n, (a, b) in functions(src).items() if a <= line <= b]
    assert hits, f"line {line} is outside every function"
    return min(hits, key=lambda h: h[2] - h[1])[0]


def body(src: str, name: str) -> list[str]:
    a, b = functions(src)[name]
    return [ln.strip() for ln in strip_comments(src).splitlines()[a - 1 : b]]


def header_line(src: str, name: str) -> str:
    """A function's header (with Allman braces the ``{`` is on the next line)."""
    return strip_comments(src).splitlines()[functions(src)[name][0] - 1].strip()


def modifiers(src: str) -> set[str]:
    return set(re.findall(r"\bmodifier\s+(\w+)", strip_comments(src)))


def in_unchecked(src: str, line: int) -> bool:
    rows = strip_comments(src).splitlines()
    if "unchecked {" in rows[line - 1]:
        return True
    stack: list[bool] = []
    for row in rows[: line - 1]:
        for tok in re.finditer(r"unchecked\s*\{|\{|\}", row):
            if tok.group().startswith("unchecked"):
                stack.append(True)
            elif tok.group() == "{":
                stack.append(False)
            elif stack:
                stack.pop()
    return any(stack)


@pytest.fixture(scope="module")
def pairs() -> dict[str, list[tuple[GeneratedContract, GeneratedContract]]]:
    out: dict[str, list] = defaultdict(list)
    for i, (fam, ver, _, shape) in enumerate(coverage()):
        vul, safe = generate_group(fam, ver, [shape], seed=7000 + i)
        out[shape].append((vul, safe))
    return out


def test_every_class_has_three_shapes_and_every_shape_renders(pairs) -> None:
    per_class = defaultdict(set)
    for sid in SHAPES:
        per_class[SHAPES[sid].cls].add(sid)
    assert set(per_class) == set(taxonomy.VULNERABILITY_CLASSES)
    assert all(len(v) >= 3 for v in per_class.values()), {k: len(v) for k, v in per_class.items()}
    assert set(pairs) == set(SHAPES)
    randomness_families = {
        v.family for sid in pairs if sid.startswith("bad_randomness") for v, _ in pairs[sid]
    }
    assert len(randomness_families) >= 3 and "lottery" in randomness_families


def _texts(c: GeneratedContract) -> list[str]:
    rows = c.source_code.splitlines()
    ((label, lines),) = c.vulnerable_lines.items()
    assert label == SHAPES[c.shapes[0]].cls
    assert lines and all(rows[ln - 1].strip() for ln in lines)
    return [rows[ln - 1].strip() for ln in lines]


def _check_reentrancy(shape: str, vul: GeneratedContract, safe: GeneratedContract) -> None:
    lines = vul.vulnerable_lines["reentrancy"]
    rows = vul.source_code.splitlines()
    hook = re.compile(r"onERC721Received\(") if shape == "token_callback" else CALL
    calls = [ln for ln in lines if hook.search(rows[ln - 1])]
    assert calls, [rows[ln - 1] for ln in lines]
    for call in calls:  # one per function that carries the flaw (an NFT mint and its presale twin)
        assert not PUSH.search(rows[call - 1])  # 2300 gas cannot re-enter
        name = enclosing(vul.source_code, call)
        end = functions(vul.source_code)[name][1]
        writes = [ln for ln in lines if call < ln <= end and WRITE.search(rows[ln - 1])]
        assert writes, [rows[ln - 1] for ln in lines]
        twin = body(safe.source_code, name)
        write_text = rows[writes[0] - 1].strip()
        call_idx = next(i for i, t in enumerate(twin) if hook.search(t))
        assert write_text in twin and twin.index(write_text) < call_idx, twin


def _check_access(shape: str, vul: GeneratedContract, safe: GeneratedContract) -> None:
    texts = _texts(vul)
    line = vul.vulnerable_lines["access_control"][0]
    if shape == "tx_origin":
        assert "tx.origin" in texts[0] and "tx.origin" not in safe.source_code
        return
    m = re.search(r"function\s+(\w+)", texts[0])
    assert m, texts
    name = m.group(1)
    if shape == "misnamed_constructor":
        assert name != vul.contract_name and name.lower() == vul.contract_name.lower()
        assert re.search(rf"function\s+{vul.contract_name}\s*\(", safe.source_code)
        return
    mods = modifiers(vul.source_code)
    assert not {t for t in re.findall(r"\w+", texts[0]) if t in mods}, texts[0]
    assert enclosing(vul.source_code, line) == name
    if shape in ("missing_modifier", "unprotected_selfdestruct"):
        twin_header = header_line(safe.source_code, name)
        assert {t for t in re.findall(r"\w+", twin_header) if t in mods}, twin_header
        if shape == "unprotected_selfdestruct":
            assert any(re.search(r"\b(selfdestruct|suicide)\(", t) for t in texts)
    else:  # unprotected_initializer: the twin checks the flag it sets
        flag = re.search(r"(\w+) = true;", "\n".join(body(vul.source_code, name))).group(1)
        assert [t for t in body(safe.source_code, name) if flag in t and ("require" in t or "if (" in t)]
        assert not [t for t in body(vul.source_code, name) if flag in t and "require" in t]


def _check_arithmetic(shape: str, vul: GeneratedContract, safe: GeneratedContract) -> None:
    op = {"underflow_sub": "-", "overflow_mul": "*", "overflow_add": "+"}[shape]
    for line in vul.vulnerable_lines["arithmetic"]:
        text = vul.source_code.splitlines()[line - 1]
        if text.strip().startswith(("require", "if (")):
            continue  # the guard that computes the same wrapping expression
        assert f" {op}" in text and not SAFE_OP.search(text), text
        if vul.compiler_version.startswith("0.8"):
            assert in_unchecked(vul.source_code, line), text
        else:
            assert "library SafeMath" in vul.source_code
    name = enclosing(vul.source_code, vul.vulnerable_lines["arithmetic"][0])
    twin = body(safe.source_code, name)
    guarded = any(SAFE_OP.search(t) for t in twin) or any(
        re.search(r"(require|if) ?\(.*(>=|<=|<|>)", t) for t in twin
    )
    assert guarded or (vul.compiler_version.startswith("0.8") and not any("unchecked" in t for t in twin)), (
        twin
    )


def _check_calls(shape: str, vul: GeneratedContract, safe: GeneratedContract) -> None:
    (text,) = _texts(vul)
    send, delegate = re.compile(r"\.send\("), re.compile(r"\.delegatecall\(")
    pattern = {
        "ignored_call": CALL,
        "ignored_send": send,
        "ignored_delegatecall": delegate,
        "forward_call": CALL,
        "signature_call": CALL,
        "payout_send": send,
        "delegate_forward": delegate,
    }[shape]
    assert pattern.search(text) and not text.startswith(("require", "if", "assert")), text
    line = vul.vulnerable_lines["unchecked_low_level_calls"][0]
    name = enclosing(vul.source_code, line)
    rows = body(vul.source_code, name)
    bound = re.match(r"\(bool (\w+), \)", text)
    if bound:  # assigned but never read
        after = rows[rows.index(text) + 1 :]
        assert not any(re.search(rf"\b{bound.group(1)}\b", r) for r in after)
    twin = body(safe.source_code, name)
    i = next(i for i, t in enumerate(twin) if pattern.search(t))
    bound = re.match(r"\(bool (\w+), \)", twin[i])
    if bound:
        assert re.search(rf"(require\(|if \(!){bound.group(1)}\b", twin[i + 1]), twin
    else:
        assert twin[i].startswith(("require(", "if (!")), twin


def _check_randomness(shape: str, vul: GeneratedContract, safe: GeneratedContract) -> None:
    texts = _texts(vul)
    if shape == "blockhash":
        assert any("blockhash(" in t for t in texts), texts
    elif shape == "private_seed":
        private = re.findall(r"uint256 private (\w+);", vul.source_code)
        assert private and any(p in t for t in texts for p in private), texts
    else:
        assert any(ENTROPY.search(t) for t in texts), texts
    name = enclosing(vul.source_code, vul.vulnerable_lines["bad_randomness"][0])
    code = strip_comments(safe.source_code)
    assert "uint256 private" not in code and "blockhash" not in code
    if name in functions(safe.source_code):
        assert not any(ENTROPY.search(t) and "%" in t for t in body(safe.source_code, name))


def _check_time(shape: str, vul: GeneratedContract, safe: GeneratedContract) -> None:
    texts = _texts(vul)
    assert all(TIME.search(t) for t in texts), texts
    twin_code = strip_comments(safe.source_code)
    if shape == "short_window":
        assert all(SHORT.search(t) for t in texts) and not SHORT.search(twin_code)
    elif shape == "timestamp_modulo":
        assert all("%" in t for t in texts) and not re.search(r"(\bnow\b|block\.timestamp) %", twin_code)
    else:  # per_second_rate: the twin counts whole days or hours
        assert not re.search(r"/ 1 (days|hours)", texts[0])
        name = enclosing(vul.source_code, vul.vulnerable_lines["time_manipulation"][0])
        assert any(TIME.search(t) and re.search(r"/ 1 (days|hours)", t) for t in body(safe.source_code, name))


def _check_dos(shape: str, vul: GeneratedContract, safe: GeneratedContract) -> None:
    texts = _texts(vul)
    name = enclosing(vul.source_code, vul.vulnerable_lines["denial_of_service"][-1])
    if shape == "unbounded_loop":
        assert len(texts) == 1 and texts[0].startswith("for (") and ".length" in texts[0]
        arr = re.search(r"< (\w+)\.length", texts[0]).group(1)
        cap = re.compile(rf"{arr}\.length (<|>=) ")  # require(list.length < CAP) or its custom-error form
        assert not cap.search(strip_comments(vul.source_code)) and cap.search(
            strip_comments(safe.source_code)
        )
        return
    assert any(PUSH.search(t) for t in texts), texts
    if shape == "loop_push":
        assert any(t.startswith("for (") for t in texts)
    assert not any(PUSH.search(t) for t in body(safe.source_code, name))


def _check_front_running(shape: str, vul: GeneratedContract, safe: GeneratedContract) -> None:
    (text,) = _texts(vul)
    name = enclosing(vul.source_code, vul.vulnerable_lines["front_running"][0])
    if shape == "approve_race":
        assert name == "approve" and re.search(r"\]\[\w+\] = \w+;", text)
        assert any("== 0 ||" in t for t in body(safe.source_code, "approve"))
    elif shape == "public_answer":
        assert re.search(r"(keccak256|sha3)\(", text) and re.search("[!=]=", text)
        assert len(functions(safe.source_code)) == len(functions(vul.source_code)) + 1  # the commit step
    else:  # price_change: the twin's buyer states the least it accepts
        assert "msg.value" in text or re.search(r"\w+\(msg\.value", text), text

        def n_params(src: str) -> int:
            inside = header_line(src, name).split("(", 1)[1].split(")", 1)[0].strip()
            return len(inside.split(",")) if inside else 0

        assert n_params(safe.source_code) == n_params(vul.source_code) + 1


def _check_other(shape: str, vul: GeneratedContract, safe: GeneratedContract) -> None:
    texts = _texts(vul)
    code, twin = strip_comments(vul.source_code), strip_comments(safe.source_code)
    if shape == "locked_ether":
        assert all(re.match(r"function \w+\(.*\).* payable\b", t) for t in texts), texts
        # ether out: a one-argument transfer/send (token transfers take two), a call, a selfdestruct
        out = re.compile(
            r"\.(transfer|send)\((?:[^,()]|\([^()]*\))*\)|\.call\b|\.call\.value|\.call\{|selfdestruct\(|suicide\("
        )
        assert not out.search(code) and out.search(twin)
    elif shape == "uninitialized_storage":
        (text,) = texts
        m = re.fullmatch(r"(\w+) (\w+);", text)
        assert m and re.search(rf"\bstruct {m.group(1)}\b", code), text
        assert f"{m.group(1)} memory {m.group(2)};" in twin
    elif shape == "shadowed_state":
        (text,) = texts
        var = re.search(r"(\w+);$", text).group(1)
        decl = re.compile(rf"^\s*address( payable)? public {var};$", re.M)
        assert len(decl.findall(code)) == len(decl.findall(twin)) + 1 >= 2
        assert len(re.findall(r"^contract ", code, re.M)) >= 2
    else:  # erc20_no_return
        (text,) = texts
        assert text.startswith("function transfer(") and "returns" not in text
        assert "returns (bool)" in header_line(safe.source_code, "transfer")


CHECKS = {
    "reentrancy": _check_reentrancy,
    "access_control": _check_access,
    "arithmetic": _check_arithmetic,
    "unchecked_low_level_calls": _check_calls,
    "bad_randomness": _check_randomness,
    "time_manipulation": _check_time,
    "denial_of_service": _check_dos,
    "front_running": _check_front_running,
    "other": _check_other,
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_labelled_lines_hold_the_flaw_and_the_twin_repairs_it(pairs, shape: str) -> None:
    cls, name = shape.split("/")
    for vul, safe in pairs[shape]:
        assert vul.shapes == (shape,) and vul.labels == (cls,)
        assert safe.labels == () and safe.vulnerable_lines == {} and safe.group == vul.group
        assert vul.source_code != safe.source_code
        try:
            CHECKS[cls](name, vul, safe)
        except AssertionError as exc:
            raise AssertionError(f"{vul.id} ({vul.family}, {vul.compiler_version}): {exc}") from exc
