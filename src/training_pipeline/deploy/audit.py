"""Append-only audit log of deployment actions: one JSON line per package, register, promote, rollback or
reload, chained by hashes so an edited, removed, inserted or reordered line is found.

Each line holds the time (UTC), the user (``SCATHAT_USER``, else the OS user, or the API key name a caller
passes), the action, model, version, package id, reason, ``prev`` (the sha256 of the previous line's bytes,
zeros for the first line) and ``hash`` (the sha256 of the line's own fields, so an edit of the last line is
found too). Appends hold a file lock, so two processes never interleave or fork the chain. The chain cannot
see lines cut off the end of the log or the log replaced wholesale: keep a copy of the last hash elsewhere
when that matters.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from training_pipeline.config import project_root
from training_pipeline.errors import UserError

ENV_LOG = "SCATHAT_AUDIT_LOG"
ENV_USER = "SCATHAT_USER"
ACTIONS = ("package", "register", "promote", "rollback", "reload", "retrain")
GENESIS = "0" * 64
LOCK_TIMEOUT_S = 30


def log_path() -> Path:
    """``SCATHAT_AUDIT_LOG`` if set, else ``<project root>/outputs/deploy/audit.jsonl``."""
    env = os.environ.get(ENV_LOG)
    return Path(env) if env else project_root() / "outputs" / "deploy" / "audit.jsonl"


def current_user(user: str | None = None) -> str:
    """``user`` when the caller names one (an API key's name), else ``SCATHAT_USER``, else the OS user."""
    if user:
        return user
    if os.environ.get(ENV_USER):
        return os.environ[ENV_USER]
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"uid:{os.getuid()}"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _content_hash(entry: dict[str, Any]) -> str:
    """sha256 of the entry's fields other than ``hash``, in a canonical form."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return _digest(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def _last_line(path: Path) -> bytes | None:
    """The last non-empty line of ``path`` (without its newline), read from the end; None when empty."""
    if not path.is_file():
        return None
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        block, tail = 4096, b""
        pos = end
        while pos > 0:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            tail = f.read(step) + tail
            stripped = tail.rstrip(b"\n")
            if b"\n" in stripped:
                return stripped.rsplit(b"\n", 1)[1]
        stripped = tail.rstrip(b"\n")
        return stripped or None


def append(
    action: str,
    *,
    model: str | None = None,
    version: int | str | None = None,
    package_id: str | None = None,
    reason: str | None = None,
    user: str | None = None,
    log: Path | None = None,
    **details: Any,
) -> dict[str, Any]:
    """Append one entry for ``action`` to ``log`` (default ``log_path()``), holding its lock, and return it;
    ``details`` are kept under ``details`` (alias, previous champion, package path ...)."""
    if action not in ACTIONS:
        raise ValueError(f"audit action {action!r} is not one of {', '.join(ACTIONS)}")
    path = log or log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S):
        last = _last_line(path)
        entry: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "user": current_user(user),
            "action": action,
            "model": model,
            "version": version,
            "package_id": package_id,
            "reason": reason,
            "details": details or {},
            "prev": GENESIS if last is None else _digest(last),
        }
        entry["hash"] = _content_hash(entry)
        line = json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str).encode()
        with path.open("ab") as f:
            if f.tell() and not _ends_with_newline(path):
                f.write(b"\n")  # a torn last write: keep the new entry on its own line
            f.write(line + b"\n")
            f.flush()
            os.fsync(f.fileno())
    return entry


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            yield number, raw.rstrip(b"\n")


def verify(path: Path | None = None) -> tuple[bool, str]:
    """(True, summary) when every line is intact and chained to the one before it, else (False, the first
    broken line and why)."""
    path = path or log_path()
    if not path.is_file():
        return True, f"{path}: no audit log yet (nothing recorded)"
    expected_prev = GENESIS
    count = 0
    for number, raw in _lines(path):
        count = number
        if not raw.strip():
            return False, f"{path}: line {number} is empty (a line was cut or removed)"
        try:
            entry = json.loads(raw)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            return False, f"{path}: line {number} is not a JSON object (edited or torn)"
        if entry.get("prev") != expected_prev:
            what = (
                "the first line's prev is not zeros" if number == 1 else f"does not match line {number - 1}"
            )
            return False, (
                f"{path}: line {number}: chain broken, its prev hash {what} "
                f"(a line at or before {number} was edited, removed, inserted or reordered)"
            )
        if entry.get("hash") != _content_hash(entry):
            return False, f"{path}: line {number}: its content does not match its hash (edited)"
        expected_prev = _digest(raw)
    return True, f"{path}: {count} entries, chain intact"


def read(path: Path | None = None, last: int | None = None) -> list[dict[str, Any]]:
    """The log's entries (the ``last`` N when given); lines that are not JSON are a UserError."""
    path = path or log_path()
    if not path.is_file():
        return []
    entries = []
    for number, raw in _lines(path):
        try:
            entries.append(json.loads(raw))
        except (ValueError, UnicodeDecodeError):
            raise UserError(f"{path}: line {number} is not JSON (run `audit verify`)") from None
    return entries[-last:] if last else entries
