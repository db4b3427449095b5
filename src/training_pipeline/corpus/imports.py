"""Solidity imports → the standard-JSON ``sources`` of one compile: every file an entry file needs, by name.

Source unit names follow npm's layout, so solc resolves the imports itself without remappings: a file
under ``.../node_modules/<pkg>/<rel>`` is named ``<pkg>/<rel>``
(e.g. ``@openzeppelin/contracts/token/ERC20/ERC20.sol``).
A relative import (``./x.sol``, ``../y.sol``) is resolved against the importing file; any other path is a
package path, looked up in the ``node_modules`` folders from the importing file upwards (npm's nested
installs first), then in ``roots``. Every import form (plain, ``as``, ``{A as B}``, ``*``) is kept as written:
solc reads the files, nothing is flattened or rewritten.

``compile_source_sets`` compiles such sets (one standard-JSON input each, all files given, so no import
callback is needed) with any solc-js release the resolver finds or installs, and returns the runtime bytecode
of every contract of the entry file; an empty string is the compiler saying "not deployable" (interface or
abstract contract).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from training_pipeline.corpus.solc_resolver import (
    SOLC_DIR_ENV,
    SolcNotInstalledError,
    SolcResolver,
    solc_dir,
    version_tuple,
)
from training_pipeline.errors import DataError
from training_pipeline.utils.solidity import code_only, solidity_pragmas

_IMPORT = re.compile(r"(?<![\w$.])import\b[^;]*;")
_STRING = re.compile(r"\"((?:[^\"\\\n]|\\.)*)\"|'((?:[^'\\\n]|\\.)*)'")


class UnresolvedImportError(DataError):
    """An import that names no file (missing package, wrong path) or a file that cannot be read."""


def import_paths(source: str) -> list[str]:
    """The path of every ``import`` directive in ``source``, in order (comments and strings ignored)."""
    code = code_only(source)
    found = []
    for m in _IMPORT.finditer(code):
        literal = _STRING.search(source, m.start(), m.end())
        if literal is not None:
            found.append(literal.group(1) if literal.group(1) is not None else literal.group(2))
    return found


def unit_name(path: Path) -> str:
    """``.../node_modules/@scope/pkg/a/B.sol`` → ``@scope/pkg/a/B.sol`` (after the last node_modules)."""
    parts = path.parts
    if "node_modules" in parts:
        i = len(parts) - 1 - parts[::-1].index("node_modules")
        return "/".join(parts[i + 1 :])
    return path.as_posix()


@dataclass
class SourceSet:
    """One entry file and every file it imports (transitively): source unit name → text, and their pragmas."""

    entry: str
    sources: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    def pragmas(self) -> list[str]:
        """The ``pragma solidity`` constraints of every file: the compiler must satisfy them all."""
        return [c for text in self.sources.values() for c in solidity_pragmas(text)]


def read_solidity_file(cache: dict[Path, str], path: Path, label: str | Path | None = None) -> str:
    """``path``'s text, read once into ``cache``; an unreadable file is an ``UnresolvedImportError`` naming
    ``label`` (default the path)."""
    if path not in cache:
        try:
            cache[path] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UnresolvedImportError(
                f"{label or path}: not a readable UTF-8 Solidity file ({exc})"
            ) from None
    return cache[path]


class ImportResolver:
    """Finds imported files in npm ``node_modules`` trees and collects an entry file's import closure."""

    def __init__(self, roots: Sequence[str | Path] = (), boundary: str | Path | None = None) -> None:
        self.roots = [Path(r) for r in roots]
        self.boundary = (
            Path(boundary) if boundary is not None else None
        )  # node_modules above it are not searched
        self._text: dict[Path, str] = {}

    def read(self, path: Path) -> str:
        """A file's text (cached; every file of a package is read once however many entries import it)."""
        return read_solidity_file(self._text, path)

    def resolve(self, imported: str, importer: Path, importer_unit: str) -> tuple[str, Path]:
        """(unit name, file) of ``imported`` as written in ``importer`` (unit name ``importer_unit``)."""
        if imported.startswith(("./", "../")):
            unit = os.path.normpath(os.path.join(os.path.dirname(importer_unit), imported))
            unit = unit.replace(os.sep, "/")
            path = Path(os.path.normpath(importer.parent / imported))
            if path.is_file():
                return unit, path
            raise UnresolvedImportError(f"{importer}: import {imported!r} names no file ({path})")
        for folder in importer.parents:
            candidate = folder / "node_modules" / imported
            if folder.name != "node_modules" and candidate.is_file():
                return imported, candidate
            if folder == self.boundary:
                break
        for root in self.roots:
            if (root / imported).is_file():
                return imported, root / imported
        package = "/".join(imported.split("/")[: 2 if imported.startswith("@") else 1])
        raise UnresolvedImportError(
            f"{importer}: import {imported!r} not found in any node_modules above it"
            f" (is the package {package!r} installed?)"
        )

    def closure(self, entry: Path) -> SourceSet:
        """The entry file and all it imports, by unit name (UnresolvedImportError names a bad import)."""
        entry = Path(entry)
        first = unit_name(entry)
        out = SourceSet(entry=first)
        todo = [(first, entry)]
        while todo:
            unit, path = todo.pop()
            if unit in out.files:
                # Nested node_modules may hold a second copy of one dependency: the same text is the same
                # source to solc, a different text under one name is ambiguous.
                if out.files[unit] != path and self.read(path) != out.sources[unit]:
                    raise UnresolvedImportError(
                        f"{entry}: two different files share the source name {unit!r} "
                        f"({out.files[unit]} and {path})"
                    )
                continue
            text = self.read(path)
            out.sources[unit], out.files[unit] = text, path
            todo += [self.resolve(p, path, unit) for p in import_paths(text)]
        return out


# scripts/solc/compile_sets.js: one node process per chunk of jobs, a JSON job per stdin line, a JSON answer
# per stdout line.
RUNNER_SCRIPT = "compile_sets.js"


@dataclass(frozen=True)
class SourceSetJob:
    """One multi-file compile: every source (unit name → text), the entry file and the exact solc release."""

    sources: Mapping[str, str]
    entry: str
    version: str
    optimize: bool = False
    runs: int = 200


@dataclass(frozen=True)
class SourceSetResult:
    """Runtime bytecode (hex without 0x; "" = not deployable) of each contract of the entry, or the error."""

    contracts: dict[str, str] | None
    error: str | None


def _run_chunk(script: Path, jobs: list[dict], timeout_s: float) -> list[SourceSetResult]:
    lines = "".join(json.dumps(j) + "\n" for j in jobs)
    try:
        proc = subprocess.run(
            ["node", str(script)], input=lines, capture_output=True, text=True, timeout=timeout_s
        )
        answers = [json.loads(a) for a in proc.stdout.splitlines() if a.strip()]
        why = f"node exited with {proc.returncode}: {' '.join(proc.stderr.split())[-300:]}"
    except subprocess.TimeoutExpired:
        answers, why = [], f"compile did not finish within {timeout_s:.0f} s"
    except ValueError as exc:
        answers, why = [], f"compile runner wrote a non-JSON line ({exc})"
    results = [SourceSetResult(a.get("contracts"), a.get("error")) for a in answers[: len(jobs)]]
    return results + [SourceSetResult(None, why)] * (len(jobs) - len(results))


def compile_source_sets(
    jobs: Sequence[SourceSetJob],
    resolver: SolcResolver | None = None,
    n_workers: int = 2,
    timeout_s: float = 1800,
) -> list[SourceSetResult]:
    """Compile every job (compilers found or installed by ``resolver``) in ``n_workers`` node processes."""
    if not jobs:
        return []
    if shutil.which("node") is None:
        raise SolcNotInstalledError("node is not on PATH: install Node.js (>= 18), then run `make setup`")
    resolver = resolver or SolcResolver()
    paths = {v: str(resolver.ensure(v).path.resolve()) for v in {j.version for j in jobs}}
    order = sorted(range(len(jobs)), key=lambda i: version_tuple(jobs[i].version))
    size = -(-len(order) // max(1, n_workers))
    chunks = [order[k : k + size] for k in range(0, len(order), size)]
    results: list[SourceSetResult | None] = [None] * len(jobs)
    script = solc_dir() / RUNNER_SCRIPT
    if not script.is_file():
        raise SolcNotInstalledError(f"{script}: missing; set {SOLC_DIR_ENV} to the project's scripts/solc")

    def work(chunk: list[int]) -> None:
        payload = [
            {
                "sources": dict(jobs[i].sources),
                "entry": jobs[i].entry,
                "solc_path": paths[jobs[i].version],
                "optimize": jobs[i].optimize,
                "runs": jobs[i].runs,
            }
            for i in chunk
        ]
        for i, res in zip(chunk, _run_chunk(script, payload, timeout_s), strict=True):
            results[i] = res

    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r if r is not None else SourceSetResult(None, "not compiled") for r in results]


__all__ = [
    "ImportResolver",
    "SourceSet",
    "SourceSetJob",
    "SourceSetResult",
    "UnresolvedImportError",
    "compile_source_sets",
    "import_paths",
    "unit_name",
]
