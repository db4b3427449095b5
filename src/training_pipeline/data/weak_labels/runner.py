"""The labelling stage: Slither over many sources in long-lived worker processes, cached, with timeouts.

Each worker is a spawned Python process that imports Slither once and analyses source after source; a
contract over its time limit gets its worker killed (with the node compiler under it) and a fresh one.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from training_pipeline.data.weak_labels.cache import FindingsCache, needs_analysis
from training_pipeline.data.weak_labels.slither import (
    ANALYSIS_VERSION,
    TreeSource,
    analyse_source,
    bridge_path,
    slither_version,
    source_sha256,
)

STARTUP_TIMEOUT_S = 120.0  # a worker's imports (Slither) must finish within this


def _worker_main(conn: Connection, bridge: str) -> None:
    """Worker process: its own process group (killed whole on a timeout), Slither imported once."""
    os.setsid()
    import logging

    logging.disable(logging.CRITICAL)  # crytic-compile/Slither warnings: the record keeps the reason
    import slither  # noqa: F401  (the import cost is paid before the first contract's clock starts)

    conn.send(("ready", None))
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        conn.send(("done", analyse_source(task, bridge=bridge)))


@dataclass
class _Slot:
    """One worker process and the source it is busy with."""

    proc: Any = None
    conn: Connection | None = None
    ready: bool = False
    started: float = 0.0
    sha: str | None = None

    def kill(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the worker and the node bridge it started
        except (ProcessLookupError, PermissionError):
            self.proc.kill()
        self.proc.join(timeout=5)
        if self.conn is not None:
            self.conn.close()
        self.proc, self.conn, self.ready, self.sha = None, None, False, None


@dataclass
class Summary:
    """What a labelling run did."""

    total: int = 0
    analysed: int = 0
    cached: int = 0
    failed: int = 0
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)

    def line(self) -> str:
        """The final summary line."""
        why = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()) if k != "ok")
        return (
            f"weak labels: {self.total} sources, analysed {self.analysed}, cached {self.cached}, "
            f"failed {self.failed}{f' ({why})' if why else ''}, {self.seconds:.1f} s"
        )


def _timeout_record(sha: str, version: str, timeout_s: float) -> dict[str, Any]:
    return {
        "sha256": sha,
        "tool": "slither",
        "slither_version": version,
        "analysis_version": ANALYSIS_VERSION,
        "status": "timeout",
        "reason": f"no result within {timeout_s:g} s (compile + analysis)",
        "timeout_s": timeout_s,
        "solc_version": None,
        "findings": [],
        "seconds": timeout_s,
    }


def _crash_record(sha: str, version: str, why: str) -> dict[str, Any]:
    return {**_timeout_record(sha, version, 0), "status": "error", "reason": why, "timeout_s": None}


def cache_key(source: str | TreeSource) -> str:
    """The cache key of a source: sha256 of a text; a ``TreeSource``'s input-set hash."""
    return source.key if isinstance(source, TreeSource) else source_sha256(source)


def label_sources(
    sources: Iterable[str | TreeSource],
    cache: FindingsCache,
    workers: int = 2,
    timeout_s: float = 60.0,
    bridge: str | Path | None = None,
    progress: Callable[[Summary, int], None] | None = None,
    retry: Collection[str] = (),
) -> tuple[dict[str, dict[str, Any]], Summary]:
    """Analyse every source not yet in ``cache`` (records stored as they arrive); all records by cache key.

    A source is a text (keyed by its sha256) or a ``TreeSource`` (a file analysed with its imports, keyed
    by the hash of its resolved input set: ``cache_key``).

    A compile failure, crash or timeout becomes a record with its reason; it never stops the run. Cached
    records whose status is in ``retry`` (e.g. ``compile_error`` after a bridge fix) are analysed again.
    """
    start = time.perf_counter()
    texts: dict[str, str | TreeSource] = {}
    for s in sources:
        texts.setdefault(cache_key(s), s)
    summary = Summary(total=len(texts))
    records: dict[str, dict[str, Any]] = {}
    todo: deque[str] = deque()
    for sha in texts:
        rec = cache.get(sha)
        if needs_analysis(rec, timeout_s) or (rec or {}).get("status") in retry:
            todo.append(sha)
        else:
            records[sha] = rec  # type: ignore[assignment]
            summary.cached += 1
            summary.statuses[rec["status"]] += 1  # type: ignore[index]
            summary.failed += rec["status"] != "ok"  # type: ignore[index]
    if progress is not None:
        progress(summary, len(todo))
    if todo:
        bridge = str(bridge_path(bridge))
        version = slither_version()
        ctx = mp.get_context("spawn")
        slots = [_Slot() for _ in range(max(1, min(workers, len(todo))))]

        def finish(sha: str, rec: dict[str, Any]) -> None:
            cache.put(rec)
            records[sha] = rec
            summary.analysed += 1
            summary.statuses[rec["status"]] += 1
            summary.failed += rec["status"] != "ok"
            if progress is not None:
                progress(summary, len(todo))

        try:
            while todo or any(s.sha for s in slots):
                for slot in slots:
                    if slot.proc is None and todo:
                        parent, child = ctx.Pipe()
                        slot.proc = ctx.Process(target=_worker_main, args=(child, bridge), daemon=True)
                        slot.proc.start()
                        child.close()
                        slot.conn, slot.started = parent, time.monotonic()
                    if slot.ready and slot.sha is None and todo:
                        slot.sha = todo.popleft()
                        slot.started = time.monotonic()
                        slot.conn.send(texts[slot.sha])  # type: ignore[union-attr]
                live = [s.conn for s in slots if s.conn is not None]
                if not live:
                    break
                for conn in wait(live, timeout=min(0.5, timeout_s)):  # a short limit is checked as often
                    slot = next(s for s in slots if s.conn is conn)
                    try:
                        kind, rec = conn.recv()  # type: ignore[union-attr]
                    except (EOFError, OSError):
                        sha = slot.sha
                        slot.kill()
                        if sha is not None:
                            finish(sha, _crash_record(sha, version, "the analysis process died"))
                        elif not todo:
                            continue
                        else:
                            raise RuntimeError("a Slither worker died while starting") from None
                        continue
                    if kind == "ready":
                        slot.ready = True
                    else:
                        sha, slot.sha = slot.sha, None
                        finish(sha, rec)  # type: ignore[arg-type]
                now = time.monotonic()
                for slot in slots:
                    if slot.sha is not None and now - slot.started > timeout_s:
                        sha = slot.sha
                        slot.kill()
                        finish(sha, _timeout_record(sha, version, timeout_s))
                    elif slot.proc is not None and not slot.ready and now - slot.started > STARTUP_TIMEOUT_S:
                        slot.kill()
                        raise RuntimeError(f"a Slither worker did not start within {STARTUP_TIMEOUT_S:.0f} s")
        finally:
            for slot in slots:
                idle = slot.sha is None and slot.proc is not None and slot.proc.is_alive()
                if idle and slot.conn is not None:
                    try:
                        slot.conn.send(None)
                        slot.proc.join(timeout=2)
                    except (OSError, ValueError):
                        pass
                slot.kill()
    summary.seconds = time.perf_counter() - start
    return records, summary


def progress_printer(every_s: float = 5.0, stream: Any = None) -> Callable[[Summary, int], None]:
    """A progress callback: a ``done/total`` line at most every ``every_s`` seconds, and at the end."""
    stream = stream or sys.stderr
    state = {"last": 0.0, "t0": time.monotonic()}

    def show(summary: Summary, left: int) -> None:
        now = time.monotonic()
        if left and now - state["last"] < every_s:
            return
        state["last"] = now
        done = summary.analysed + summary.cached
        rate = summary.analysed / max(now - state["t0"], 1e-9)
        print(
            f"[weak labels] {done}/{summary.total} (analysed {summary.analysed}, cached {summary.cached}, "
            f"failed {summary.failed}) {rate:.2f}/s",
            file=stream,
            flush=True,
        )

    return show
