"""Per-contract predictions written beside the metrics, for error analysis."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch


def write_predictions(
    path: str | Path,
    ids: Sequence[str],
    probs: torch.Tensor,
    thresholds: torch.Tensor,
    class_names: Sequence[str],
    targets: torch.Tensor | None = None,
) -> Path:
    """One JSON line per contract: probabilities, predicted and (when known) true labels."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as fh:
        for row, rid in enumerate(ids):
            p = probs[row]
            rec = {
                "id": rid,
                "probs": {c: round(float(v), 5) for c, v in zip(class_names, p, strict=True)},
                "predicted": [c for c, v, t in zip(class_names, p, thresholds, strict=True) if v >= t],
            }
            if targets is not None:
                rec["labels"] = [c for c, v in zip(class_names, targets[row], strict=True) if v > 0.5]
            fh.write(json.dumps(rec) + "\n")
    tmp.replace(path)
    return path


def write_model_predictions(path: str | Path, model, datamodule) -> Path | None:
    """Write what ``model`` predicted in its last test epoch, keyed by the datamodule's record ids."""
    preds = getattr(model, "test_predictions", None)
    if not preds:
        return None
    if hasattr(model, "write_test_predictions"):  # a model whose predictions are not per-class thresholds
        return model.write_test_predictions(path, datamodule)
    ids = [datamodule.records[i]["id"] for i in preds["index"].tolist()]
    thresholds = model.thresholds.cpu()
    return write_predictions(path, ids, preds["probs"], thresholds, model.class_names, preds["targets"])
