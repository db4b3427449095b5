"""Instantiate the keyed groups of the config (callbacks, loggers) into lists."""

from __future__ import annotations

import logging

from hydra.utils import instantiate
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def _instantiate_keyed(cfg: DictConfig | None, kind: str) -> list:
    objects: list = []
    if not cfg:
        return objects
    for sub in cfg.values():
        if isinstance(sub, DictConfig) and "_target_" in sub:
            log.info("Instantiating %s <%s>", kind, sub._target_)
            objects.append(instantiate(sub))
    return objects


def instantiate_callbacks(cfg: DictConfig | None, progress_bar: bool = True) -> list[Callback]:
    """Callbacks from the ``callbacks`` group (one key per callback, so several combine).

    With ``progress_bar=False`` (``trainer.enable_progress_bar=false``) progress-bar callbacks are left out
    instead of making the Trainer refuse the combination.
    """
    callbacks = _instantiate_keyed(cfg, "callback")
    return [cb for cb in callbacks if progress_bar or not isinstance(cb, ProgressBar)]


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    """Loggers from the ``logger`` group (TensorBoard by default; ``logger=many`` adds CSV)."""
    return _instantiate_keyed(cfg, "logger")
