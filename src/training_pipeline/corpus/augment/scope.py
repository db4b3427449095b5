"""What renaming and reordering need to know: names Solidity owns, contracts, members, declarations."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from training_pipeline.utils.solidity import Tok

_ELEMENTARY = re.compile(r"^(u?int\d*|bytes\d*|u?fixed[\dx]*|address|bool|string|byte|var)$")
_LOCATIONS = {"memory", "storage", "calldata", "payable", "indexed", "constant", "immutable"}
KEYWORDS = set(
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
RESERVED = KEYWORDS | _BUILTINS  # keywords and the names Solidity owns (msg, address members...): kept
_STATEMENT_WORDS = {"return", "emit", "delete", "new", "else", "do", "throw", "revert", "case", "is", "using"}
_STANDARD_EVENTS = {"Transfer", "Approval", "ApprovalForAll", "TransferSingle", "TransferBatch", "URI"}


def is_type_word(text: str) -> bool:
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


def next_code(toks: Sequence[Tok], i: int) -> int:
    """Index of the first code token at or after ``i`` (``len(toks)`` when none)."""
    while i < len(toks) and not toks[i].code:
        i += 1
    return i


def contract_infos(toks: Sequence[Tok]) -> list[ContractInfo]:
    out = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.kind == "ident" and t.text in ("contract", "library", "interface"):
            j = next_code(toks, i + 1)
            if j < len(toks) and toks[j].kind == "ident":
                name, bases, k = toks[j].text, [], j + 1
                while k < len(toks) and toks[k].text != "{":
                    if toks[k].text == "(":  # base constructor arguments
                        k = _matching(toks, k)
                    elif toks[k].kind == "ident" and toks[k].text != "is":
                        prev = prev_code(toks, k)
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


def prev_code(toks: Sequence[Tok], i: int) -> int | None:
    i -= 1
    while i >= 0 and not toks[i].code:
        i -= 1
    return i if i >= 0 else None


MOVABLE = {"function", "modifier", "event", "constructor", "fallback", "receive"}


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
        first = next_code(toks, i)
        if first >= close:
            break
        kind = (
            toks[first].text if toks[first].text in MOVABLE | {"struct", "enum", "using", "error"} else "var"
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
        name_at = next_code(toks, first + 1)
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
            prev = prev_code(toks, k)
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
                    and not is_type_word(last.text)
                    and last.text not in _LOCATIONS
                    and last.text not in KEYWORDS
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
    contracts = contract_infos(toks)
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
            first = next_code(toks, m.start)
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
                    elif c.kind == "contract" and not is_type_word(name) and name not in RESERVED:
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
        prev = prev_code(toks, i)
        nxt = next_code(toks, i + 1)
        if prev is not None and toks[prev].text == ".":
            blocked.add(t.text)
        if nxt < len(toks) and toks[nxt].text == ":":
            blocked.add(t.text)
    for start, end in _assembly_spans(toks):
        blocked.update(t.text for t in toks[start:end] if t.kind == "ident")
    return Scan(
        {n: k for n, k in eligible.items() if n not in blocked and n not in RESERVED},
        blocked,
        idents,
        renamable,
        contracts,
    )


def _locals(toks: Sequence[Tok], open_: int, close: int, allow, blocked: set[str]) -> None:
    """Local variable declarations in a body: ``Type [location] name`` followed by = ; , or )."""
    for k in range(open_ + 1, close):
        t = toks[k]
        if t.kind != "ident" or t.text in RESERVED or is_type_word(t.text):
            continue
        nxt = next_code(toks, k + 1)
        if nxt >= close or toks[nxt].text not in ("=", ";", ",", ")"):
            continue
        prev = prev_code(toks, k)
        if prev is None:
            continue
        p = toks[prev]
        if p.kind == "ident" and (
            is_type_word(p.text)
            or p.text in _LOCATIONS
            or (p.text not in RESERVED and p.text not in _STATEMENT_WORDS)
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
                prev = prev_code(toks, k)
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
