"""Pipeline stages: a stage is one training run in its own dir with a ``manifest.json``; a rerun skips a
stage whose manifest says completed, whose config hash matches and whose outputs still exist."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from training_pipeline.utils.run import write_json

STAGE_FORMAT = 1  # bump when what a stage writes changes: every stage reruns
MANIFEST = "manifest.json"


def config_hash(cfg: DictConfig, stage_dir: str | Path, extra: Any = None) -> str:
    """sha256 of the resolved config (the stage dir written as ``<stage>``, so a moved run dir still
    resumes; machine-local path keys dropped) plus ``extra`` (e.g. upstream content hashes)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    paths = container.get("paths", {})
    container["paths"] = {"data_dir": paths.get("data_dir")}
    text = json.dumps({"cfg": container, "extra": extra, "format": STAGE_FORMAT}, sort_keys=True, default=str)
    text = text.replace(str(Path(stage_dir).resolve()), "<stage>")
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass
class StageResult:
    """What a completed stage left behind (paths relative to the pipeline dir)."""

    name: str
    status: str  # trained | skipped
    seconds: float
    config_hash: str
    predictions: str | None = None
    checkpoint: str | None = None
    split_ids: dict[str, list[str]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    data_version: str | None = None
    model_target: str | None = None

    def manifest(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if k != "status"}
        return {**out, "state": "completed", "format": STAGE_FORMAT}


def read_manifest(stage_dir: Path) -> dict[str, Any] | None:
    path = stage_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def reusable(stage_dir: Path, pipeline_dir: Path, wanted_hash: str) -> dict[str, Any] | None:
    """The stage's manifest if it can be reused as is, else None."""
    m = read_manifest(stage_dir)
    if not m or m.get("state") != "completed" or m.get("config_hash") != wanted_hash:
        return None
    for key in ("predictions", "checkpoint"):
        if m.get(key) and not (pipeline_dir / m[key]).is_file():
            return None
    return m


def write_manifest(stage_dir: Path, result: StageResult) -> None:
    write_json(stage_dir / MANIFEST, result.manifest())


def mark_failed(stage_dir: Path, name: str, message: str) -> None:
    write_json(stage_dir / MANIFEST, {"name": name, "state": "failed", "message": message})
