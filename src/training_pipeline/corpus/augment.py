"""Semantics-preserving augmentation of training contracts: source rewrites, recompiled with solc.

Works on any single-file Solidity source (generated or imported) through a small scanner of its own: tokens
keep the 1-based line they came from, so every rewrite carries a line map and ``vulnerable_lines`` follow
their statement. Transforms (``data.augment.transforms``):

- ``rename``: private/internal names declared in the file (locals, parameters, non-public state variables,
  internal/private functions, modifiers, events) get fresh names, consistently across the file. A name is
  left alone when it is also public/external, an interface member, a struct field or enum value, a type,
  a builtin, reached through ``.``, used as a named argument, or seen in inline assembly; a file with imports
  or a base contract it does not define is not renamed at all (the unseen code could use any name).
- ``reorder``: functions, modifiers, events and constructors change places inside their contract (state
  variables keep their order: it is the storage layout); a member moves with its doc comment.
- ``comments``: strip comments (SPDX and ``@solidity`` kept) and/or insert neutral ones.
- ``format``: re-indent (2/3/4 spaces or tabs), brace on the same or the next line, blank-line runs,
  ``if (`` versus ``if(``.
- ``idioms``: ``uint``↔``uint256``, ``int``↔``int256``; ``now``↔``block.timestamp`` before 0.7;
  ``sha3``↔``keccak256`` and ``suicide``↔``selfdestruct`` before 0.5; ``x += y``↔``x = x + y`` only for
  side-effect-free operands.

Every variant is compiled again with the record's compiler (the SolcPool cache under ``data_dir/solc_cache``
makes reruns free); a variant that does not compile is dropped and counted, never given its original's
bytecode. Variants keep the group, fold, labels and family of their original, so they never cross splits.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training_pipeline.errors import ConfigError

log = logging.getLogger(__name__)

TRANSFORMS = ("rename", "reorder", "comments", "format", "idioms")


@dataclass(frozen=True)
class AugmentConfig:
    """``data.augment.*``: how many variants of each training contract, made by which transforms."""

    enabled: bool = False
    copies: int = 2
    transforms: Sequence[str] = TRANSFORMS
    seed: int = 0
    n_workers: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "transforms", tuple(self.transforms))
        unknown = [t for t in self.transforms if t not in TRANSFORMS]
        if unknown:
            raise ConfigError(
                f"data.augment.transforms: unknown {unknown}; expected some of {list(TRANSFORMS)}"
            )
        if not self.transforms:
            raise ConfigError("data.augment.transforms: empty; name at least one transform")
        if self.copies < 1:
            raise ConfigError(f"data.augment.copies={self.copies}: need at least 1")


# ---------------------------------------------------------------------------------------------------------
# Scanner
# ---------------------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<nl>\n)
    |(?P<ws>[^\S\n]+)
    |(?P<comment>//[^\n]*)
    |(?P<block>/\*.*?(?:\*/|\Z))
    |(?P<str>"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?)
    |(?P<ident>[A-Za-z_$][\w$]*)
    |(?P<num>0[xX][0-9a-fA-F_]*|\d[\d_]*(?:\.\d[\d_]*)?(?:[eE]-?\d+)?|\.\d[\d_]*)
    |(?P<punct>>>>=|<<=|>>=|>>>|\*\*|==|!=|<=|>=|&&|\|\||\+\+|--|\+=|-=|\*=|/=|%=|\|=|&=|\^=|=>|->|<<|>>|:=|.)""",
    re.X | re.S,
)
_NOT_CODE = {"nl", "ws", "comment", "block"}


class Tok:
    """One token: kind, text and the 1-based source line it came from (None for inserted text)."""

    __slots__ = ("kind", "text", "line")

    def __init__(self, kind: str, text: str, line: int | None) -> None:
        self.kind, self.text, self.line = kind, text, line

    @property
    def code(self) -> bool:
        return self.kind not in _NOT_CODE

    def __repr__(self) -> str:
        return f"Tok({self.kind}, {self.text!r}, {self.line})"


def tokenize(source: str) -> list[Tok]:
    """Split Solidity source into tokens; concatenating their text gives the (\\n-normalized) source back."""
    source = source.replace("\r\n", "\n").replace("\r", "\n")
    toks, line = [], 1
    for m in _TOKEN.finditer(source):
        kind, text = m.lastgroup, m.group()
        toks.append(Tok(kind, text, line))
        line += text.count("\n")
    return toks


def render(toks: Sequence[Tok]) -> str:
    return "".join(t.text for t in toks)


def line_map(toks: Sequence[Tok]) -> dict[int, int]:
    """Original line → line of the rendered tokens where its first code token now sits."""
    out: dict[int, int] = {}
    line = 1
    for t in toks:
        if t.code and t.line is not None and t.line not in out:
            out[t.line] = line
        line += t.text.count("\n")
    return out


# ---------------------------------------------------------------------------------------------------------
# Names Solidity owns
# ---------------------------------------------------------------------------------------------------------

_ELEMENTARY = re.compile(r"^(u?int\d*|bytes\d*|u?fixed[\dx]*|address|bool|string|byte|var)$")
_LOCATIONS = {"memory", "storage", "calldata", "payable", "indexed", "constant", "immutable"}
_KEYWORDS = set(
    """abstract after alias anonymous apply as assembly auto break case catch constant constructor continue
    contract copyof default define delete do else emit enum error event external fallback false final finney
    for function gwei hex if immutable implements import in indexed inline interface internal is let library
    macro mapping match memory modifier mutable new null of override partial payable pragma private promise
    public pure receive reference relocatable return returns revert sealed seconds minutes hours days weeks
    years sizeof static storage struct supports switch szabo this super throw true try type typedef typeof
    unchecked unicode using view virtual wei ether while calldata global leave""".split()
)
_BUILTINS = set(
    """_ msg block tx abi now gasleft blockhash keccak256 sha3 sha256 ripemd160 ecrecover addmod mulmod
    selfdestruct suicide require assert revert log0 log1 log2 log3 log4 callcode send transfer call
    delegatecall staticcall balance code codehash length push pop value gas sender data sig origin gasprice
    coinbase difficulty prevrandao basefee chainid number timestamp gaslimit encode encodePacked
    encodeWithSelector encodeWithSignature encodeCall decode selector min max name creationCode runtimeCode
    interfaceId concat wrap unwrap blobhash blobbasefee""".split()
)
_RESERVED = _KEYWORDS | _BUILTINS
_STATEMENT_WORDS = {"return", "emit", "delete", "new", "else", "do", "throw", "revert", "case", "is", "using"}
_STANDARD_EVENTS = {"Transfer", "Approval", "ApprovalForAll", "TransferSingle", "TransferBatch", "URI"}


def _is_type_word(text: str) -> bool:
    return bool(_ELEMENTARY.match(text))


# ---------------------------------------------------------------------------------------------------------
# Structure: contracts, members, declarations
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Member:
    """A contract member: token span [start, end) including its leading comments and its line's newline."""

    kind: str
    start: int
    end: int
    name: str | None = None


@dataclass
class ContractInfo:
    kind: str  # contract | library | interface
    name: str
    bases: list[str]
    open: int  # token index of the body's '{'
    close: int  # token index of the body's '}'
    members: list[Member] = field(default_factory=list)


def _matching(toks: Sequence[Tok], i: int) -> int:
    """Index of the bracket closing the one at ``i`` (or len(toks) when unbalanced)."""
    pairs = {"{": "}", "(": ")", "[": "]"}
    opener, closer, depth = toks[i].text, pairs[toks[i].text], 0
    for j in range(i, len(toks)):
        if toks[j].kind == "punct":
            if toks[j].text == opener:
                depth += 1
            elif toks[j].text == closer:
                depth -= 1
                if depth == 0:
                    return j
    return len(toks)


def _next_code(toks: Sequence[Tok], i: int) -> int:
    while i < len(toks) and not toks[i].code:
        i += 1
    return i


def _contracts(toks: Sequence[Tok]) -> list[ContractInfo]:
    out = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.kind == "ident" and t.text in ("contract", "library", "interface"):
            j = _next_code(toks, i + 1)
            if j < len(toks) and toks[j].kind == "ident":
                name, bases, k = toks[j].text, [], j + 1
                while k < len(toks) and toks[k].text != "{":
                    if toks[k].text == "(":  # base constructor arguments
                        k = _matching(toks, k)
                    elif toks[k].kind == "ident" and toks[k].text != "is":
                        prev = _prev_code(toks, k)
                        if prev is None or toks[prev].text != ".":
                            bases.append(toks[k].text)
                    k += 1
                if k < len(toks):
                    close = _matching(toks, k)
                    info = ContractInfo(t.text, name, bases, k, close)
                    info.members = _members(toks, k, close)
                    out.append(info)
                    i = close
        i += 1
    return out


def _prev_code(toks: Sequence[Tok], i: int) -> int | None:
    i -= 1
    while i >= 0 and not toks[i].code:
        i -= 1
    return i if i >= 0 else None


_MOVABLE = {"function", "modifier", "event", "constructor", "fallback", "receive"}


def _members(toks: Sequence[Tok], open_: int, close: int) -> list[Member]:
    members = []
    i = open_ + 1
    # the first member starts on the line after the body's '{'
    j = i
    while j < close and toks[j].kind == "ws":
        j += 1
    if j < close and toks[j].kind in ("comment", "block"):
        j += 1
    if j < close and toks[j].kind == "nl":
        i = j + 1
    while True:
        first = _next_code(toks, i)
        if first >= close:
            break
        kind = (
            toks[first].text if toks[first].text in _MOVABLE | {"struct", "enum", "using", "error"} else "var"
        )
        k = first
        while k < close:
            text = toks[k].text if toks[k].kind == "punct" else None
            if text in ("(", "["):
                k = _matching(toks, k)
            elif text == "{":
                k = _matching(toks, k)
                break
            elif text == ";":
                break
            k += 1
        end = min(k, close - 1) + 1
        while end < close and toks[end].kind == "ws":
            end += 1
        if end < close and toks[end].kind in ("comment", "block"):
            end += 1
        if end < close and toks[end].kind == "nl":
            end += 1
        name_at = _next_code(toks, first + 1)
        name = (
            toks[name_at].text
            if kind != "var" and name_at < close and toks[name_at].kind == "ident"
            else None
        )
        members.append(Member(kind, i, end, name))
        i = end
    return members


def _param_lists(toks: Sequence[Tok], first: int, header_end: int) -> list[int]:
    """The parameter list's '(' of a function-like header, and the one after ``returns``."""
    out = []
    k = first
    while k < header_end:
        if toks[k].text == "(":
            prev = _prev_code(toks, k)
            if not out or (prev is not None and toks[prev].text == "returns"):
                out.append(k)
            k = _matching(toks, k)
        k += 1
    return out


def _param_names(toks: Sequence[Tok], open_: int) -> list[int]:
    """Token indices of the parameter names in the parenthesized list starting at ``open_``."""
    close = _matching(toks, open_)
    names, segment = [], []
    k = open_ + 1
    while k <= close:
        t = toks[k]
        if t.code and t.text in ("(", "[") and k != close:
            segment.append(k)
            k = _matching(toks, k) + 1
            continue
        if k == close or t.text == ",":
            if len(segment) >= 2:
                last = toks[segment[-1]]
                if (
                    last.kind == "ident"
                    and not _is_type_word(last.text)
                    and last.text not in _LOCATIONS
                    and last.text not in _KEYWORDS
                ):
                    names.append(segment[-1])
            segment = []
        elif t.code:
            segment.append(k)
        k += 1
    return names


@dataclass
class Scan:
    """What renaming needs to know: renamable name → kind, names that must stay, and the verdict."""

    eligible: dict[str, str]
    blocked: set[str]
    all_idents: set[str]
    renamable: bool
    contracts: list[ContractInfo]


def scan(toks: Sequence[Tok]) -> Scan:
    contracts = _contracts(toks)
    defined = {c.name for c in contracts}
    eligible: dict[str, str] = {}
    blocked: set[str] = set(defined)
    idents = {t.text for t in toks if t.kind == "ident"}
    renamable = not any(t.kind == "ident" and t.text == "import" for t in toks)
    renamable &= all(b in defined for c in contracts for b in c.bases)

    def allow(name: str, kind: str) -> None:
        eligible.setdefault(name, kind)

    for c in contracts:
        for m in c.members:
            first = _next_code(toks, m.start)
            header_end = first
            while header_end < m.end and toks[header_end].text not in ("{", ";"):
                if toks[header_end].text in ("(", "["):
                    header_end = _matching(toks, header_end)
                header_end += 1
            depth0 = []  # header tokens outside parentheses
            k = first
            while k < header_end:
                if toks[k].text in ("(", "["):
                    k = _matching(toks, k) + 1
                    continue
                if toks[k].code:
                    depth0.append(k)
                k += 1
            words = {toks[k].text for k in depth0}
            parens = _param_lists(toks, first, header_end)
            if m.kind in ("struct", "enum"):
                if m.name:
                    blocked.add(m.name)
                for k in range(header_end, m.end):
                    if toks[k].kind == "ident":
                        blocked.add(toks[k].text)  # fields and values are reached through '.'
                continue
            if m.kind == "error":
                if m.name:
                    blocked.add(m.name)
                continue
            if m.kind == "var":
                names = [k for k in depth0 if toks[k].kind == "ident"]
                eq = next((k for k in depth0 if toks[k].text == "="), None)
                before = [k for k in names if eq is None or k < eq]
                if before:
                    name = toks[before[-1]].text
                    if "public" in words or c.kind == "interface":
                        blocked.add(name)
                    elif c.kind == "contract" and not _is_type_word(name) and name not in _RESERVED:
                        allow(name, "var")
                    else:
                        blocked.add(name)
                continue
            if m.kind == "using":
                continue
            # function-like members: name, parameters, then the body's locals
            if m.name and m.kind in ("function", "modifier", "event"):
                public = m.kind == "function" and not ({"internal", "private"} & words)
                standard = m.kind == "event" and m.name in _STANDARD_EVENTS
                if public or standard or c.kind != "contract" or m.name in defined:
                    blocked.add(m.name)
                else:
                    allow(m.name, m.kind)
            for p in parens:
                for k in _param_names(toks, p):
                    if c.kind == "interface":
                        continue
                    allow(toks[k].text, "param")
            if header_end < m.end and toks[header_end].text == "{":
                _locals(toks, header_end, _matching(toks, header_end), allow, blocked)
    # Names that must not change wherever they occur.
    for i, t in enumerate(toks):
        if t.kind != "ident":
            continue
        prev = _prev_code(toks, i)
        nxt = _next_code(toks, i + 1)
        if prev is not None and toks[prev].text == ".":
            blocked.add(t.text)
        if nxt < len(toks) and toks[nxt].text == ":":
            blocked.add(t.text)
    for start, end in _assembly_spans(toks):
        blocked.update(t.text for t in toks[start:end] if t.kind == "ident")
    return Scan(
        {n: k for n, k in eligible.items() if n not in blocked and n not in _RESERVED},
        blocked,
        idents,
        renamable,
        contracts,
    )


def _locals(toks: Sequence[Tok], open_: int, close: int, allow, blocked: set[str]) -> None:
    """Local variable declarations in a body: ``Type [location] name`` followed by = ; , or )."""
    for k in range(open_ + 1, close):
        t = toks[k]
        if t.kind != "ident" or t.text in _RESERVED or _is_type_word(t.text):
            continue
        nxt = _next_code(toks, k + 1)
        if nxt >= close or toks[nxt].text not in ("=", ";", ",", ")"):
            continue
        prev = _prev_code(toks, k)
        if prev is None:
            continue
        p = toks[prev]
        if p.kind == "ident" and (
            _is_type_word(p.text)
            or p.text in _LOCATIONS
            or (p.text not in _RESERVED and p.text not in _STATEMENT_WORDS)
        ):
            allow(t.text, "local")
        elif p.text == "]" or (p.text == ")" and _is_mapping_close(toks, prev)):
            allow(t.text, "local")


def _is_mapping_close(toks: Sequence[Tok], close: int) -> bool:
    depth = 0
    for k in range(close, -1, -1):
        if toks[k].text == ")":
            depth += 1
        elif toks[k].text == "(":
            depth -= 1
            if depth == 0:
                prev = _prev_code(toks, k)
                return prev is not None and toks[prev].text == "mapping"
    return False


def _assembly_spans(toks: Sequence[Tok]) -> list[tuple[int, int]]:
    spans = []
    for i, t in enumerate(toks):
        if t.kind == "ident" and t.text == "assembly":
            k = i + 1
            while k < len(toks) and toks[k].text != "{":
                k += 1
            if k < len(toks):
                spans.append((k, _matching(toks, k) + 1))
    return spans


# ---------------------------------------------------------------------------------------------------------
# Transforms (each edits the token list in place or returns a new one; tokens keep their source line)
# ---------------------------------------------------------------------------------------------------------

_NOUNS = (
    "value amount count index item entry result data flag ref slot key total sum store cache mark "
    "point level state record target holder account balance limit rate share score round stake credit "
    "unit size base"
).split()
_ADJS = "tmp new cur next prev local my main old raw net last first inner aux own the this one".split()
_VERBS = "handle process compute apply update do run perform exec settle sync load make".split()
_EVENT_TAILS = "Updated Changed Logged Recorded Noted Set Done Made".split()
_MODIFIER_HEADS = "guard when require ensure gate with".split()


def _fresh_name(kind: str, rng: random.Random, taken: set[str]) -> str:
    def cap(w: str) -> str:
        return w[:1].upper() + w[1:]

    for attempt in range(100):
        noun = rng.choice(_NOUNS)
        if kind in ("function",):
            name = rng.choice(_VERBS) + cap(noun)
            name = ("_" + name) if rng.random() < 0.3 else name
        elif kind == "modifier":
            name = rng.choice(_MODIFIER_HEADS) + cap(noun)
        elif kind == "event":
            name = cap(noun) + rng.choice(_EVENT_TAILS)
        else:
            name = rng.choice(_ADJS) + cap(noun)
            if kind == "param" and rng.random() < 0.3:
                name = "_" + name
            elif kind == "var" and rng.random() < 0.2:
                name = "s_" + name
        if attempt > 20:
            name += str(rng.randrange(10, 100))
        if name not in taken and name not in _RESERVED:
            taken.add(name)
            return name
    raise RuntimeError("no fresh identifier found")  # pragma: no cover - 100 tries over ~600 names


def rename(toks: list[Tok], rng: random.Random, info: Scan) -> dict[str, str]:
    """Rename eligible identifiers everywhere in the file; returns old → new."""
    if not info.renamable or not info.eligible:
        return {}
    taken = set(info.all_idents)
    names = sorted(info.eligible)
    chosen = [n for n in names if rng.random() < 0.8] or names[:1]
    mapping = {n: _fresh_name(info.eligible[n], rng, taken) for n in chosen}
    for t in toks:
        if t.kind == "ident" and t.text in mapping:
            t.text = mapping[t.text]
        elif t.kind in ("comment", "block") and "@" in t.text:  # NatSpec names parameters: keep it true
            t.text = _NATSPEC_NAME.sub(lambda m: m.group(1) + mapping.get(m.group(2), m.group(2)), t.text)
    return mapping


_NATSPEC_NAME = re.compile(r"(@(?:param|return)\s+)([A-Za-z_$][\w$]*)")


def reorder(toks: list[Tok], rng: random.Random) -> list[Tok]:
    """Shuffle members inside each contract body: functions (and constructors) among themselves, events among
    events, modifiers among modifiers or, sometimes, among the functions. State variables never move."""
    for c in reversed(_contracts(toks)):  # back to front: earlier indices stay valid
        spans = [toks[m.start : m.end] for m in c.members]
        mix_modifiers = rng.random() < 0.3
        groups: dict[str, list[int]] = {}
        for i, m in enumerate(c.members):
            if m.kind in _MOVABLE:
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
                prev = _prev_code(toks, i)
                if prev is not None and toks[prev].text == ".":
                    continue
                want = long if mode == "long" or (mode == "mixed" and rng.random() < 0.5) else short
                t.text = want
    if ver and ver < (0, 7) and "now" not in declared and "block" not in declared:
        toks = _swap_now(toks, rng.choice(("now", "block.timestamp")))
    return _compound_assignments(toks, rng.random() < 0.5)


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
        if i >= len(code) or code[i].kind not in ("ident", "num") or code[i].text in _KEYWORDS:
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
        if t.kind == "ident" and t.text in _KEYWORDS and not _is_type_word(t.text):
            return False
        if t.text == "(" and k:
            prev = code[k - 1]
            if prev.text in (")", "]") or (prev.kind == "ident" and not _is_type_word(prev.text)):
                return False  # a call
    return True


def _strip_ws(toks: list[Tok]) -> list[Tok]:
    while toks and not toks[0].code:
        toks = toks[1:]
    while toks and not toks[-1].code:
        toks = toks[:-1]
    return toks


def _compound_assignments(toks: list[Tok], expand: bool) -> list[Tok]:
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


# ---------------------------------------------------------------------------------------------------------
# One variant
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Variant:
    """An augmented source, where each original line went (``lines``) and what was renamed."""

    source: str
    lines: dict[int, int]
    renames: dict[str, str]
    transforms: tuple[str, ...]


def augment_source(
    source: str,
    rng: random.Random,
    transforms: Sequence[str] = TRANSFORMS,
    compiler_version: str | None = None,
) -> Variant:
    """Apply the given transforms (in a fixed order, each with its own random choices) to one source."""
    toks = tokenize(source)
    info = scan(toks)
    renames: dict[str, str] = {}
    declared = set(info.eligible) | info.blocked
    if "rename" in transforms:
        renames = rename(toks, rng, info)
    if "idioms" in transforms:
        toks = idioms(toks, rng, compiler_version, declared | set(renames.values()))
    if "reorder" in transforms:
        toks = reorder(toks, rng)
    if "comments" in transforms:
        mode = rng.choice(("strip", "insert", "both"))
        if mode in ("strip", "both"):
            toks = strip_comments(toks)
        if mode in ("insert", "both"):
            toks = insert_comments(toks, rng)
    if "format" in transforms:
        toks = reformat(toks, random_style(rng))
    return Variant(render(toks), line_map(toks), renames, tuple(transforms))


def remap_lines(
    vulnerable_lines: dict[str, list[int]] | None, lines: dict[int, int]
) -> dict[str, list[int]] | None:
    """Move every vulnerable line to where its statement now is; None when a line has no code any more."""
    if vulnerable_lines is None:
        return None
    out = {}
    for label, nums in vulnerable_lines.items():
        if any(n not in lines for n in nums):
            return None
        out[label] = sorted({lines[n] for n in nums})
    return out


def _rng(seed: int, rid: str, k: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}\t{rid}\t{k}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass
class AugmentStats:
    """What one ``augment_records`` call did (also logged)."""

    contracts: int = 0
    skipped: int = 0  # no source, no compiler version, or an unsupported compiler
    variants: int = 0  # attempted (distinct from their original)
    unchanged: int = 0
    unmapped: int = 0  # a vulnerable line that no longer holds code
    failed: int = 0  # did not compile
    kept: int = 0
    transform_seconds: float = 0.0
    compile_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def failure_rate(self) -> float:
        return self.failed / self.variants if self.variants else 0.0


def augment_records(
    records: list[dict[str, Any]],
    cfg: AugmentConfig,
    data_dir: Path | str,
    stats: AugmentStats | None = None,
) -> list[dict[str, Any]]:
    """``cfg.copies`` recompiled variants of every record with source (id ``<id>~aug<k>``), deterministic."""
    from training_pipeline.corpus.solc import SUPPORTED_VERSIONS, CompileJob, SolcPool

    stats = stats if stats is not None else AugmentStats()
    start = time.perf_counter()
    pending: list[tuple[dict[str, Any], int, Variant, dict | None]] = []
    for r in records:
        stats.contracts += 1
        source, version = r.get("source_code"), r.get("compiler_version")
        if not source or version not in SUPPORTED_VERSIONS:
            stats.skipped += 1
            continue
        seen = {source}
        for k in range(cfg.copies):
            variant = augment_source(source, _rng(cfg.seed, r["id"], k), cfg.transforms, version)
            if variant.source in seen:
                stats.unchanged += 1
                continue
            seen.add(variant.source)
            lines = remap_lines(r.get("vulnerable_lines"), variant.lines)
            if lines is None and r.get("vulnerable_lines") is not None:
                stats.unmapped += 1
                continue
            pending.append((r, k, variant, lines))
    stats.variants = len(pending)
    stats.transform_seconds = time.perf_counter() - start

    start = time.perf_counter()
    jobs = [CompileJob(v.source, r["compiler_version"], r.get("contract_name")) for r, _, v, _ in pending]
    log.info("Compiling %d augmented variants with %d solc-js workers", len(jobs), cfg.n_workers)
    next_log = [0.25]

    def progress(done: int, total: int) -> None:  # a cold first run of the default corpus takes minutes
        if total and done / total >= next_log[0] and done < total:
            next_log[0] = done / total + 0.25
            log.info("compiled %d/%d augmented variants", done, total)

    with SolcPool(n_workers=cfg.n_workers, cache_dir=Path(data_dir) / "solc_cache") as pool:
        results = pool.compile(jobs, progress=progress)
    stats.compile_seconds = time.perf_counter() - start

    out = []
    for (r, k, variant, lines), result in zip(pending, results, strict=True):
        if not result.ok:
            stats.failed += 1
            if len(stats.errors) < 5:
                stats.errors.append(f"{r['id']}~aug{k} ({'+'.join(variant.transforms)}): {result.error}")
            continue
        out.append(
            {
                **r,
                "id": f"{r['id']}~aug{k}",
                "source_code": variant.source,
                "bytecode": result.bytecode,
                "vulnerable_lines": lines,
                "augmented_from": r["id"],
                "split": "train",
            }
        )
    stats.kept = len(out)
    log.info(
        "Augmented %d of %d contracts: %d variants kept, %d failed to compile (%.1f%%), %d unchanged, "
        "%d with unmappable lines, %d skipped; %.1f ms/variant transform, %.1f s compile",
        stats.contracts - stats.skipped,
        stats.contracts,
        stats.kept,
        stats.failed,
        100 * stats.failure_rate,
        stats.unchanged,
        stats.unmapped,
        stats.skipped,
        1000 * stats.transform_seconds / max(1, stats.variants + stats.unchanged + stats.unmapped),
        stats.compile_seconds,
    )
    for err in stats.errors:
        log.warning("augmented variant dropped: %s", err[:300])
    return out
