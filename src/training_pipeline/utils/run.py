"""Run-dir bookkeeping: provenance, status, final metrics, and one-line errors for the user."""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import subprocess
import sys
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from training_pipeline.errors import UserError
from training_pipeline.utils.rich_tree import config_tree_text

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # a git checkout when installed editable (provenance)
TRACKED_PACKAGES = (
    "torch",
    "lightning",
    "torchmetrics",
    "hydra-core",
    "omegaconf",
    "hydra-optuna-sweeper",
    "optuna",
    "datasets",
    "transformers",
    "tokenizers",
    "numpy",
    "tensorboard",
)


def git_state(root: Path = PACKAGE_DIR) -> dict[str, Any]:
    """Commit hash of the code and whether its work tree has uncommitted changes (None when the package is
    not inside a git checkout, e.g. installed from a wheel)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    return versions


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename) so a reader never sees half a file. The temp file is the
    process's own: DDP ranks write one run dir's status.json at once, and a shared temp name lets one rank
    rename the other's file away."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)


def write_provenance(cfg: DictConfig, output_dir: Path, data_version: str | None = None) -> None:
    """Resolved config, config tree, git state, command line, package versions and data version."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    (output_dir / "config_tree.txt").write_text(config_tree_text(cfg))
    write_json(
        output_dir / "provenance.json",
        {
            "command": [sys.executable, *sys.argv],
            "cwd": os.getcwd(),
            "git": git_state(),
            "packages": package_versions(),
            "platform": platform.platform(),
            "data_version": data_version,
        },
    )


def set_status(output_dir: Path, state: str, message: str | None = None) -> None:
    """``status.json``: running, completed or failed (a failed run dir never looks complete)."""
    write_json(output_dir / "status.json", {"state": state, "message": message})


def one_line(exc: BaseException) -> str:
    """The exception's message folded onto one line (Hydra and OmegaConf spread theirs over several)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return " | ".join(lines) if lines else type(exc).__name__


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that are the user's input, shown as one line without a traceback."""
    return (
        UserError,
        HydraException,
        OmegaConfBaseException,
        FileNotFoundError,
    )


def task_wrapper(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Marks the run dir failed on any error, and turns input errors into one line and exit code 2."""

    @functools.wraps(task)
    def wrapped(cfg: DictConfig) -> Any:
        output_dir = Path(cfg.paths.output_dir)
        set_status(output_dir, "running")
        try:
            result = task(cfg)
        except user_errors() as exc:
            msg = one_line(exc)
            set_status(output_dir, "failed", msg)
            _exit_with(f"error: {msg}", 2)
        except KeyboardInterrupt:
            set_status(output_dir, "failed", "interrupted")
            raise
        except Exception as exc:
            set_status(output_dir, "failed", f"{type(exc).__name__}: {one_line(exc)}")
            log.exception("Run failed; its dir is %s", output_dir)
            raise
        set_status(output_dir, "completed")
        log.info("Output dir: %s", output_dir)
        return result

    return wrapped


def _exit_with(message: str, code: int) -> None:
    """Print one line to stderr and exit; the run dir keeps status 'failed'."""
    print(message, file=sys.stderr, flush=True)
    raise SystemExit(code)


def quiet_known_warnings() -> None:
    """Known-harmless warnings from our dependencies (see STACK-NOTES.md)."""
    for pattern in (
        ".*LeafSpec.*",
        ".*does not have many workers.*",
        ".*torch.cuda.amp.*",
        ".*on_epoch=True.*sync_dist.*",
        ".*Checkpoint directory.*exists and is not empty.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)
