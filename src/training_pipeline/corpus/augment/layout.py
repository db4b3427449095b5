"""Transforms that move or restyle code without changing its tokens: ``reorder``, ``comments``, ``format``."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from training_pipeline.corpus.augment.scope import MOVABLE, contract_infos
from training_pipeline.utils.solidity import Tok


def reorder(toks: list[Tok], rng: random.Random) -> list[Tok]:
    """Shuffle members inside each contract body: functions (and constructors) among themselves, events among
    events, modifiers among modifiers or, sometimes, among the functions. State variables never move."""
    for c in reversed(contract_infos(toks)):  # back to front: earlier indices stay valid
        spans = [toks[m.start : m.end] for m in c.members]
        mix_modifiers = rng.random() < 0.3
        groups: dict[str, list[int]] = {}
        for i, m in enumerate(c.members):
            if m.kind in MOVABLE:
                key = "event" if m.kind == "event" else "modifier" if m.kind == "modifier" else "function"
                groups.setdefault("function" if mix_modifiers and key == "modifier" else key, []).append(i)
        if not any(len(slots) > 1 for slots in groups.values()):
            continue
        for slots in groups.values():
            moved = [spans[i] for i in slots]
            rng.shuffle(moved)
            for i, span in zip(slots, moved, strict=True):
                spans[i] = span
        # a span that ended without a newline (members sharing a line) needs a separator once moved
        for span in spans:
            if span and span[-1].kind != "nl":
                span.append(Tok("nl", "\n", None))
        start, end = c.members[0].start, c.members[-1].end
        toks[start:end] = [t for span in spans for t in span]
    return toks


_NEUTRAL_COMMENTS = (
    "// ---",
    "// note",
    "// see below",
    "// continued",
    "// ...",
    "/* - */",
    "// (internal)",
    "// misc",
    "/* ... */",
    "// end",
    "// section",
    "//",
)


def _lines(toks: Sequence[Tok]) -> list[list[Tok]]:
    """Tokens grouped by rendered line; each line keeps its trailing newline token (last line may not)."""
    lines: list[list[Tok]] = [[]]
    for t in toks:
        lines[-1].append(t)
        if t.kind == "nl":
            lines.append([])
    if not lines[-1]:
        lines.pop()
    return lines


def _keep_comment(text: str) -> bool:
    return "SPDX-License-Identifier" in text or "@solidity" in text


def strip_comments(toks: list[Tok]) -> list[Tok]:
    out: list[Tok] = []
    for line in _lines(toks):
        content = [t for t in line if t.kind not in ("ws", "nl")]
        removable = [t for t in content if t.kind in ("comment", "block") and not _keep_comment(t.text)]
        if not removable:
            out += line
        elif all(t.kind in ("comment", "block") for t in content) and len(removable) == len(content):
            continue  # a comment-only line goes entirely
        else:
            kept: list[Tok] = []
            for t in line:
                if t in removable:
                    if kept and kept[-1].kind == "ws":
                        continue  # the preceding space stays as the separator
                    kept.append(Tok("ws", " ", t.line))
                else:
                    kept.append(t)
            # no trailing space before the newline
            while len(kept) >= 2 and kept[-1].kind == "nl" and kept[-2].kind == "ws":
                kept.pop(-2)
            out += kept
    return out


def insert_comments(toks: list[Tok], rng: random.Random) -> list[Tok]:
    lines = _lines(toks)
    code_lines = [i for i, line in enumerate(lines) if any(t.code for t in line)]
    if not code_lines:
        return toks
    n = max(1, len(code_lines) // rng.choice((6, 10, 15)))
    picks = set(rng.sample(code_lines, min(n, len(code_lines))))
    out: list[Tok] = []
    for i, line in enumerate(lines):
        prev_last = (
            next((t for t in reversed(lines[i - 1]) if t.kind not in ("ws", "nl")), None) if i else None
        )
        doc_before = prev_last is not None and prev_last.text.startswith(("///", "/**"))
        if i in picks and not doc_before:
            text = rng.choice(_NEUTRAL_COMMENTS)
            if rng.random() < 0.7:  # on a line of its own, indented like the line it precedes
                indent = line[0].text if line[0].kind == "ws" else ""
                out += [
                    Tok("ws", indent, None),
                    Tok("comment" if text.startswith("//") else "block", text, None),
                ]
                out.append(Tok("nl", "\n", None))
                out += line
            else:  # at the end of the line, unless it already ends in a comment
                body = line[:-1] if line[-1].kind == "nl" else line
                last = next((t for t in reversed(body) if t.kind != "ws"), None)
                if last is None or last.kind in ("comment", "block"):
                    out += line
                else:
                    word = text.strip("/*. -")
                    out += [*body, Tok("ws", " ", None), Tok("comment", f"// {word}" if word else "//", None)]
                    out += line[len(body) :]
            continue
        out += line
    return out


@dataclass(frozen=True)
class Style:
    indent: str
    brace_next_line: bool
    blank_run: int  # every run of blank lines becomes this many
    space_after_keyword: bool


def random_style(rng: random.Random) -> Style:
    return Style(
        indent=rng.choice(("    ", "  ", "\t", "   ")),
        brace_next_line=rng.random() < 0.4,
        blank_run=rng.choice((0, 1, 1, 2)),
        space_after_keyword=rng.random() < 0.6,
    )


_CONTROL = {"if", "for", "while", "catch"}


def reformat(toks: list[Tok], style: Style) -> list[Tok]:
    lines = [[t for t in line if t.kind not in ("ws", "nl")] for line in _lines(toks)]
    # keep the original intra-line spacing: remember which code tokens were preceded by a space
    spaced: set[int] = set()
    for line in _lines(toks):
        for a, b in zip(line, line[1:], strict=False):
            if a.kind == "ws" and b.kind != "nl":
                spaced.add(id(b))
    # brace style
    out_lines: list[list[Tok]] = []
    for line in lines:
        code = [t for t in line if t.code]
        if (
            not style.brace_next_line
            and line
            and len(line) == 1
            and line[0].text == "{"
            and out_lines
            and out_lines[-1]
            and out_lines[-1][-1].code
        ):
            out_lines[-1].append(line[0])
            spaced.add(id(line[0]))
            continue
        if style.brace_next_line and len(code) >= 2 and code[-1].text == "{":
            brace_at = line.index(code[-1])
            head, rest = line[:brace_at], line[brace_at:]
            out_lines.append(head)
            out_lines.append(rest)
            spaced.discard(id(rest[0]))
            continue
        out_lines.append(line)
    # blank-line runs
    collapsed: list[list[Tok]] = []
    run = 0
    for line in out_lines:
        if not line:
            run += 1
            continue
        if run and collapsed:
            collapsed += [[] for _ in range(style.blank_run)]
        run = 0
        collapsed.append(line)
    # indentation from bracket depth; leading closers dedent their own line
    result: list[Tok] = []
    depth = 0
    for n, line in enumerate(collapsed):
        lead = 0
        for t in line:
            if t.code and t.text in ("}", ")", "]"):
                lead += 1
            else:
                break
        level = max(0, depth - lead)
        if line:
            result.append(Tok("ws", style.indent * level, None))
        for j, t in enumerate(line):
            if j and (id(t) in spaced or line[j - 1].kind == "comment"):
                result.append(Tok("ws", " ", None))
            if t.kind == "block" and "\n" in t.text:
                t.text = _reindent_block(t.text, style.indent * level)
            result.append(t)
            if t.code and t.text in ("{", "(", "["):
                depth += 1
            elif t.code and t.text in ("}", ")", "]"):
                depth = max(0, depth - 1)
        if n < len(collapsed) - 1 or toks and toks[-1].kind == "nl":
            result.append(Tok("nl", "\n", None))
    # `if (` versus `if(`
    final: list[Tok] = []
    for i, t in enumerate(result):
        if t.kind == "ws" and final and final[-1].kind == "ident" and final[-1].text in _CONTROL:
            if i + 1 < len(result) and result[i + 1].text == "(" and not style.space_after_keyword:
                continue
        final.append(t)
        if (
            style.space_after_keyword
            and t.kind == "ident"
            and t.text in _CONTROL
            and i + 1 < len(result)
            and result[i + 1].text == "("
        ):
            final.append(Tok("ws", " ", None))
    return final


def _reindent_block(text: str, indent: str) -> str:
    first, *rest = text.split("\n")
    lines = [first]
    for line in rest:
        stripped = line.lstrip()
        lines.append(indent + (" " + stripped if stripped.startswith("*") else stripped))
    return "\n".join(lines)
