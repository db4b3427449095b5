"""Loading a LightningModule from a Lightning checkpoint: the one place eval, scan and the API do it.

Checkpoints are for resuming training and for evaluating a run; they are read with ``weights_only=True``
(``utils.checkpoints``), so a pickle that asks for anything but tensors and plain data is refused before it
runs. A missing, corrupted or refused file is a one-line ``DataError`` naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.utils import get_class
from lightning.pytorch import LightningModule

from training_pipeline.errors import DataError
from training_pipeline.utils.checkpoints import checkpoint_error


def load_checkpoint(model_target: str | type[LightningModule], ckpt_path: str | Path) -> Any:
    """``model_target`` (a class or its dotted path) restored from ``ckpt_path``, in eval mode."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint (ckpt_path)")
    cls = get_class(model_target) if isinstance(model_target, str) else model_target
    try:
        module = cls.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, wrong model class, not a checkpoint at all, a refused pickle
        raise checkpoint_error(path, exc) from None
    return module.eval()
