"""Loading a LightningModule from a Lightning checkpoint: the one place eval, scan and the API do it.

Checkpoints are for resuming training and for evaluating a run; a missing or corrupted file is a one-line
``DataError`` naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.utils import get_class
from lightning.pytorch import LightningModule

from training_pipeline.errors import DataError


def load_checkpoint(model_target: str | type[LightningModule], ckpt_path: str | Path) -> Any:
    """``model_target`` (a class or its dotted path) restored from ``ckpt_path``, in eval mode."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint (ckpt_path)")
    cls = get_class(model_target) if isinstance(model_target, str) else model_target
    try:
        # weights_only=False: the hyperparameters hold plain dicts, but Lightning pickles them with the
        # weights; checkpoints are trusted run outputs here (model packages, not checkpoints, are deployed).
        module = cls.load_from_checkpoint(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated zip, wrong model class, not a checkpoint at all
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise DataError(f"{path}: cannot load checkpoint ({type(exc).__name__}: {first})") from None
    return module.eval()
