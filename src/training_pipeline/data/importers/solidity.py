"""Just enough Solidity reading for the importers: pragma → bundled solc, declarations, main contract.

Everything works on ``clean.code_only`` text (comments and strings blanked, offsets and lines unchanged), so a
brace or a keyword inside a comment or string never counts.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from training_pipeline import taxonomy
from training_pipeline.data.clean import code_only

_PRAGMA = re.compile(r"\bpragma\s+solidity\s+([^;]*);")
_COMPARATOR = re.compile(r"(\^|~|>=|<=|>|<|=)?\s*v?(\d+)(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?")
_DECLARATION = re.compile(r"\b(?:(abstract)\s+)?(contract|library|interface)\s+([A-Za-z_$][\w$]*)([^{;]*)\{")


def _version(text: str) -> tuple[int, int, int]:
    return tuple(int(p) for p in text.split("."))  # type: ignore[return-value]


def _satisfies(version: tuple[int, int, int], constraint: str) -> bool:
    """npm-style range as solc reads it: comparators joined by spaces (and), alternatives by ``||``."""
    for alternative in constraint.split("||"):
        comparators = _COMPARATOR.findall(alternative.strip())
        if not comparators or not alternative.strip():
            continue
        if all(_one(version, c) for c in comparators):
            return True
    return False


def _one(version: tuple[int, int, int], comparator: tuple[str, ...]) -> bool:
    op, major, minor, patch = comparator
    wild = [p in ("", "x", "X", "*") for p in (minor, patch)]
    low = (int(major), 0 if wild[0] else int(minor), 0 if wild[0] or wild[1] else int(patch))
    if op in ("", "=") and (wild[0] or wild[1]):
        op = "~" if not wild[0] else "^x"  # 0.5.x / 0.5 → that minor; 0.x / 0 → that major
    if op == "^x":
        return version[0] == low[0]
    if op == "^":
        # ^0.5.2 → >=0.5.2 <0.6.0; ^1.2.3 → <2.0.0; ^0.0.3 → <0.0.4
        high = (low[0] + 1, 0, 0) if low[0] else (0, low[1] + 1, 0) if low[1] else (0, 0, low[2] + 1)
        return low <= version < high
    if op == "~":
        return low <= version < (low[0], low[1] + 1, 0)
    return {
        "": version == low,
        "=": version == low,
        ">=": version >= low,
        "<=": version <= low,
        ">": version > low,
        "<": version < low,
    }[op]


def pragma_constraints(source: str) -> list[str]:
    """The version constraints of every ``pragma solidity`` statement (comments ignored)."""
    return [m.group(1).strip() for m in _PRAGMA.finditer(code_only(source))]


def compatible_compilers(source: str) -> list[str]:
    """Bundled solc versions (taxonomy.COMPILER_VERSIONS) satisfying every pragma, oldest first.

    Oldest first because a pragma's lower bound is the era the author wrote against: ``>=0.5.11`` code built
    with 0.8 would silently gain checked arithmetic. Callers try the next one when a compile fails (a
    ``>=0.4.22 <0.6.0`` source may use 0.5-only syntax). No pragma → []: guessing an era is worse.
    """
    constraints = pragma_constraints(source)
    if not constraints:
        return []
    candidates = sorted(taxonomy.COMPILER_VERSIONS.values(), key=_version)
    return [v for v in candidates if all(_satisfies(_version(v), c) for c in constraints)]


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
