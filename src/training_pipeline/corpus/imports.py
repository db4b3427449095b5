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

import collections
import hashlib
import json
import os
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from training_pipeline.corpus.solc import NodeProcess
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


# scripts/solc/compile_sets.js: long-lived node processes, a JSON job per stdin line, a JSON answer per
# stdout line.
RUNNER_SCRIPT = "compile_sets.js"
# Bump when what a source-set compile asks solc for changes (settings, output selection): cached answers
# (SourceSetCache) of the old settings are then never read again.
SOURCE_SET_SETTINGS_VERSION = 1


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


class _SetRunner(NodeProcess):
    """One node compile_sets.js process, a multi-file compile job per line in and an answer per line out."""

    timed_out = False  # set by the watchdog before it kills the process

    def ask(self, job: dict) -> SourceSetResult | None:
        """Compile one job; None when the process went away (crashed or was killed) before answering."""
        self.busy_since = time.monotonic()
        try:
            line = self.exchange(job)
        finally:
            self.busy_since = None
        if not line:
            return None
        try:
            answer = json.loads(line)
        except ValueError as exc:
            return SourceSetResult(None, f"compile runner wrote a non-JSON line ({exc})")
        return SourceSetResult(answer.get("contracts"), answer.get("error"))

    def why_gone(self, timeout_s: float) -> str:
        if self.timed_out:
            return f"compile did not finish within {timeout_s:.0f} s"
        code = self.exit_code()
        return f"node exited with {code}: {' '.join(' '.join(self.stderr_tail).split())[-300:]}"


def source_set_key(job: SourceSetJob) -> str:
    """sha256 over everything that determines one source-set compile's output."""
    payload = [
        "source-set",
        SOURCE_SET_SETTINGS_VERSION,
        job.version,
        job.entry,
        sorted(job.sources.items()),
        {"optimize": True, "runs": int(job.runs)} if job.optimize else None,
    ]
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode("utf-8")).hexdigest()


class SourceSetCache:
    """Successful source-set compiles (contract → runtime hex) in the compile cache's SQLite file."""

    def __init__(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(directory / "solc_cache.sqlite", timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS source_sets (key TEXT PRIMARY KEY, contracts TEXT NOT NULL)"
        )
        self._db.commit()

    def get(self, key: str) -> dict[str, str] | None:
        """The cached contracts of ``key``, or None."""
        row = self._db.execute("SELECT contracts FROM source_sets WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_many(self, items: Sequence[tuple[str, dict[str, str]]]) -> None:
        """Store compiles' contracts (key, contracts), in one transaction."""
        if items:
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO source_sets VALUES (?, ?)", [(k, json.dumps(c)) for k, c in items]
                )

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def compile_source_sets(
    jobs: Sequence[SourceSetJob],
    resolver: SolcResolver | None = None,
    n_workers: int = 2,
    timeout_s: float = 600,
    progress: Callable[[int, int], None] | None = None,
    cache_dir: str | Path | None = None,
) -> list[SourceSetResult]:
    """Compile every job (compilers found or installed by ``resolver``) on ``n_workers`` node processes.

    Each worker takes the next job as soon as it has answered (in release order, so a process loads each
    compiler once): a fixed split of the jobs left one process idle for a third of a package's compile, the
    newer releases being the slower ones. A job that runs past ``timeout_s`` or crashes its process fails
    alone, and a fresh process takes the next one. ``progress(done, total)`` is called after each answer.

    ``cache_dir`` (e.g. ``data/solc_cache``): jobs answered before are read from its ``SourceSetCache``, new
    successful ones stored there, and identical jobs compile once. None: every job compiles.
    """
    if not jobs:
        return []
    if cache_dir is None:
        return compile_fresh_source_sets(jobs, resolver, n_workers, timeout_s, progress)
    cache = SourceSetCache(cache_dir)
    try:
        keys = [source_set_key(j) for j in jobs]
        results: list[SourceSetResult | None] = [None] * len(jobs)
        todo: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            if (hit := cache.get(key)) is not None:
                results[i] = SourceSetResult(hit, None)
            else:
                todo.setdefault(key, []).append(i)
        known = len(jobs) - sum(len(ix) for ix in todo.values())

        def relay(done: int, total: int) -> None:
            progress(known + done, len(jobs))  # type: ignore[misc]

        pending = [jobs[ix[0]] for ix in todo.values()]
        fresh = (
            compile_fresh_source_sets(pending, resolver, n_workers, timeout_s, relay if progress else None)
            if pending
            else []
        )
        for ix, res in zip(todo.values(), fresh, strict=True):
            for i in ix:
                results[i] = res
        cache.put_many(
            [(k, r.contracts) for k, r in zip(todo, fresh, strict=True) if r.contracts is not None]
        )
        return [r if r is not None else SourceSetResult(None, "not compiled") for r in results]
    finally:
        cache.close()


def compile_fresh_source_sets(
    jobs: Sequence[SourceSetJob],
    resolver: SolcResolver | None,
    n_workers: int,
    timeout_s: float,
    progress: Callable[[int, int], None] | None,
) -> list[SourceSetResult]:
    """``compile_source_sets`` without a cache: every job on the node processes (what a cached call sends to
    solc: count or stub it here)."""
    if not jobs:
        return []
    if shutil.which("node") is None:
        raise SolcNotInstalledError("node is not on PATH: install Node.js (>= 18), then run `make setup`")
    resolver = resolver or SolcResolver()
    paths = {v: str(resolver.ensure(v).path.resolve()) for v in {j.version for j in jobs}}
    script = solc_dir() / RUNNER_SCRIPT
    if not script.is_file():
        raise SolcNotInstalledError(f"{script}: missing; set {SOLC_DIR_ENV} to the project's scripts/solc")
    todo = collections.deque(sorted(range(len(jobs)), key=lambda i: version_tuple(jobs[i].version)))
    results: list[SourceSetResult | None] = [None] * len(jobs)
    lock = threading.Lock()
    runners: list[_SetRunner] = []
    done = 0  # answers so far
    stop = threading.Event()

    def work() -> None:
        nonlocal done
        runner: _SetRunner | None = None
        try:
            while not stop.is_set():
                with lock:
                    if not todo:
                        return
                    i = todo.popleft()
                    if runner is None:
                        runner = _SetRunner(script)
                        runners.append(runner)
                job = jobs[i]
                payload = {
                    "sources": dict(job.sources),
                    "entry": job.entry,
                    "solc_path": paths[job.version],
                    "optimize": job.optimize,
                    "runs": job.runs,
                }
                answer = runner.ask(payload)
                if answer is None:  # crashed or killed by the watchdog: this job fails, a new process goes on
                    answer = SourceSetResult(None, runner.why_gone(timeout_s))
                    runner.stop(grace_s=0.0)
                    runner = None
                with lock:
                    results[i] = answer
                    done += 1
                    count = done
                if progress is not None:
                    progress(count, len(jobs))
        finally:
            if runner is not None:
                runner.stop(grace_s=5.0)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(max(1, min(n_workers, len(jobs))))]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.5)
            now = time.monotonic()
            with lock:
                for r in runners:
                    if r.busy_since is not None and now - r.busy_since > timeout_s and not r.timed_out:
                        r.timed_out = True
                        r.proc.kill()  # its thread reads EOF, records the timeout, starts a new process
    finally:
        stop.set()
        with lock:
            for r in runners:
                if r.proc.poll() is None and any(t.is_alive() for t in threads):
                    r.proc.kill()
        for t in threads:
            t.join(timeout=5)
    return [r if r is not None else SourceSetResult(None, "not compiled") for r in results]


__all__ = [
    "ImportResolver",
    "SourceSet",
    "SourceSetCache",
    "SourceSetJob",
    "SourceSetResult",
    "UnresolvedImportError",
    "compile_fresh_source_sets",
    "compile_source_sets",
    "import_paths",
    "source_set_key",
    "unit_name",
]
