"""Where imported datasets live: ``data/imported/<source>/<key>/`` (HF datasets + manifest.json), built once.

The key hashes the importer's config, the hashes of the source files and the importer version, so an
unchanged input reuses the stored import and any change builds a new one beside it. A FileLock makes
parallel jobs wait for one build instead of racing; the manifest is written last, so a directory without
one is never reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import datasets
from filelock import FileLock
from omegaconf import DictConfig, ListConfig, OmegaConf

from training_pipeline.utils.run import write_json

log = logging.getLogger(__name__)

STORE_FORMAT = 2  # bump when the stored columns change (2: negative_labels)


def plain(cfg: Any) -> Any:
    """A config block as plain Python (DictConfig/ListConfig resolved), anything else unchanged."""
    if isinstance(cfg, DictConfig | ListConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def import_key(payload: Mapping[str, Any]) -> str:
    """16 hex digits of sha256 over a JSON payload (config, source file hashes, importer version)."""
    blob = json.dumps({**payload, "store_format": STORE_FORMAT}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def content_hash(records: Iterable[Mapping[str, Any]]) -> str:
    """Data version: sha256 over (id, bytecode, labels, source hash, negative labels when given) of every
    record in order."""
    h = hashlib.sha256()
    for r in records:
        src = hashlib.sha256((r.get("source_code") or "").encode()).hexdigest()
        negatives = r.get("negative_labels")  # partial labels: part of the version when present
        extra = "" if negatives is None else "\t-" + ",".join(negatives)
        h.update(f"{r['id']}\t{r.get('bytecode')}\t{','.join(r['labels'])}\t{src}{extra}\n".encode())
    return h.hexdigest()


def label_counts(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Records per taxonomy label, and '(none)' for records without one."""
    records = list(records)
    counts = Counter(lbl for r in records for lbl in r["labels"])
    counts["(none)"] = sum(1 for r in records if not r["labels"])
    return dict(sorted(counts.items()))


def _features():
    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "group": datasets.Value("string"),
            "split": datasets.Value("string"),
            "family": datasets.Value("string"),
            "compiler_version": datasets.Value("string"),
            "contract_name": datasets.Value("string"),
            "source_code": datasets.Value("string"),
            "bytecode": datasets.Value("string"),
            "labels": datasets.Sequence(datasets.Value("string")),
            "vulnerable_lines": datasets.Value("string"),  # JSON map label -> 1-based lines, or null
            "negative_labels": datasets.Sequence(
                datasets.Value("string")
            ),  # assessed absent; null = all assessed
        }
    )


def build_once(
    out: Path, build: Callable[[], tuple[list[dict[str, Any]], dict[str, Any]]], force: bool = False
) -> Path:
    """Return ``out``, first running ``build() -> (records, manifest)`` and storing its result if needed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if (out / "manifest.json").exists() and not force:
            log.info("Reusing imported dataset %s", out)
            return out
        records, manifest = build()
        datasets.disable_progress_bars()
        columns = {name: [r.get(name) for r in records] for name in _features()}
        columns["vulnerable_lines"] = [
            json.dumps(v, sort_keys=True) if v is not None else None for v in columns["vulnerable_lines"]
        ]
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        datasets.Dataset.from_dict(columns, features=_features()).save_to_disk(str(tmp / "dataset"))
        manifest = {"key": out.name, "content_hash": content_hash(records), **manifest}
        write_json(tmp / "manifest.json", manifest)  # last: a dir without it is never reused
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        log.info("Stored %d imported records in %s", len(records), out)
        return out


def load_stored(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The stored records (interchange fields + group/split/contract_name, nulls dropped) and manifest."""
    manifest = json.loads((path / "manifest.json").read_text())
    records = []
    for row in datasets.load_from_disk(str(path / "dataset")).to_list():
        row["vulnerable_lines"] = json.loads(row["vulnerable_lines"]) if row["vulnerable_lines"] else None
        for optional in ("group", "split", "negative_labels"):
            if row.get(optional) is None:
                row.pop(optional, None)
        records.append(row)
    return records, manifest
