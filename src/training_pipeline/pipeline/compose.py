"""Compose the task configs (``conf/train.yaml``, ``conf/eval.yaml``) in process, as the entrypoints would.

Works inside a running Hydra app (``scripts/train_all.py``: the global Hydra is already initialized, so the
config is composed with it) and outside one (the Python API, tests: a temporary ``initialize_config_dir``).
The ``${hydra:...}`` paths are replaced by explicit ones: the result never depends on Hydra's runtime state.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from training_pipeline.utils.run import REPO_ROOT, set_project_root

CONF_DIR = REPO_ROOT / "conf"


def override_value(value: Any) -> str:
    """A Python value as Hydra override text (strings quoted, so ``0.8.26`` stays a string)."""
    if isinstance(value, DictConfig) or OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as a Hydra override")


def compose_task(
    config_name: str,
    overrides: Sequence[str],
    output_dir: str | Path,
    log_dir: str | Path | None = None,
) -> DictConfig:
    """``conf/<config_name>`` with ``overrides``; outputs go to ``output_dir`` (created)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    set_project_root()
    overrides = list(overrides)
    if GlobalHydra.instance().is_initialized():
        cfg = compose(config_name=config_name, overrides=overrides)
    else:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            cfg = compose(config_name=config_name, overrides=overrides)
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.work_dir = str(Path.cwd())
        cfg.paths.log_dir = str(Path(log_dir).resolve() if log_dir else output_dir.parent / "logs")
    return cfg
