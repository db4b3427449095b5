"""Solidity → runtime bytecode through long-lived solc-js node workers, with an on-disk compile cache.

Any solc-js release 0.4.11–0.8.x compiles: a job names an exact version, which ``corpus.solc_resolver``
finds among the bundled npm aliases or in the compiler cache, or installs from npm on demand (see there for
the pragma → newest-release rule, the offline fallback and the cache layout; its names are re-exported here).
Jobs may ask for the optimizer (``optimize``, ``runs``) and an EVM target; the defaults compile exactly as
before. Also which bundled compiler a source's ``pragma solidity`` allows (``compatible_compilers``). The
solc-js folder (worker script, bundled aliases) is ``$TRAINING_PIPELINE_SOLC_DIR``, else ``scripts/solc``
under the current directory; the package never guesses where its checkout is.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import queue
import shutil
import sqlite3
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semantic_version import Version

from training_pipeline import taxonomy
from training_pipeline.corpus.solc_resolver import (
    DEFAULT_SOLC_CACHE,
    SOLC_CACHE_ENV,
    SOLC_DIR_ENV,
    SOLC_OFFLINE_ENV,
    ResolvedCompiler,
    SolcNotInstalledError,
    SolcResolver,
    SolcVersionError,
    known_releases,
    newest_satisfying,
    npm_install,
    read_bundled,
    refresh_releases,
    resolve_compiler,
    satisfies,
    solc_cache_dir,
    solc_dir,
)
from training_pipeline.utils.solidity import solidity_pragmas

WORKER_SCRIPT = "compile_worker.js"
DEFAULT_CACHE_DIR = Path("data") / "solc_cache"  # relative: under the current directory when used
# Bump when the worker's compiler settings change (output selection, contract choice). The optimizer and
# runs of a job are part of its key only when the optimizer is on, so unoptimized keys stay as they were.
COMPILER_SETTINGS_VERSION = 1
_read_versions = read_bundled

SOLC_DIR: Path = solc_dir()  # as found at import; pools look again when they start
SUPPORTED_VERSIONS: dict[str, str] = read_bundled(SOLC_DIR)  # the bundled releases: version → npm alias


def _no_solc_dir_message(directory: Path) -> str:
    return (
        f"no solc-js compilers at {directory}: set {SOLC_DIR_ENV} to the folder holding package.json and "
        "node_modules, or run `make setup` in the repository root and start from there"
    )


class CompileError(RuntimeError):
    """The compile bridge failed as a whole (bad request, crashed or hung worker), not one contract."""


@dataclass(frozen=True)
class CompileJob:
    """One single-file compile: source, exact solc version, optional contract, EVM target and optimizer."""

    source: str
    version: str
    contract: str | None = None
    evm_version: str | None = None
    optimize: bool = False
    runs: int = 200  # optimizer runs; ignored (and not in the cache key) when optimize is False


@dataclass(frozen=True)
class CompileResult:
    """Runtime (deployed) bytecode as 0x-hex and the contract it belongs to, or the compiler's error."""

    bytecode: str | None
    contract: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        """True when the compile produced bytecode."""
        return self.error is None and self.bytecode is not None


def cache_key(job: CompileJob) -> str:
    """sha256 over everything that determines the output of one compile."""
    fields: list[Any] = [COMPILER_SETTINGS_VERSION, job.version, job.evm_version, job.contract, job.source]
    if job.optimize:
        fields.append({"optimize": True, "runs": int(job.runs)})
    payload = json.dumps(fields, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class _Cache:
    """Successful compiles in one SQLite file (WAL), shared safely by concurrent processes."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "solc_cache.sqlite"
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS compiles"
            " (key TEXT PRIMARY KEY, bytecode TEXT NOT NULL, contract TEXT)"
        )
        self._db.commit()

    def get_many(self, keys: Sequence[str]) -> dict[str, CompileResult]:
        found: dict[str, CompileResult] = {}
        for i in range(0, len(keys), 500):
            chunk = list(keys[i : i + 500])
            rows = self._db.execute(
                f"SELECT key, bytecode, contract FROM compiles WHERE key IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for key, bytecode, contract in rows:
                found[key] = CompileResult(bytecode=bytecode, contract=contract, error=None)
        return found

    def put_many(self, items: Sequence[tuple[str, CompileResult]]) -> None:
        rows = [(k, r.bytecode, r.contract) for k, r in items if r.ok]
        if rows:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO compiles VALUES (?, ?, ?)", rows)

    def close(self) -> None:
        self._db.close()


class NodeProcess:
    """A long-lived ``node <script>`` answering one JSON line per JSON line it reads; its stderr is drained
    into a short tail for the error message when it dies. ``busy_since`` is for the caller's watchdog."""

    def __init__(self, script: Path, cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen(
            ["node", str(script)],
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self.busy_since: float | None = None
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_tail.append(line.rstrip()[:500])

    def exchange(self, payload: Any) -> str:
        """Write ``payload`` as one JSON line and read the answer line; "" when the process has gone away."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(payload) + "\n")
            self.proc.stdin.flush()
            return self.proc.stdout.readline()
        except (OSError, ValueError):
            return ""

    def stop(self, grace_s: float = 2.0) -> None:
        """Close its input (the script exits at the end of it), and kill it if still running after grace_s."""
        _stop_processes([self.proc], grace_s)

    def exit_code(self) -> int | None:
        """The exit status once the process has ended (None if it is still running after 2 s)."""
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        self._drain.join(timeout=1)
        return code


class _Worker(NodeProcess):
    """One node compile_worker.js process, answering batches of single-file compile jobs."""

    def __init__(self, solc_dir: Path) -> None:
        super().__init__(solc_dir / WORKER_SCRIPT, cwd=solc_dir)
        self.versions: set[str] = set()  # compilers this process has loaded

    def request(
        self, batch_id: int, jobs: Sequence[CompileJob], paths: dict[str, Path] | None = None
    ) -> dict[str, Any] | None:
        """Send one batch (``paths``: version → solc-js package folder; default the bundled alias) and wait
        for its answer; None when the worker has gone away."""
        paths = paths or {}
        payload = {
            "id": batch_id,
            "jobs": [
                {
                    "source": j.source,
                    "version": j.version,
                    "contract": j.contract,
                    "evm_version": j.evm_version,
                    "optimize": bool(j.optimize),
                    "runs": int(j.runs),
                    "solc_path": str(paths[j.version]) if j.version in paths else None,
                }
                for j in jobs
            ],
        }
        line = self.exchange(payload)
        if not line:
            return None
        try:
            return json.loads(line)
        except ValueError:
            return {"id": batch_id, "error": f"worker wrote a non-JSON line: {line[:200]!r}"}

    def describe_exit(self) -> str:
        code = self.exit_code()
        tail = " | ".join(self.stderr_tail) or "(no stderr)"
        return f"solc worker pid {self.proc.pid} exited with code {code}; stderr tail: {tail}"


def _stop_processes(procs: list[subprocess.Popen], grace_s: float = 2.0) -> None:
    """Close stdin (the worker exits on EOF), then kill whatever is still running after grace_s."""
    for p in procs:
        try:
            if p.stdin:
                p.stdin.close()
        except OSError:
            pass
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    procs.clear()


class SolcPool:
    """Compiles batches of jobs on long-lived node workers (started lazily), serving repeats from cache.

    ``cache_dir`` is the compile cache (False: none); compilers come from ``resolver`` (default: a
    ``SolcResolver`` over this pool's solc-js folder, the compiler cache ``solc_cache`` and ``offline``).
    """

    def __init__(
        self,
        n_workers: int | None = None,
        cache_dir: str | Path | None | bool = None,
        batch_size: int = 16,
        timeout_s: float = 600,
        *,
        resolver: SolcResolver | None = None,
        offline: bool | None = None,
        solc_cache: str | Path | None = None,
    ) -> None:
        self.n_workers = max(1, n_workers if n_workers is not None else min(2, os.cpu_count() or 1))
        self.batch_size = max(1, batch_size)
        self.timeout_s = timeout_s
        self.solc_dir = resolver.solc_dir if resolver is not None else solc_dir()
        self.resolver = resolver or SolcResolver(self.solc_dir, cache_dir=solc_cache, offline=offline)
        self.supported_versions = dict(self.resolver.bundled_aliases)
        if cache_dir is False:
            self._cache: _Cache | None = None
        else:
            directory = DEFAULT_CACHE_DIR if cache_dir is None or cache_dir is True else Path(cache_dir)
            self._cache = _Cache(directory)
        self._workers: list[_Worker] = []
        self._procs: list[subprocess.Popen] = []  # shared with the finalizer, so no orphans on GC/exit
        self._finalizer = weakref.finalize(self, _stop_processes, self._procs)
        self.workers_started = 0
        self._closed = False
        self.stats: dict[str, int | float] = {"compiled": 0, "cache_hits": 0, "failed": 0, "seconds": 0.0}

    def __enter__(self) -> SolcPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers and close the cache."""
        self._closed = True
        self._stop_workers()
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def _stop_workers(self, grace_s: float = 2.0) -> None:
        _stop_processes(self._procs, grace_s)
        self._workers.clear()

    def _compilers(self, versions: set[str]) -> dict[str, Path]:
        """The solc-js package folder of each version: bundled, cached, or installed now by the resolver."""
        if shutil.which("node") is None:
            raise SolcNotInstalledError("node is not on PATH: install Node.js (>= 18), then run `make setup`")
        if not (self.solc_dir / WORKER_SCRIPT).is_file():
            raise SolcNotInstalledError(
                f"solc-js is not installed in {self.solc_dir} (missing: {WORKER_SCRIPT}): run `make setup` "
                f"or point {SOLC_DIR_ENV} at an installed solc-js folder"
            )
        return {v: self.resolver.ensure(v).path.resolve() for v in sorted(versions, key=_version_tuple)}

    def _ensure_workers(self, n: int) -> None:
        while len(self._workers) < n:
            worker = _Worker(self.solc_dir)
            self._workers.append(worker)
            self._procs.append(worker.proc)
            self.workers_started += 1

    def compile(
        self, jobs: Sequence[CompileJob], progress: Callable[[int, int], None] | None = None
    ) -> list[CompileResult]:
        """Compile every job (cache first, then the workers in parallel); results come back in job order."""
        if self._closed:
            raise CompileError("SolcPool is closed")
        start = time.perf_counter()
        jobs = list(jobs)
        if jobs and not (self.solc_dir / "package.json").is_file():
            raise SolcNotInstalledError(_no_solc_dir_message(self.solc_dir))
        unknown = sorted(v for v in {j.version for j in jobs} if not self.resolver.is_known(v))
        if unknown:
            supported = ", ".join(sorted(self.supported_versions, key=_version_tuple))
            raise CompileError(
                f"unsupported solc version(s) {', '.join(unknown)}; {self.resolver.describe_known()}; "
                "bundled: "
                f"{supported or f'none ({self.solc_dir}/package.json missing)'}"
            )
        results: list[CompileResult | None] = [None] * len(jobs)
        keys = [cache_key(j) for j in jobs]
        try:
            if self._cache is not None and jobs:
                hits = self._cache.get_many(sorted(set(keys)))
                for i, key in enumerate(keys):
                    if key in hits:
                        results[i] = hits[key]
                self.stats["cache_hits"] += sum(r is not None for r in results)
            todo: dict[str, list[int]] = {}  # identical jobs compile once
            for i, key in enumerate(keys):
                if results[i] is None:
                    todo.setdefault(key, []).append(i)
            done = len(jobs) - sum(len(v) for v in todo.values())
            if progress is not None:
                progress(done, len(jobs))
            if not todo:
                return [r for r in results if r is not None]
            # Batches hold one compiler each, sized so every worker gets a few of them.
            uniques = sorted(todo, key=lambda k: _compiler_of(jobs[todo[k][0]]))
            per_batch = min(self.batch_size, -(-len(uniques) // (2 * self.n_workers)))
            batches: list[list[str]] = []
            for key in uniques:
                last = batches[-1] if batches else None
                if (
                    last
                    and len(last) < per_batch
                    and _compiler_of(jobs[todo[last[0]][0]]) == _compiler_of(jobs[todo[key][0]])
                ):
                    last.append(key)
                else:
                    batches.append([key])

            def on_batch(b: int, batch_results: list[CompileResult]) -> None:
                nonlocal done
                keyed = list(zip(batches[b], batch_results, strict=True))
                for key, result in keyed:
                    for i in todo[key]:
                        results[i] = result
                        self.stats["compiled" if result.ok else "failed"] += 1
                    done += len(todo[key])
                if self._cache is not None:
                    self._cache.put_many(keyed)
                if progress is not None:
                    progress(done, len(jobs))

            self._run_batches([[jobs[todo[k][0]] for k in b] for b in batches], on_batch)
            return [r for r in results if r is not None]
        finally:
            self.stats["seconds"] += time.perf_counter() - start

    def _run_batches(
        self, batches: list[list[CompileJob]], on_batch: Callable[[int, list[CompileResult]], None]
    ) -> None:
        """Keep every worker busy: each worker thread takes the next batch as soon as it has answered."""
        paths = self._compilers({j.version for b in batches for j in b})
        self._ensure_workers(min(self.n_workers, len(batches)))
        pending = list(range(len(batches)))
        lock = threading.Lock()
        answers: queue.SimpleQueue[tuple[_Worker, int, dict[str, Any] | None]] = queue.SimpleQueue()
        stop = threading.Event()

        def take(worker: _Worker) -> int | None:
            # Compiler affinity: a worker prefers versions it has loaded (and JIT-warmed), then ones no other
            # worker has, so each compiler loads in as few processes as possible.
            with lock:
                others = set().union(*(w.versions for w in self._workers if w is not worker))
                for wanted in (lambda v: v in worker.versions, lambda v: v not in others, lambda v: True):
                    for n, i in enumerate(pending):
                        if wanted(batches[i][0].version):
                            worker.versions.add(batches[i][0].version)
                            return pending.pop(n)
                return None

        def serve(worker: _Worker) -> None:
            while not stop.is_set() and (i := take(worker)) is not None:
                worker.busy_since = time.monotonic()
                answer = worker.request(i, batches[i], paths)
                worker.busy_since = None
                answers.put((worker, i, answer))
                if answer is None or "error" in answer:
                    return

        threads = [threading.Thread(target=serve, args=(w,), daemon=True) for w in self._workers]
        for t in threads:
            t.start()
        ok = False
        try:
            for _ in range(len(batches)):
                while True:
                    try:
                        worker, i, answer = answers.get(timeout=min(0.5, self.timeout_s))
                        break
                    except queue.Empty:
                        now = time.monotonic()
                        if any(
                            w.busy_since is not None and now - w.busy_since > self.timeout_s
                            for w in self._workers
                        ):
                            raise CompileError(
                                f"a solc worker did not answer within {self.timeout_s:.0f} s; workers killed"
                            ) from None
                        if not any(t.is_alive() for t in threads) and answers.empty():
                            raise CompileError(
                                "all solc workers stopped before finishing the batches"
                            ) from None
                if answer is None:
                    raise CompileError(worker.describe_exit())
                results = answer.get("results")
                if "error" in answer or answer.get("id") != i or len(results or ()) != len(batches[i]):
                    raise CompileError(
                        f"solc worker protocol error: {str(answer.get('error') or answer)[:300]}"
                    )
                on_batch(
                    i, [CompileResult(r.get("bytecode"), r.get("contract"), r.get("error")) for r in results]
                )
            ok = True
        finally:
            stop.set()
            if not ok:  # crash, timeout, KeyboardInterrupt or the caller gave up: no worker survives
                self._stop_workers(grace_s=0.0)
            for t in threads:
                t.join(timeout=5)


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def _compiler_of(job: CompileJob) -> tuple[tuple[int, ...], str, bool, int]:
    return _version_tuple(job.version), job.evm_version or "", job.optimize, job.runs if job.optimize else 0


def compile_many(
    jobs: Sequence[CompileJob],
    n_workers: int | None = None,
    cache_dir: str | Path | None | bool = None,
    *,
    offline: bool | None = None,
    solc_cache: str | Path | None = None,
) -> list[CompileResult]:
    """Compile jobs with a short-lived pool: convenient for one-off calls, results in job order."""
    with SolcPool(n_workers=n_workers, cache_dir=cache_dir, offline=offline, solc_cache=solc_cache) as pool:
        return pool.compile(jobs)


def job_for_source(
    source: str,
    contract: str | None = None,
    solc: str | None = None,
    resolver: SolcResolver | None = None,
    **settings: Any,
) -> CompileJob:
    """A job for ``source`` with the newest release its pragma allows (or ``solc``), installed if needed."""
    compiler = (resolver or SolcResolver()).resolve(source, solc)
    return CompileJob(source, compiler.version, contract, **settings)


# --- which bundled compiler a pragma allows --------------------------------------------------------------


def pragma_constraints(source: str) -> list[str]:
    """The version constraints of every ``pragma solidity`` statement (comments and strings ignored)."""
    return solidity_pragmas(source)


def compatible_compilers(source: str, versions: Sequence[str] | None = None) -> list[str]:
    """Bundled solc versions (default ``taxonomy.COMPILER_VERSIONS``) satisfying every pragma, oldest first.

    Oldest first because a pragma's lower bound is the era the author wrote against: ``>=0.5.11`` code built
    with 0.8 would silently gain checked arithmetic. Callers try the next one when a compile fails (a
    ``>=0.4.22 <0.6.0`` source may use 0.5-only syntax). No pragma → []: guessing an era is worse.
    """
    constraints = pragma_constraints(source)
    if not constraints:
        return []
    candidates = sorted(versions or taxonomy.COMPILER_VERSIONS.values(), key=Version)
    return [v for v in candidates if all(satisfies(v, c) for c in constraints)]


__all__ = [
    "COMPILER_SETTINGS_VERSION",
    "DEFAULT_CACHE_DIR",
    "DEFAULT_SOLC_CACHE",
    "SOLC_CACHE_ENV",
    "SOLC_DIR",
    "SOLC_DIR_ENV",
    "SOLC_OFFLINE_ENV",
    "SUPPORTED_VERSIONS",
    "CompileError",
    "CompileJob",
    "CompileResult",
    "ResolvedCompiler",
    "SolcNotInstalledError",
    "SolcPool",
    "SolcResolver",
    "SolcVersionError",
    "cache_key",
    "compatible_compilers",
    "compile_many",
    "job_for_source",
    "known_releases",
    "newest_satisfying",
    "npm_install",
    "pragma_constraints",
    "refresh_releases",
    "resolve_compiler",
    "satisfies",
    "solc_cache_dir",
    "solc_dir",
]
