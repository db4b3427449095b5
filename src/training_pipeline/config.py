"""Where the configs are and how they are composed, inside or outside a checkout.

The Hydra config tree ships inside the package (``training_pipeline/conf``; the checkout's top-level
``conf/`` is a link to it), so an installed package finds its configs without knowing where a checkout is.
Paths in the configs (``conf/paths/default.yaml``) start from ``${project_root:}``: the ``PROJECT_ROOT``
environment variable when set, else the current working directory. Outputs and data therefore land where
the user runs the command.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf, open_dict

CONF_DIR = Path(str(resources.files("training_pipeline") / "conf"))


def project_root() -> Path:
    """``PROJECT_ROOT`` if set, else the current working directory: the root of ``outputs/`` and ``data/``."""
    return Path(os.environ.get("PROJECT_ROOT") or os.getcwd()).resolve()


def _mkdir(path: str) -> str:
    Path(path).mkdir(parents=True, exist_ok=True)
    return str(path)


def register_resolvers() -> None:
    """The resolvers the configs use: ``${project_root:}`` and ``${mkdir:path}`` (SQLite, Optuna's storage,
    will not create its folder). Idempotent; run on import so every process that composes has them."""
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(project_root()))
    if not OmegaConf.has_resolver("mkdir"):
        OmegaConf.register_new_resolver("mkdir", _mkdir)


register_resolvers()


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


def compose_config(config_name: str, overrides: Sequence[str] = (), **kwargs: Any) -> DictConfig:
    """``conf/<config_name>`` with ``overrides``, composed inside a running Hydra app (``train_all``: the
    global Hydra is initialized) or outside one (the Python API, tests: a temporary initialization)."""
    if GlobalHydra.instance().is_initialized():
        return compose(config_name=config_name, overrides=list(overrides), **kwargs)
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose(config_name=config_name, overrides=list(overrides), **kwargs)


def compose_task(
    config_name: str,
    overrides: Sequence[str],
    output_dir: str | Path,
    log_dir: str | Path | None = None,
) -> DictConfig:
    """A task config (``train.yaml``, ``eval.yaml``) whose outputs go to ``output_dir`` (created): the
    ``${hydra:...}`` paths are replaced by explicit ones, so the result never depends on Hydra's runtime."""
    cfg = compose_config(config_name, overrides)
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.work_dir = str(Path.cwd())
        cfg.paths.log_dir = str(Path(log_dir).resolve() if log_dir else output_dir.parent / "logs")
    return cfg
