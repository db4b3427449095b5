"""Source clean-up shared by every importer: label-bearing comments blanked, clone-detection hashing.

Both read source through the shared lexer (``utils.solidity``), so ``//`` inside a string is never taken for
a comment and a quote inside a comment never opens a string. Edits keep every newline, so line numbers
(``vulnerable_lines``) stay valid.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Iterator

from training_pipeline.utils.solidity import IDENTIFIER, Tok, code_only, comments_and_strings

# What makes a comment label-bearing: a taxonomy name or a common vulnerability name, a bug marker, or an
# analysis tool's annotation (SmartBugs' "<yes> <report>", slither/solhint/solium disables, @audit, SWC ids).
LABEL_COMMENT = re.compile(
    r"""(?ix)
    <\s*yes\s*>|<\s*report\s*>|@audit|@custom:security|\bswc[-_ ]?\d+
    |\b(?:slither|solhint|solium|ethlint|mythril|mythx|securify|smartcheck|oyente|manticore)\b
    |re-?e?r?ntran|overflow|underflow|\bintou\b|vundflw
    |access[-_ ]control|arithmetic|bad[-_ ]randomness|weak[-_ ]randomness|predictable[-_ ]random
    |denial[-_ ]of[-_ ]service|\bdos\b|front[-_ ]?running|front[-_ ]?run\b|race[-_ ]condition
    |transaction[-_ ]order|\btod\b|time(?:stamp)?[-_ ]?(?:dependen|manipulat)|\btmstmp\b
    |tx\.origin|txorigin|unchecked[-_ ](?:low[-_ ]level|call|send|return)|unhandled[-_ ]exception|\bunchk
    |low[-_ ]level[-_ ]call|locked[-_ ]ether|double[-_ ]spend
    |vulnerab|\bexploit|\battack|\bbugs?\b|\binjected\b|\binsecure\b
    """
)

# Tokens the clone normalization keeps verbatim: keywords, types, global names and their members. Every
# other identifier is renamed to its first-occurrence index, so identifier-renamed clones hash equal.
_KEEP = frozenset(
    """
    pragma solidity import as from is contract interface library abstract function modifier event struct
    enum error constructor fallback receive returns return if else for while do break continue throw emit
    try catch new delete using assembly let public private internal external view pure payable constant
    immutable override virtual memory storage calldata indexed anonymous true false wei gwei szabo finney
    ether seconds minutes hours days weeks years mapping address bool string bytes byte var int uint fixed
    ufixed msg sender value data sig gas block timestamp number coinbase difficulty gaslimit basefee chainid
    prevrandao blockhash tx origin gasprice now this super selfdestruct suicide require assert revert
    keccak256 sha3 sha256 ripemd160 ecrecover addmod mulmod abi encode encodePacked encodeWithSelector
    encodeWithSignature encodeCall decode balance transfer send call delegatecall staticcall callcode code
    codehash length push pop type min max name creationCode runtimeCode interfaceId gasleft unchecked
    """.split()
)
_CODE_TOKEN = re.compile(r"[\w$]+|\S")
_SIZED_TYPE = re.compile(r"(?:u?int|bytes|u?fixed)\d+(?:x\d+)?")


def scan(source: str) -> Iterator[Tok]:
    """Comments and string literals in source order; ``t.kind`` is 'comment', 'block' or 'str'."""
    return comments_and_strings(source)


def _blank(text: str) -> str:
    """The text emptied but for its newlines (a single space when it has none, so tokens never merge)."""
    return "\n".join(" " if i == 0 else "" for i, _ in enumerate(text.split("\n"))) if text else text


def _blank_where(source: str, wanted: Callable[[str, int], bool]) -> tuple[str, int]:
    """Blank the comments for which ``wanted(text, first_line)`` holds; return (source, n_blanked)."""
    out: list[str] = []
    pos, n, line, counted = 0, 0, 1, 0
    for t in scan(source):
        if t.kind == "str":
            continue
        line += source.count("\n", counted, t.start)
        counted = t.start
        if not wanted(t.text, line):
            continue
        out += [source[pos : t.start], _blank(t.text)]
        pos = t.end
        n += 1
    out.append(source[pos:])
    return "".join(out), n


def blank_label_comments(source: str, lines: Collection[int] = ()) -> tuple[str, int]:
    """Blank every comment that carries a label, a vulnerability name or an analysis tool's annotation.

    Line numbers are kept (newlines stay; the rest of a comment becomes one space). Comments starting on one
    of ``lines`` (1-based, e.g. an injected snippet's) are blanked whatever they say. Returns the cleaned
    source and how many comments were blanked.
    """
    lines = set(lines)
    return _blank_where(source, lambda text, line: line in lines or LABEL_COMMENT.search(text) is not None)


def blank_all_comments(source: str) -> tuple[str, int]:
    """Blank every comment (line numbers kept)."""
    return _blank_where(source, lambda text, line: True)


def normalized_source_hash(source: str) -> str:
    """sha256 of the source's tokens with comments dropped and identifiers alpha-renamed.

    Equal for formatting clones (whitespace, comments) and for near-duplicates that differ only in the names
    of their own identifiers: keywords, types, globals and members such as ``msg.sender`` or ``tx.origin``
    are kept, so a real code change still changes the hash. String literals are kept as they are.
    """
    names: dict[str, str] = {}
    tokens: list[str] = []
    pos = 0
    for t in scan(source):
        tokens += _normal_tokens(source[pos : t.start], names)
        if t.kind == "str":
            tokens.append(t.text)
        pos = t.end
    tokens += _normal_tokens(source[pos:], names)
    return hashlib.sha256(" ".join(tokens).encode()).hexdigest()


def _normal_tokens(code: str, names: dict[str, str]) -> list[str]:
    """Code tokens (words and single symbols); identifiers not in ``_KEEP`` become ``$<first index>``.

    Deliberately coarser than the lexer's tokens (``>=`` is two symbols here): the clone hash must not
    change, since stored dedup decisions rest on it.
    """
    out = []
    for tok in _CODE_TOKEN.findall(code):
        if IDENTIFIER.fullmatch(tok) and tok not in _KEEP and not _SIZED_TYPE.fullmatch(tok):
            tok = names.setdefault(tok, f"${len(names)}")
        out.append(tok)
    return out


__all__ = [
    "IDENTIFIER",
    "LABEL_COMMENT",
    "blank_all_comments",
    "blank_label_comments",
    "code_only",
    "normalized_source_hash",
    "scan",
]
