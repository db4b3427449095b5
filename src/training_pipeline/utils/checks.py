"""Fail-fast checks run before any training starts."""

from __future__ import annotations

import difflib

from lightning.pytorch import LightningModule
from omegaconf import DictConfig

from training_pipeline.errors import ConfigError


def config_dataclass(cls: type, values: dict | None, where: str):
    """Build a config dataclass from a config block; a misspelled key is a one-line ConfigError naming it."""
    try:
        return cls(**dict(values or {}))
    except TypeError as exc:  # an unexpected keyword argument
        raise ConfigError(f"{where}: {exc}".replace(".__init__()", ":")) from None


def check_metric_names(cfg: DictConfig, model: LightningModule) -> None:
    """``optimized_metric`` and every callback's ``monitor`` must be a metric the model logs."""
    known = model.logged_metric_names() if hasattr(model, "logged_metric_names") else None
    if known is None:
        return
    wanted = {"optimized_metric": cfg.get("optimized_metric")}
    for name, cb in (cfg.get("callbacks") or {}).items():
        if isinstance(cb, DictConfig) and cb.get("monitor"):
            wanted[f"callbacks.{name}.monitor"] = cb.monitor
    for key, metric in wanted.items():
        if metric is not None and metric not in known:
            close = difflib.get_close_matches(str(metric), sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; logged: {', '.join(sorted(known))}"
            raise ConfigError(f"{key}={metric!r} is never logged by {type(model).__name__}{hint}")


def check_known_keys(cfg: DictConfig, allowed: set[str], where: str) -> None:
    """Top-level keys must be known: a misspelled key in an experiment file is an error, not ignored."""
    unknown = sorted(set(cfg.keys()) - allowed - {"hydra"})
    if unknown:
        hints = {k: difflib.get_close_matches(k, sorted(allowed), n=1) for k in unknown}
        text = ", ".join(f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in hints.items())
        raise ConfigError(f"{where}: unknown top-level key(s) {text}")
