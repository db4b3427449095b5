"""Just enough Solidity reading for the importers: pragma → bundled solc, declarations, main contract.

Pragma ranges are read in ``corpus.solc`` (re-exported here). Everything else works on the shared lexer's
``code_only`` text (comments and strings blanked, offsets and lines unchanged), so a
brace or a keyword inside a comment or string never counts.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from training_pipeline.corpus.solc import compatible_compilers, pragma_constraints
from training_pipeline.utils.solidity import code_only

_DECLARATION = re.compile(r"\b(?:(abstract)\s+)?(contract|library|interface)\s+([A-Za-z_$][\w$]*)([^{;]*)\{")


@dataclass(frozen=True)
class Declaration:
    """One contract, library or interface: its kind, name, direct bases and line span (1-based)."""

    kind: str
    name: str
    bases: tuple[str, ...]
    first_line: int
    last_line: int
    abstract: bool = False


def declarations(source: str) -> list[Declaration]:
    """Top-level contract/library/interface declarations in source order."""
    code = code_only(source)
    out: list[Declaration] = []
    pos = 0
    while (m := _DECLARATION.search(code, pos)) is not None:
        depth, end = 1, m.end()
        while depth and end < len(code):
            depth += {"{": 1, "}": -1}.get(code[end], 0)
            end += 1
        inherit = m.group(4).strip()
        bases: tuple[str, ...] = ()
        if inherit.startswith("is"):
            base_list = _flatten_parens(inherit[2:])
            bases = tuple(b.group(1) for b in re.finditer(r"(?:^|,)\s*([A-Za-z_$][\w$.]*)", base_list))
        out.append(
            Declaration(
                kind=m.group(2),
                name=m.group(3),
                bases=bases,
                first_line=code.count("\n", 0, m.start()) + 1,
                last_line=code.count("\n", 0, end) + 1,
                abstract=bool(m.group(1)),
            )
        )
        pos = end
    return out


def _flatten_parens(text: str) -> str:
    """Drop parenthesized base-constructor arguments, so their commas do not split the base list."""
    while True:
        flat = re.sub(r"\([^()]*\)", "", text)
        if flat == text:
            return flat
        text = flat


def _closure(name: str, by_name: dict[str, Declaration], seen: set[str]) -> set[str]:
    if name not in seen and name in by_name:
        seen.add(name)
        for base in by_name[name].bases:
            _closure(base, by_name, seen)
    return seen


def lines_covered(source: str, contract: str | None, lines: Collection[int]) -> int:
    """How many of ``lines`` lie in ``contract`` or its (transitive) bases: code its bytecode can hold."""
    by_name = {d.name: d for d in declarations(source)}
    spans = [by_name[n] for n in _closure(contract or "", by_name, set())]
    return sum(1 for n in set(lines) if any(s.first_line <= n <= s.last_line for s in spans))


def main_contract(source: str, lines: Collection[int] = ()) -> str | None:
    """The contract to compile: the one whose inheritance closure holds most of ``lines``, ties → the last.

    With no ``lines`` (or none inside any contract) that is the last non-abstract contract, which in
    flattened sources is the most derived one. Libraries and interfaces are never chosen; None when the
    source declares no contract.
    """
    decls = declarations(source)
    by_name = {d.name: d for d in decls}
    wanted = set(lines)
    best: tuple[int, int] | None = None
    chosen = None
    for order, d in enumerate(decls):
        if d.kind != "contract" or d.abstract:
            continue
        spans = [by_name[n] for n in _closure(d.name, by_name, set())]
        covered = sum(1 for n in wanted if any(s.first_line <= n <= s.last_line for s in spans))
        if best is None or (covered, order) >= best:
            best, chosen = (covered, order), d.name
    return chosen


__all__ = [
    "Declaration",
    "compatible_compilers",
    "declarations",
    "lines_covered",
    "main_contract",
    "pragma_constraints",
]
