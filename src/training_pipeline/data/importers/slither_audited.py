"""slither-audited-smart-contracts (mwritescode, Hugging Face) → contract records.

Rows have ``address``, ``source_code``, ``bytecode`` (runtime, ``0x`` when the address holds no code) and
``slither`` (label ids of the chosen config, ``LABEL_NAMES``). Read from the hub by name, or from local
parquet/JSON(L) files with the same schema: ``data_files: {train: ..., validation: ..., test: ...}`` or a
directory holding ``[<config_name>/]<split>*.<ext>`` or ``[<config_name>/]<split>/*.<ext>`` files.

Decisions (all in config where a user may disagree):

- **Labels**: ``label_map[config_name]`` maps each dataset label to a taxonomy name or null (no label):
  ``safe`` → none; ``locked-ether`` → other; ``double-spending`` → other by default (slither's detectors
  behind it are not transaction-ordering bugs in general, so front_running would overclaim; change it in
  config if you read it otherwise).
- **Empty bytecode** (``0x``): bytecode None; ``drop_empty_bytecode: true`` drops those rows (they only
  help source models), counted in the manifest.
- **Duplicates**: rows with the same runtime bytecode collapse to one record (its id is the first address
  in the most held-out split: test, then validation, then train, so the dataset's test set keeps them);
  its labels are the union of the duplicates' labels, and clusters whose label sets disagreed are counted
  (``label_conflicts``). Dedup runs before any split, and ``group_clones`` later also groups records with
  equal normalized source.
- **Splits**: the dataset's own train/validation/test become record ``split`` train/val/test unless
  ``use_dataset_splits: false`` (then grouped folds, like every other source).
- Comments carrying labels or tool annotations are blanked (``clean.blank_label_comments``).

The import is stored once per config and input under ``data/imported/slither_audited/<key>/``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from training_pipeline import taxonomy
from training_pipeline.data.clean import blank_label_comments
from training_pipeline.data.contracts import LoadedSource
from training_pipeline.data.evm import InvalidBytecodeError, parse_hex
from training_pipeline.data.importers.store import (
    build_once,
    import_key,
    label_counts,
    load_stored,
    plain,
)
from training_pipeline.data.records import read_rows
from training_pipeline.errors import ConfigError, DataError
from training_pipeline.utils.checks import config_dataclass
from training_pipeline.utils.files import file_sha256

log = logging.getLogger(__name__)

IMPORTER_VERSION = 1
HUB_NAME = "mwritescode/slither-audited-smart-contracts"
_BIG = ("access-control", "arithmetic", "other", "reentrancy", "safe", "unchecked-calls")
LABEL_NAMES: dict[str, tuple[str, ...]] = {
    "big-multilabel": _BIG,
    "small-multilabel": (*_BIG, "locked-ether", "bad-randomness", "double-spending"),
}
DATASET_SPLITS = {"train": "train", "validation": "val", "test": "test"}
_HELD_OUT = {"test": 0, "val": 1, "train": 2, None: 3}  # which duplicate's split wins (lowest)
_SUFFIXES = (".parquet", ".jsonl", ".json")


@dataclass(frozen=True)
class SlitherAuditedConfig:
    """``data.slither_audited``: which config and files, the label mapping, bytecode and split policy."""

    config_name: str = "big-multilabel"
    data_files: Mapping[str, str] | str | None = None  # null = download ``hub_name`` with ``datasets``
    hub_name: str = HUB_NAME
    revision: str | None = None
    label_map: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)
    drop_empty_bytecode: bool = True
    use_dataset_splits: bool = True

    def __post_init__(self) -> None:
        if self.config_name not in LABEL_NAMES:
            raise ConfigError(
                f"data.slither_audited.config_name={self.config_name!r}: expected one of {list(LABEL_NAMES)}"
            )
        mapping = self.label_map.get(self.config_name)
        if mapping is None:
            raise ConfigError(f"data.slither_audited.label_map: no mapping for {self.config_name!r}")
        where = f"data.slither_audited.label_map.{self.config_name}"
        missing = sorted(set(LABEL_NAMES[self.config_name]) - set(mapping))
        extra = sorted(set(mapping) - set(LABEL_NAMES[self.config_name]))
        if missing or extra:
            raise ConfigError(f"{where}: missing {missing}, unknown {extra} (dataset labels)")
        try:
            taxonomy.validate_labels([v for v in mapping.values() if v], where=where)
        except taxonomy.UnknownLabelError as exc:
            raise ConfigError(str(exc)) from None
        if isinstance(self.data_files, Mapping):
            bad = sorted(set(self.data_files) - set(DATASET_SPLITS))
            if bad:
                raise ConfigError(
                    f"data.slither_audited.data_files: unknown split(s) {bad}; "
                    f"expected some of {list(DATASET_SPLITS)}"
                )

    def mapping(self) -> dict[str, str | None]:
        return dict(self.label_map[self.config_name])

    def content_fields(self) -> dict[str, Any]:
        return {
            "config_name": self.config_name,
            "label_map": dict(sorted(self.mapping().items())),
            "drop_empty_bytecode": self.drop_empty_bytecode,
            "use_dataset_splits": self.use_dataset_splits,
        }


def local_files(cfg: SlitherAuditedConfig) -> dict[str, list[Path]]:
    """Split → files, from ``data_files`` (a mapping or a directory); DataError naming what is missing."""
    assert cfg.data_files is not None
    if isinstance(cfg.data_files, Mapping):
        out: dict[str, list[Path]] = {}
        for split, spec in cfg.data_files.items():
            paths = [Path(p) for p in ([spec] if isinstance(spec, str | Path) else spec)]
            for p in paths:
                if not p.is_file():
                    raise DataError(f"{p}: no such file (data.slither_audited.data_files.{split})")
            out[split] = paths
        return out
    root = Path(cfg.data_files)
    if not root.is_dir():
        raise DataError(f"{root}: no such file or directory (data.slither_audited.data_files)")
    if (root / cfg.config_name).is_dir():
        root = root / cfg.config_name
    out = {}
    for split in DATASET_SPLITS:
        found = sorted(
            p
            for p in root.rglob("*")
            if p.suffix in _SUFFIXES
            and p.is_file()
            and (p.name.startswith(split) or p.relative_to(root).parts[0] == split)
        )
        if found:
            out[split] = found
    if not out:
        raise DataError(
            f"{root}: no train/validation/test .parquet/.jsonl/.json files (data.slither_audited.data_files)"
        )
    return out


def _hub_rows(cfg: SlitherAuditedConfig) -> dict[str, list[dict[str, Any]]]:
    """Rows per split from the hub (needs the network once; ``datasets`` caches the download)."""
    try:
        loaded = datasets.load_dataset(cfg.hub_name, cfg.config_name, revision=cfg.revision)
    except Exception as exc:  # no network, unknown name, gated repo: one line, not a traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{cfg.hub_name} ({cfg.config_name}): cannot load from the hub ({first}); "
            "set data.slither_audited.data_files to local parquet/JSON files"
        ) from None
    return {split: loaded[split].to_list() for split in loaded if split in DATASET_SPLITS}


def _record(
    row: dict[str, Any], where: str, names: tuple[str, ...], mapping: dict[str, str | None]
) -> dict[str, Any]:
    missing = [k for k in ("address", "source_code", "bytecode", "slither") if k not in row]
    if missing:
        raise DataError(
            f"{where}: missing field(s) {missing} (expected address, source_code, bytecode, slither)"
        )
    labels: set[str] = set()
    for raw in row["slither"] or []:
        if isinstance(raw, int) and 0 <= raw < len(names):
            name = names[raw]
        elif isinstance(raw, str) and raw in names:
            name = raw
        else:
            raise DataError(f"{where}: unknown slither label {raw!r}; expected ids 0..{len(names) - 1}")
        if mapping[name]:
            labels.add(mapping[name])
    code = row["bytecode"]
    if code in (None, "", "0x", "0X"):
        code = None
    else:
        try:
            code = "0x" + parse_hex(code, source=where).hex()
        except InvalidBytecodeError as exc:
            raise DataError(str(exc)) from None
    source, n_blanked = blank_label_comments(row["source_code"] or "")
    return {
        "id": str(row["address"]).lower(),
        "source_code": source or None,
        "bytecode": code,
        "labels": sorted(labels),
        "vulnerable_lines": None,
        "compiler_version": None,
        "family": None,
        "_blanked": n_blanked,
    }


def _build(
    cfg: SlitherAuditedConfig, rows_by_split: dict[str, list[tuple[str, dict[str, Any]]]]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    start = time.perf_counter()
    names, mapping = LABEL_NAMES[cfg.config_name], cfg.mapping()
    rows: list[dict[str, Any]] = []
    for split, items in rows_by_split.items():
        for where, row in items:
            r = _record(row, where, names, mapping)
            r["split"] = DATASET_SPLITS[split] if cfg.use_dataset_splits else None
            r["_dataset_split"] = DATASET_SPLITS[split]
            rows.append(r)
    n_rows = len(rows)
    empty = [r for r in rows if r["bytecode"] is None]
    if cfg.drop_empty_bytecode:
        rows = [r for r in rows if r["bytecode"] is not None]
    clusters: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        key = hashlib.sha256(r["bytecode"].encode()).hexdigest() if r["bytecode"] else "row:" + str(id(r))
        clusters.setdefault(key, []).append(r)
    records, conflicts, straddling = [], 0, 0
    seen_ids: set[str] = set()
    for members in clusters.values():
        keep = min(members, key=lambda r: _HELD_OUT[r["_dataset_split"]])  # first of the most held-out
        if len({tuple(m["labels"]) for m in members}) > 1:
            conflicts += 1
        if len({m["_dataset_split"] for m in members}) > 1:
            straddling += 1
        keep["labels"] = sorted({lbl for m in members for lbl in m["labels"]})
        base, k = keep["id"], 1
        while keep["id"] in seen_ids:  # the same address twice with different code: keep both, distinct ids
            k += 1
            keep["id"] = f"{base}#{k}"
        seen_ids.add(keep["id"])
        keep["group"] = keep["id"]
        records.append(keep)
    blanked = sum(r.pop("_blanked") for r in rows)
    for r in records:
        r.pop("_dataset_split")
    manifest = {
        "source": "slither_audited",
        "importer_version": IMPORTER_VERSION,
        "config": cfg.content_fields(),
        "input": str(cfg.data_files) if cfg.data_files is not None else f"hub:{cfg.hub_name}@{cfg.revision}",
        "n_rows": n_rows,
        "n_records": len(records),
        "empty_bytecode": len(empty),
        "empty_bytecode_dropped": len(empty) if cfg.drop_empty_bytecode else 0,
        "duplicates_collapsed": len(rows) - len(records),
        "duplicate_clusters": sum(1 for m in clusters.values() if len(m) > 1),
        "duplicate_clusters_across_dataset_splits": straddling,
        "label_conflicts": conflicts,
        "blanked_comments": blanked,
        "per_label": label_counts(records),
        "per_split": {s: sum(1 for r in records if r.get("split") == s) for s in ("train", "val", "test")},
        "seconds": round(time.perf_counter() - start, 2),
    }
    return records, manifest


def import_slither_audited(cfg: SlitherAuditedConfig, data_dir: str | Path, force: bool = False) -> Path:
    """Import (once per config and input) into ``data/imported/slither_audited/<key>/``; return that dir."""
    if cfg.data_files is not None:
        files = local_files(cfg)
        inputs: Any = {s: [f"{p.name}:{file_sha256(p)}" for p in paths] for s, paths in files.items()}

        def rows() -> dict[str, list[tuple[str, dict[str, Any]]]]:
            return {
                s: [(f"{p} row {i + 1}", row) for p in paths for i, row in enumerate(read_rows(p))]
                for s, paths in files.items()
            }
    else:
        inputs = {"hub": cfg.hub_name, "revision": cfg.revision}

        def rows() -> dict[str, list[tuple[str, dict[str, Any]]]]:
            return {
                s: [(f"{cfg.hub_name} {s} row {i + 1}", row) for i, row in enumerate(split_rows)]
                for s, split_rows in _hub_rows(cfg).items()
            }

    key = import_key({"config": cfg.content_fields(), "inputs": inputs, "importer": IMPORTER_VERSION})
    out = Path(data_dir) / "imported" / "slither_audited" / key
    return build_once(out, lambda: _build(cfg, rows()), force=force)


def load_slither_audited(cfg: dict, data_dir: Path) -> LoadedSource:
    """The ``slither_audited`` source of ``ContractDataModule``."""
    config = config_dataclass(SlitherAuditedConfig, plain(cfg), "data.slither_audited")
    records, manifest = load_stored(import_slither_audited(config, data_dir))
    return LoadedSource(records, "sha256:" + manifest["content_hash"])
