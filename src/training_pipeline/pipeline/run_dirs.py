"""Train-all run dirs as readers see them: a finished run's ``pipeline.json``, and the newest completed run
under ``outputs/pipeline/`` (by the finish time its ``pipeline.json`` records), for the benchmark and for
scans given ``--pipeline-dir`` or nothing else."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from training_pipeline.config import project_root
from training_pipeline.errors import UserError

PIPELINE_FILE = "pipeline.json"


def pipelines_root() -> Path:
    """Where ``make train-all`` writes its run dirs: ``<project root>/outputs/pipeline``."""
    return project_root() / "outputs" / "pipeline"


def read_manifest(root: Path) -> dict[str, Any]:
    """A pipeline run dir's ``pipeline.json``; a dir without one (or an unfinished run) is a UserError."""
    manifest = root / PIPELINE_FILE
    if not manifest.is_file():
        raise UserError(f"{root}: not a finished pipeline run dir (no {PIPELINE_FILE}); run `make train-all`")
    try:
        info = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{manifest}: unreadable ({exc})") from None
    if not completed(info):
        raise UserError(f"{root}: the pipeline run did not complete (status {info.get('status')!r})")
    return info


def completed(info: dict[str, Any]) -> bool:
    """Whether a ``pipeline.json`` describes a completed run; older ones carry no status but are written
    only once every stage has finished."""
    return info.get("status", "completed") == "completed" and bool(info.get("artifacts"))


def finished_at(manifest: Path, info: dict[str, Any]) -> float:
    """When the run finished (POSIX seconds): ``finished_at`` (ISO 8601) as recorded, else, for run dirs
    written before it was recorded, the manifest's modification time."""
    stamp = info.get("finished_at")
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp).timestamp()
        except ValueError:
            pass
    return manifest.stat().st_mtime


def _in_progress_or_failed(root: Path) -> bool:
    """Whether the run dir's ``status.json`` (train-all's task wrapper) says a rerun is going on or failed:
    its stages may no longer match the pipeline.json of the run before."""
    try:
        return json.loads((root / "status.json").read_text()).get("state") in ("running", "failed")
    except (OSError, json.JSONDecodeError, AttributeError):
        return False


def latest_pipeline(base: Path | None = None) -> tuple[Path, float]:
    """(run dir, finish time) of the newest completed pipeline run under ``base``."""
    base = base or pipelines_root()
    runs = []
    for manifest in base.glob(f"*/{PIPELINE_FILE}"):
        try:
            info = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a run dir being written, or a broken one: not a candidate
        if completed(info) and not _in_progress_or_failed(manifest.parent):
            runs.append((finished_at(manifest, info), manifest.parent))
    if not runs:
        raise UserError(
            f"no completed pipeline run under {base}: "
            "run `make train-all` or give --pipeline-dir/--checkpoint"
        )
    when, root = max(runs)
    return root, when


def latest_pipeline_dir(root: Path | None = None) -> Path:
    """The newest completed pipeline run dir under ``root`` (default: ``outputs/pipeline``)."""
    return latest_pipeline(root)[0]
