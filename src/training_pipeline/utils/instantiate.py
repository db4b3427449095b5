"""Instantiate the keyed groups of the config (callbacks, loggers) into lists."""

from __future__ import annotations

import logging

from hydra.utils import instantiate
from lightning.pytorch import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def _instantiate_keyed(cfg: DictConfig | None, kind: str) -> list:
    objects: list = []
    if not cfg:
        return objects
    for name, sub in cfg.items():
        if isinstance(sub, DictConfig) and "_target_" in sub:
            log.info("Instantiating %s <%s>", kind, sub._target_)
            objects.append(instantiate(sub))
    return objects


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    """Callbacks from the ``callbacks`` group (one key per callback, so several combine)."""
    return _instantiate_keyed(cfg, "callback")


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    """Loggers from the ``logger`` group (TensorBoard by default; ``logger=many`` adds CSV)."""
    return _instantiate_keyed(cfg, "logger")
