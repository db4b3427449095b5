"""Adapters from each base model's prediction file to per-contract view features (and the truth it carries).

A view is one base model's output: ``contract_classes`` (bytecode detector, code analyzer: ``probs`` over the
vulnerability classes, true ``labels`` and the ``unassessed`` classes of partially labelled records, the code
analyzer's ``top_lines``, the bytecode's ``compile_variant`` where one was asked for) or ``anomaly_classes``
(behavior model: ``probs`` over the history classes, true ``label``). A contract absent from a file simply has
no entry: the view is missing for it, and the stacked data marks it so (``data/stacked.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training_pipeline.errors import ConfigError, DataError

KINDS = ("contract_classes", "anomaly_classes")


def check_kind(kind: str, model: str) -> str:
    if kind not in KINDS:
        raise ConfigError(f"pipeline models.{model}.adapter={kind!r}: expected one of {KINDS}")
    return kind


def read_view_predictions(path: str | Path, kind: str) -> dict[str, dict[str, Any]]:
    """id -> {"probs": {name: p}, "truth": {...}, "extras": {...}} from a ``*predictions.jsonl`` file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no predictions file")
    out: dict[str, dict[str, Any]] = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        rec = json.loads(line)
        rid, probs = rec.get("id"), rec.get("probs")
        if not rid or not isinstance(probs, dict):
            raise DataError(f"{path}:{n}: a prediction needs 'id' and 'probs'")
        if kind == "anomaly_classes":
            truth = {"behavior": rec.get("label")}
            extras = {}
        else:
            truth = {"labels": rec.get("labels"), "unassessed": rec.get("unassessed") or []}
            extras = {k: rec[k] for k in ("top_lines", "compile_variant") if rec.get(k)}
        if rid in out:
            raise DataError(f"{path}:{n}: id {rid!r} predicted twice")
        out[rid] = {"probs": {k: float(v) for k, v in probs.items()}, "truth": truth, "extras": extras}
    return out


def split_ids(datamodule: Any) -> dict[str, list[str]]:
    """Record ids per split of a fitted datamodule (contract or transaction), for the leakage checks."""
    out: dict[str, list[str]] = {}
    for split in ("train", "val", "test"):
        if hasattr(datamodule, "indices"):
            idx = datamodule.indices(split).tolist()
        else:
            idx = [int(i) for i in datamodule.splits[split].index]
        out[split] = [
            str(datamodule.records[i].get("id") or datamodule.records[i].get("contract_id")) for i in idx
        ]
    return out
