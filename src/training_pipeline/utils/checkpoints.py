"""Reading Lightning checkpoints without running their pickle.

Every checkpoint is read with ``torch.load(..., weights_only=True)``: torch's restricted unpickler accepts
tensors and plain containers (what this project's checkpoints hold: the hyperparameters are plain dicts) and
refuses any other global *before* calling it, so a crafted ``.ckpt`` whose pickle calls ``os.system`` is an
error, not a command. Checkpoints are for resuming training and evaluating runs; deployment uses model
packages (safetensors + JSON, ``training_pipeline.deploy``).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from training_pipeline.errors import DataError

REFUSED = "refused: its pickle asks for more than tensors and plain data (checkpoints load weights_only)"


def checkpoint_error(path: Path, exc: BaseException) -> DataError:
    """The one-line error for a checkpoint ``path`` that failed to load with ``exc``."""
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in str(exc).lower():
        return DataError(f"{path}: {REFUSED}")
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return DataError(f"{path}: cannot load checkpoint ({type(exc).__name__}: {first})")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at ``path`` (weights_only); a one-line DataError when missing, corrupted or
    asking to unpickle arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, not a checkpoint, a refused global
        raise checkpoint_error(path, exc) from None
    if not isinstance(ckpt, dict):
        raise DataError(f"{path}: not a Lightning checkpoint (a {type(ckpt).__name__})")
    return ckpt
