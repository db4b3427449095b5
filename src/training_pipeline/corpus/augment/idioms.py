"""The ``idioms`` transform: era-appropriate equivalent spellings (types, globals, compound assignments)."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from training_pipeline.corpus.augment.scope import KEYWORDS, is_type_word, prev_code
from training_pipeline.utils.solidity import Tok


def _version(v: str | None) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", v or "")[:3])


def idioms(toks: list[Tok], rng: random.Random, version: str | None, declared: set[str]) -> list[Tok]:
    """Era-appropriate equivalent spellings; never touches names the file declares itself."""
    ver = _version(version)
    swaps = [("uint", "uint256"), ("int", "int256")]
    if ver and ver < (0, 5):
        swaps += [("sha3", "keccak256"), ("suicide", "selfdestruct")]
    for short, long in swaps:
        if short in declared or long in declared:
            continue
        mode = rng.choice(("short", "long", "mixed"))
        for i, t in enumerate(toks):
            if t.kind == "ident" and t.text in (short, long):
                prev = prev_code(toks, i)
                if prev is not None and toks[prev].text == ".":
                    continue
                want = long if mode == "long" or (mode == "mixed" and rng.random() < 0.5) else short
                t.text = want
    if ver and ver < (0, 7) and "now" not in declared and "block" not in declared:
        toks = _swap_now(toks, rng.choice(("now", "block.timestamp")))
    return compound_assignments(toks, rng.random() < 0.5)


def _swap_now(toks: list[Tok], want: str) -> list[Tok]:
    out: list[Tok] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        prev = out[-1] if out else None
        after_dot = prev is not None and prev.text == "."
        if want == "block.timestamp" and t.kind == "ident" and t.text == "now" and not after_dot:
            out += [
                Tok("ident", "block", t.line),
                Tok("punct", ".", t.line),
                Tok("ident", "timestamp", t.line),
            ]
            i += 1
            continue
        if (
            want == "now"
            and t.text == "block"
            and not after_dot
            and i + 2 < len(toks)
            and toks[i + 1].text == "."
            and toks[i + 2].text == "timestamp"
        ):
            out.append(Tok("ident", "now", t.line))
            i += 3
            continue
        out.append(t)
        i += 1
    return out


def _simple_lvalue(code: Sequence[Tok]) -> bool:
    """``name ( .member | [index] )*`` with plain names, numbers and member chains as indices."""

    def chain(i: int) -> int:  # end of ``ident(.ident)*`` or a number starting at i, -1 if none
        if i >= len(code) or code[i].kind not in ("ident", "num") or code[i].text in KEYWORDS:
            return -1
        i += 1
        while i + 1 < len(code) and code[i].text == "." and code[i + 1].kind == "ident":
            i += 2
        return i

    i = chain(0)
    if i < 0 or code[0].kind != "ident":
        return False
    while i < len(code):
        if code[i].text != "[":
            return False
        j = chain(i + 1)
        if j < 0 or j >= len(code) or code[j].text != "]":
            return False
        i = chain(j + 1) if j + 1 < len(code) and code[j + 1].text == "." else j + 1
        if i < 0:
            return False
    return True


def _pure_operand(code: Sequence[Tok]) -> bool:
    """Only names, numbers, member access, indexing, casts and arithmetic: nothing that could change state."""
    if not code:
        return False
    allowed = {".", "[", "]", "+", "-", "*", "/", "%", "(", ")"}
    for k, t in enumerate(code):
        if t.kind == "str" or (t.kind == "punct" and t.text not in allowed):
            return False
        if t.kind == "ident" and t.text in KEYWORDS and not is_type_word(t.text):
            return False
        if t.text == "(" and k:
            prev = code[k - 1]
            if prev.text in (")", "]") or (prev.kind == "ident" and not is_type_word(prev.text)):
                return False  # a call
    return True


def _strip_ws(toks: list[Tok]) -> list[Tok]:
    while toks and not toks[0].code:
        toks = toks[1:]
    while toks and not toks[-1].code:
        toks = toks[:-1]
    return toks


def compound_assignments(toks: list[Tok], expand: bool) -> list[Tok]:
    """``x += y`` ↔ ``x = x + y`` for statements whose operands have no calls or side effects."""
    code_idx = [i for i, t in enumerate(toks) if t.code]
    edits: list[tuple[int, int, list[Tok]]] = []  # replace toks[a:b] with new tokens
    c = 0
    while c < len(code_idx):
        if c and toks[code_idx[c - 1]].text not in (";", "{", "}", "else"):
            c += 1
            continue
        e, depth = c, 0  # the statement's ';' on its own nesting level
        while e < len(code_idx):
            text = toks[code_idx[e]].text
            if text in ("(", "["):
                depth += 1
            elif text in (")", "]"):
                depth -= 1
            elif text in ("{", "}") or (text == ";" and depth == 0):
                break
            e += 1
        if e >= len(code_idx) or toks[code_idx[e]].text != ";" or e - c < 3:
            c += 1
            continue
        stmt = [toks[code_idx[k]] for k in range(c, e)]
        ops = [k for k, t in enumerate(stmt) if t.kind == "punct" and t.text in ("+=", "-=", "=")]
        if len(ops) == 1:
            op_at = code_idx[c + ops[0]]
            op = toks[op_at]
            lhs = _strip_ws(toks[code_idx[c] : op_at])
            rhs = _strip_ws(toks[op_at + 1 : code_idx[e]])
            lhs_code, rhs_code = [t for t in lhs if t.code], [t for t in rhs if t.code]

            def copy(ts: Sequence[Tok], line: int | None = op.line) -> list[Tok]:
                return [Tok(t.kind, t.text, line) for t in ts]

            def ws(line: int | None = op.line) -> Tok:
                return Tok("ws", " ", line)

            new: list[Tok] | None = None
            if expand and op.text in ("+=", "-=") and _simple_lvalue(lhs_code) and _pure_operand(rhs_code):
                paren = not (_simple_lvalue(rhs_code) or (len(rhs_code) == 1 and rhs_code[0].kind == "num"))
                new = [
                    Tok("punct", "=", op.line),
                    ws(),
                    *copy(lhs),
                    ws(),
                    Tok("punct", op.text[0], op.line),
                    ws(),
                ]
                new += (
                    [Tok("punct", "(", op.line), *copy(rhs), Tok("punct", ")", op.line)]
                    if paren
                    else copy(rhs)
                )
            elif not expand and op.text == "=" and _simple_lvalue(lhs_code):
                n = len(lhs_code)
                rest = rhs_code[n + 1 :]
                if (
                    [t.text for t in rhs_code[:n]] == [t.text for t in lhs_code]
                    and len(rhs_code) > n + 1
                    and rhs_code[n].text in ("+", "-")
                    and (_simple_lvalue(rest) or (len(rest) == 1 and rest[0].kind == "num"))
                ):
                    tail = _strip_ws(rhs[rhs.index(rhs_code[n]) + 1 :])
                    new = [Tok("punct", rhs_code[n].text + "=", op.line), ws(), *copy(tail)]
            if new is not None:
                edits.append((op_at, code_idx[e], new))
        c = e + 1
    for a, b, new in reversed(edits):
        toks[a:b] = new
    return toks
