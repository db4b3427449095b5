"""The findings cache: one JSON file per source, keyed by the source's sha256 and the Slither version.

A file analysed in place with its imports (``slither.TreeSource``, e.g. --source real_code) is keyed by the
hash of its resolved input set instead (``slither.input_set_key``: entry name, solc release, every imported
file's content hash), stored under the same layout; its record's ``sha256`` field holds that key.

Layout: ``<cache_dir>/slither-<version>-a<ANALYSIS_VERSION>/<sha256[:2]>/<sha256>.json``; each file is the
record ``analyse_source`` returns (status, reason, solc_version, seconds, findings). Writes are atomic.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from training_pipeline.data.weak_labels.mapping import ContractPrediction, DetectorMapping, record_predictions
from training_pipeline.data.weak_labels.slither import ANALYSIS_VERSION, slither_version, source_sha256

DEFAULT_CACHE_DIR = Path("data") / "weak_labels" / "slither"  # relative: under the current directory


class FindingsCache:
    """Cached Slither records of one Slither version (and analysis version) under ``root``."""

    def __init__(self, root: str | Path | None = None, version: str | None = None) -> None:
        self.root = Path(root) if root else DEFAULT_CACHE_DIR
        self.version = version or slither_version()
        self.dir = self.root / f"slither-{self.version}-a{ANALYSIS_VERSION}"

    def path(self, sha256: str) -> Path:
        """Where the record of the source with this sha256 lives."""
        return self.dir / sha256[:2] / f"{sha256}.json"

    def get(self, sha256: str) -> dict[str, Any] | None:
        """The cached record, or None (absent or unreadable)."""
        try:
            return json.loads(self.path(sha256).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def get_source(self, source: str) -> dict[str, Any] | None:
        """The cached record of a source text, or None."""
        return self.get(source_sha256(source))

    def put(self, record: dict[str, Any]) -> Path:
        """Store a record (atomically: a temporary file renamed into place)."""
        path = self.path(record["sha256"])
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(record, f, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def __len__(self) -> int:
        return sum(1 for _ in self.dir.glob("*/*.json")) if self.dir.is_dir() else 0

    def input_set_records(self) -> dict[str, dict[str, Any]]:
        """Records of files analysed in place with their imports, by the caller's record id (scans the cache:
        their key hashes the import closure, which only the tree on disk can give)."""
        found: dict[str, dict[str, Any]] = {}
        for path in sorted(self.dir.glob("*/*.json")) if self.dir.is_dir() else []:
            record = self.get(path.stem)
            if record and record.get("key_kind") == "input_set" and record.get("record_id"):
                found[record["record_id"]] = record
        return found


def needs_analysis(record: dict[str, Any] | None, timeout_s: float) -> bool:
    """True when a source has no usable record: none yet, or a timeout under a shorter limit than now."""
    if record is None:
        return True
    return record.get("status") == "timeout" and float(record.get("timeout_s") or 0) < timeout_s


def cached_predictions(
    sources: Iterable[str], cache: FindingsCache | None = None, mapping: DetectorMapping | None = None
) -> list[ContractPrediction | None]:
    """Slither's contract-level predictions for each source text, from the cache only (no analysis).

    None where a source has no record or its analysis failed: no opinion, not "clean".
    """
    cache = cache or FindingsCache()
    mapping = mapping or DetectorMapping.from_config()
    return [record_predictions(cache.get_source(s), mapping) for s in sources]


def cached_record_predictions(
    records: Sequence[Mapping[str, Any]], cache: FindingsCache, mapping: DetectorMapping
) -> list[ContractPrediction | None]:
    """Slither's predictions for interchange records (``id``, ``source_code``), from the cache only.

    A text analysed on its own is found by its sha256; a file analysed in place (real_code) by the record id
    its cache record keeps, as long as the entry's text still hashes the same. None: no record, or the
    analysis failed (no opinion).
    """
    by_id: dict[str, dict[str, Any]] | None = None  # scanned once, on the first miss
    out = []
    for r in records:
        source = r.get("source_code") or ""
        record = cache.get_source(source) if source else None
        if record is None:
            by_id = cache.input_set_records() if by_id is None else by_id
            found = by_id.get(str(r.get("id")))
            if found and found.get("source_sha256") == source_sha256(source):
                record = found
        out.append(record_predictions(record, mapping))
    return out
