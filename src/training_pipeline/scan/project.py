"""Solidity projects for the scanner: the layout around a file, every file it imports, which files of a folder
to scan, and one cached standard-JSON compile per file giving the bytecode of each of its contracts.

Layout: the nearest folder upwards holding ``foundry.toml``, ``remappings.txt``, a Hardhat/Truffle config or
``package.json`` is the project root (else the scanned folder, or the file's own folder). Imports resolve
as solc would name them, without giving solc remappings: a relative import (``./x.sol``, ``../y.sol``)
against the importing file; any other path through the remappings (``remappings.txt``, Foundry
``remappings = [...]`` and one per ``lib/<dep>``: ``<dep>/`` → ``lib/<dep>/src/`` when that exists), then
under the root (``contracts/`` paths), then in ``node_modules`` from the importing file upwards (Hardhat,
npm), then in Foundry's ``libs``. Source unit names are the root-relative path of the entry and the import
path as written, so solc finds every file in the standard-JSON ``sources`` it is given, and the bytecode
does not depend on where the checkout is.

Compiles go through ``corpus.imports.compile_source_sets`` (any solc-js release, found or installed by the
``SolcResolver``); a file's result (its contracts' runtime bytecode) is cached in the compile cache's SQLite
file (table ``source_sets``) under sha256(all source unit names and texts, entry, version, settings).
"""

from __future__ import annotations

import fnmatch
import os
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from training_pipeline.corpus.imports import (
    SourceSet,
    SourceSetJob,
    UnresolvedImportError,
    compile_source_sets,
    import_paths,
    read_solidity_file,
)
from training_pipeline.corpus.solc import DEFAULT_CACHE_DIR
from training_pipeline.corpus.solc_resolver import (
    SolcNotInstalledError,
    SolcResolver,
    SolcVersionError,
    newest_satisfying,
)
from training_pipeline.data.importers.solidity import declarations
from training_pipeline.errors import DataError
from training_pipeline.utils.solidity import solidity_pragmas

MARKERS = (
    "foundry.toml",
    "remappings.txt",
    "hardhat.config.js",
    "hardhat.config.ts",
    "truffle-config.js",
    "truffle.js",
    "package.json",
)
TEST_DIRS = frozenset({"test", "tests"})
SKIPPED_DIRS = frozenset({"node_modules", "script"})
_PLACEHOLDER = re.compile(r"__.{36}__")  # an unlinked library address in runtime bytecode (40 hex digits)

# A file without declarations is still Solidity when it has a pragma or an import (OpenZeppelin's draft-*.sol
# re-export others): nothing to deploy in it, not an error.
SOLIDITY_DIRECTIVE = re.compile(r"^\s*(pragma\s+solidity|import\s)", re.MULTILINE)


def display(path: Path) -> str:
    """``path`` relative to the current folder when it lies below it, else as it is."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


# --- project layout ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Remapping:
    """``context:prefix=target``: an import path starting with ``prefix`` (in files whose unit name starts
    with ``context``) names a file under the ``target`` folder."""

    prefix: str
    target: Path
    context: str = ""


@dataclass
class Layout:
    """The project a Solidity file belongs to: its root, remappings and (Foundry) library folders."""

    root: Path
    remappings: list[Remapping] = field(default_factory=list)
    libs: list[Path] = field(default_factory=list)
    foundry: bool = False


def parse_remapping(line: str, root: Path) -> Remapping | None:
    """One ``[context:]prefix=target`` line (target relative to ``root``), None for a blank or comment."""
    line = line.strip()
    if not line or line.startswith("#") or "=" not in line:
        return None
    left, target = line.split("=", 1)
    context, prefix = left.split(":", 1) if ":" in left else ("", left)
    return Remapping(prefix.strip(), (root / target.strip()).resolve(), context.strip())


def _foundry_profile(path: Path) -> dict:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"{display(path)}: not a readable foundry.toml ({exc})") from None
    profile = data.get("profile", {}).get("default", {})
    return profile if isinstance(profile, dict) else {}


def find_layout(start: str | Path) -> Layout:
    """The layout of the project holding ``start`` (a folder or a file): see the module docstring."""
    start = Path(start).resolve()
    if not start.is_dir():
        start = start.parent
    root = next((d for d in (start, *start.parents) if any((d / m).is_file() for m in MARKERS)), start)
    layout = Layout(root=root)
    lines: list[str] = []
    if (root / "foundry.toml").is_file():
        profile = _foundry_profile(root / "foundry.toml")
        layout.foundry = True
        libs = profile.get("libs", ["lib"])
        layout.libs = [(root / str(lib)).resolve() for lib in (libs if isinstance(libs, list) else [libs])]
        lines += [str(r) for r in profile.get("remappings", []) or []]
    if (root / "remappings.txt").is_file():
        lines += (root / "remappings.txt").read_text(encoding="utf-8", errors="replace").splitlines()
    layout.remappings = [r for r in (parse_remapping(x, root) for x in lines) if r is not None]
    explicit = {r.prefix for r in layout.remappings}
    for lib in layout.libs:  # Foundry's automatic remappings: <dep>/ → lib/<dep>/src/ (or lib/<dep>/)
        for dep in sorted(lib.iterdir()) if lib.is_dir() else []:
            if dep.is_dir() and f"{dep.name}/" not in explicit:
                target = dep / "src" if (dep / "src").is_dir() else dep
                layout.remappings.append(Remapping(f"{dep.name}/", target))
    return layout


# --- imports -----------------------------------------------------------------------------------------------


def _join_unit(importer_unit: str, imported: str) -> str:
    """The unit name solc gives a relative import: ``..`` climbs the importer's folder (not above the top)."""
    parts = importer_unit.split("/")[:-1]
    for part in imported.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in (".", ""):
            parts.append(part)
    return "/".join(parts)


class ProjectImports:
    """Collects a file's import closure within its project ``Layout`` (file texts read once per instance)."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._text: dict[Path, str] = {}

    def read(self, path: Path) -> str:
        """A file's text (cached)."""
        return read_solidity_file(self._text, path, display(path))

    def unit_of(self, path: Path) -> str:
        """The unit name of a project file: its path below the root (its file name when outside)."""
        path = path.resolve()
        try:
            return path.relative_to(self.layout.root).as_posix()
        except ValueError:
            return path.name

    def resolve(self, imported: str, importer: Path, importer_unit: str) -> tuple[str, Path]:
        """(unit name, file) of ``imported`` as written in ``importer``; UnresolvedImportError names both."""
        if imported.startswith(("./", "../")):
            path = Path(os.path.normpath(importer.parent / imported))
            if path.is_file():
                return _join_unit(importer_unit, imported), path
            raise UnresolvedImportError(f"import {imported!r}: no such file {display(path)}")
        remaps = [
            r
            for r in self.layout.remappings
            if imported.startswith(r.prefix) and importer_unit.startswith(r.context)
        ]
        for r in sorted(remaps, key=lambda r: (len(r.context), len(r.prefix)), reverse=True):
            path = r.target / imported[len(r.prefix) :]
            if path.is_file():
                return imported, path
        candidates = [self.layout.root / imported]
        candidates += [d / "node_modules" / imported for d in importer.parents if d.name != "node_modules"]
        candidates += [lib / imported for lib in self.layout.libs]
        for path in candidates:
            if path.is_file():
                return imported, path
        package = "/".join(imported.split("/")[: 2 if imported.startswith("@") else 1])
        raise UnresolvedImportError(
            f"import {imported!r} not found (no remapping, node_modules package {package!r} or file under "
            f"{display(self.layout.root)} provides it)"
        )

    def closure(self, entry: Path) -> SourceSet:
        """The entry file and every file it imports, by unit name; a bad import names the importing file."""
        entry = entry.resolve()
        out = SourceSet(entry=self.unit_of(entry))
        todo = [(out.entry, entry)]
        while todo:
            unit, path = todo.pop()
            if unit in out.files:
                continue
            text = self.read(path)
            out.sources[unit], out.files[unit] = text, path
            for imported in import_paths(text):
                try:
                    todo.append(self.resolve(imported, path, unit))
                except UnresolvedImportError as exc:
                    where = "" if path == entry else f" (imported by {display(path)})"
                    raise UnresolvedImportError(f"{exc}{where}") from None
        return out


# --- which files of a folder -------------------------------------------------------------------------------


def _matches(rel: str, patterns: Iterable[str]) -> bool:
    parts = rel.split("/")
    for pattern in patterns:
        pat = pattern.strip().rstrip("/")
        if pat and (
            fnmatch.fnmatch(rel, pat)
            or fnmatch.fnmatch(rel, f"{pat}/*")
            or any(fnmatch.fnmatch(p, pat) for p in parts)
        ):
            return True
    return False


def find_solidity(folder: str | Path, exclude: Sequence[str] = (), include_tests: bool = False) -> list[Path]:
    """Every ``.sol`` file below ``folder``, sorted, without tests (``test/``, ``tests/``, ``*.t.sol``), mocks
    (a file or folder name containing "mock"), ``node_modules``, ``script/`` (and ``*.s.sol``), Foundry's
    ``lib/`` folders, hidden folders and what an ``exclude`` glob matches (against the path below ``folder``
    or any one of its names). ``include_tests`` keeps tests and mocks."""
    folder = Path(folder)
    libs = set(find_layout(folder).libs)
    found = []
    for here, dirs, files in os.walk(folder):
        base = Path(here)

        def keep(name: str, is_dir: bool, base: Path = base) -> bool:
            low = name.lower()
            rel = (base / name).relative_to(folder).as_posix()
            if is_dir and (low.startswith(".") or low in SKIPPED_DIRS or (base / name).resolve() in libs):
                return False
            if not is_dir and (not low.endswith(".sol") or low.endswith(".s.sol")):
                return False
            if not include_tests and (
                "mock" in low or (is_dir and low in TEST_DIRS) or (not is_dir and low.endswith(".t.sol"))
            ):
                return False
            return not _matches(rel, exclude)

        dirs[:] = sorted(d for d in dirs if keep(d, True))
        found += [base / f for f in sorted(files) if keep(f, False)]
    return found


# --- compiling files ---------------------------------------------------------------------------------------


@dataclass
class CompiledFile:
    """One ``.sol`` file: its deployable contracts (name → 0x runtime bytecode), those not scanned (name →
    why), the compiler used, notes, or the one-line ``error`` that kept it from compiling."""

    path: Path
    source: str | None = None
    version: str | None = None
    contracts: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # about the whole file (e.g. the compiler chosen)
    contract_notes: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None


def compile_sets(
    jobs: Sequence[SourceSetJob], resolver: SolcResolver, cache_dir: str | Path | bool | None = None
) -> list[tuple[dict[str, str] | None, str | None]]:
    """(contracts, error) of each job: the cache first (``cache_dir``; default the compile cache
    ``data/solc_cache``, False: none), the rest in one ``compile_source_sets`` pass."""
    directory = DEFAULT_CACHE_DIR if cache_dir is None or cache_dir is True else cache_dir
    results = compile_source_sets(
        jobs, resolver, n_workers=1, cache_dir=None if directory is False else directory
    )
    return [(r.contracts, None if r.contracts is not None else r.error or "no output") for r in results]


def link_zero(code: str) -> tuple[str, int]:
    """Runtime hex with every unlinked library placeholder set to the zero address, and how many there are."""
    return _PLACEHOLDER.subn("0" * 40, code)


class ProjectCompiler:
    """Compiles ``.sol`` files with their imports, each once per run (and once ever, through the cache)."""

    def __init__(
        self,
        solc: str | None = None,
        resolver: SolcResolver | None = None,
        cache_dir: str | Path | bool | None = None,
    ) -> None:
        self.solc = solc
        self.resolver = resolver or SolcResolver()
        self.cache_dir = cache_dir
        self._layouts: dict[Path, ProjectImports] = {}
        self._versions: dict[tuple[str, ...], tuple[str, str | None]] = {}

    def imports_for(self, path: Path) -> ProjectImports:
        """The import resolver of the project holding ``path`` (one per project root)."""
        layout = find_layout(path)
        if layout.root not in self._layouts:
            self._layouts[layout.root] = ProjectImports(layout)
        return self._layouts[layout.root]

    def version_for(self, constraints: Sequence[str]) -> str:
        """The release for a file's pragmas (or ``--solc``), found, installed or the offline fallback."""
        return self.release_for(constraints)[0]

    def release_for(self, constraints: Sequence[str]) -> tuple[str, str | None]:
        """(release, note): offline, the newest available match stands in for the newest known one (the
        note says so) instead of the resolver's warning; otherwise the resolver finds or installs it."""
        key = tuple(sorted(set(constraints)))
        if not key and not self.solc:
            raise DataError("no 'pragma solidity' line, cannot choose a compiler (give --solc VERSION)")
        if key not in self._versions:
            r = self.resolver
            target = r.pick(list(key), self.solc)
            stand_in = None if self.solc else newest_satisfying(list(key), r.available())
            if r.offline and stand_in is not None and r.locate(target) is None:
                note = f"solc {target} (newest for pragma solidity {' '.join(key)}) is not installed "
                self._versions[key] = (stand_in, note + f"(offline): compiled with {stand_in}")
            else:
                self._versions[key] = (r.resolve_constraints(list(key), self.solc).version, None)
        return self._versions[key]

    def prepare(self, path: Path) -> tuple[CompiledFile, SourceSetJob | None]:
        """Read ``path`` and its imports and choose its compiler; (file, None) when there is nothing to
        compile or ``file.error`` says why it cannot be."""
        item = CompiledFile(path=path)
        try:
            imports = self.imports_for(path)
            item.source = imports.read(path.resolve())
            decls = declarations(item.source)
            if not decls and SOLIDITY_DIRECTIVE.search(item.source):
                item.skipped[path.name] = "no contract declared: imports or free definitions only"
                return item, None
            if not decls:
                raise DataError("no contract, library or interface declaration found (not Solidity source?)")
            for d in decls:
                if d.kind != "contract" or d.abstract:
                    item.skipped[d.name] = "abstract contract" if d.kind == "contract" else d.kind
            if all(d.name in item.skipped for d in decls):
                return item, None
            sources = imports.closure(path)
            item.version, note = self.release_for(sources.pragmas())
            item.notes += [note] if note else []
        except (UnresolvedImportError, SolcVersionError, SolcNotInstalledError, DataError) as exc:
            item.error = str(exc)
            return item, None
        return item, SourceSetJob(dict(sources.sources), sources.entry, item.version)

    def compile(self, paths: Sequence[Path]) -> list[CompiledFile]:
        """Every file compiled (one standard-JSON compile each, with all it imports), in order."""
        prepared = [self.prepare(Path(p)) for p in paths]
        jobs = [(item, job) for item, job in prepared if job is not None]
        results = compile_sets([job for _, job in jobs], self.resolver, self.cache_dir) if jobs else []
        for (item, _), (contracts, error) in zip(jobs, results, strict=True):
            if contracts is None:
                first = (error or "no output").strip().splitlines()[0][:300]
                item.error = f"does not compile with solc {item.version}: {first}"
                continue
            self._collect(item, contracts)
        return [item for item, _ in prepared]

    @staticmethod
    def _collect(item: CompiledFile, contracts: dict[str, str]) -> None:
        decls = {d.name: d for d in declarations(item.source or "")}
        deployable = [n for n in decls if n not in item.skipped and contracts.get(n)]
        for name in decls:
            if name not in item.skipped and not contracts.get(name):
                item.skipped[name] = "abstract contract (no deployed bytecode)"
        bases = {b: d for d in deployable for b in decls[d].bases}
        for name in deployable:
            if name in bases:  # its code is in the derived contract's bytecode, scanned as that one
                item.skipped[name] = f"base of {bases[name]}"
                continue
            code, linked = link_zero(contracts[name])
            item.contracts[name] = "0x" + code.lower()
            if linked:
                note = f"{linked} library address(es) linked to the zero address"
                item.contract_notes.setdefault(name, []).append(note)


def compile_text(
    source: str,
    name: str,
    solc: str | None = None,
    resolver: SolcResolver | None = None,
    cache_dir: str | Path | bool | None = None,
) -> tuple[dict[str, str], str]:
    """(contract → runtime hex of every contract, version) of one in-memory source named ``Contract.sol``;
    imports cannot be resolved. UserError (naming ``name``) when it cannot be compiled."""
    compiler = ProjectCompiler(solc, resolver, cache_dir)
    constraints = solidity_pragmas(source)
    if not constraints and not solc:
        raise DataError(f"{name}: no 'pragma solidity' line, cannot choose a compiler (give --solc VERSION)")
    try:
        version = compiler.version_for(constraints)
    except (SolcVersionError, SolcNotInstalledError) as exc:
        raise type(exc)(f"{name}: {exc}") from None
    job = SourceSetJob({"Contract.sol": source}, "Contract.sol", version)
    ((contracts, error),) = compile_sets([job], compiler.resolver, cache_dir)
    if contracts is None:
        first = (error or "no output").strip().splitlines()[0][:300]
        raise DataError(f"{name}: does not compile with solc {version}: {first}")
    return contracts, version


__all__ = [
    "CompiledFile",
    "Layout",
    "ProjectCompiler",
    "ProjectImports",
    "Remapping",
    "compile_sets",
    "compile_text",
    "find_layout",
    "find_solidity",
    "link_zero",
    "parse_remapping",
]
