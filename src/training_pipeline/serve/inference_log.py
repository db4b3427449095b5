"""The inference log: one JSON line per scan request, appended under a lock and rotated by size
(``inference.jsonl`` → ``.1`` → ... → ``.<backups>``). One writer process per file."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any


class InferenceLog:
    """A size-rotated JSONL file; ``write`` is safe from any thread."""

    def __init__(self, path: str | Path, max_bytes: int = 10_000_000, backups: int = 5) -> None:
        self.path, self.max_bytes, self.backups = Path(path), max_bytes, backups
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line, rotating first when the line would pass ``max_bytes``."""
        line = (json.dumps(record, default=str, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            size = self.path.stat().st_size if self.path.exists() else 0
            if size and size + len(line) > self.max_bytes:
                self._rotate()
            with self.path.open("ab") as fh:
                fh.write(line)

    def _rotate(self) -> None:
        if self.backups == 0:
            self.path.unlink()
            return
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))

    def files(self) -> list[Path]:
        """The current file and its backups, newest first."""
        names = [
            self.path,
            *(self.path.with_name(f"{self.path.name}.{i}") for i in range(1, self.backups + 1)),
        ]
        return [p for p in names if p.exists()]
