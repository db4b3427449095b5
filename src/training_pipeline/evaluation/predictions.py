"""Per-record predictions written beside the metrics, for error analysis: one JSON line per contract (or
history), formatted by the model's ``prediction_rows(outputs, datamodule)``.

``JsonlPredictionWriter`` is a Lightning ``BasePredictionWriter`` for ``trainer.predict``. After a test epoch
(train, eval) ``write_model_predictions`` writes what the model kept from it with the same writer, so the
test split is not run twice; without one (predict) it runs ``trainer.predict`` on the test split.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write ``rows`` as JSON lines, atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    tmp.replace(path)
    return path


def concat_outputs(batches: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-batch output dicts joined into one: tensors concatenated (on the CPU), lists chained."""
    if not batches:
        return {}
    out: dict[str, Any] = {}
    for key, first in batches[0].items():
        if torch.is_tensor(first):
            out[key] = torch.cat([b[key].detach().cpu() for b in batches])
        elif isinstance(first, list):
            out[key] = [x for b in batches for x in b[key]]
    return out


class JsonlPredictionWriter(BasePredictionWriter):
    """Writes ``trainer.predict`` outputs to ``path`` as JSON lines keyed by the datamodule's record ids."""

    def __init__(self, path: str | Path, datamodule: Any = None) -> None:
        super().__init__(write_interval="epoch")
        self.path, self.datamodule = Path(path), datamodule

    def write(self, model: LightningModule, outputs: dict[str, Any], datamodule: Any = None) -> Path:
        """Write ``outputs`` (one dict, rows concatenated) with ``model.prediction_rows``."""
        return write_jsonl(self.path, model.prediction_rows(outputs, datamodule or self.datamodule))

    def write_on_epoch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        predictions: Sequence[Any],
        batch_indices: Sequence[Any],
    ) -> None:
        if predictions and isinstance(predictions[0], list):  # several dataloaders: one list each
            predictions = [p for per_loader in predictions for p in per_loader]
        if trainer.is_global_zero:
            self.write(pl_module, concat_outputs(predictions), self.datamodule or trainer.datamodule)


def write_model_predictions(path: str | Path, model: LightningModule, datamodule: Any) -> Path | None:
    """Write ``model``'s predictions on the datamodule's test split, keyed by its record ids: those of the
    model's last test epoch, else a ``trainer.predict`` run. None for a model without per-record output
    (the masked-LM stage) or an empty split."""
    if not hasattr(model, "prediction_rows"):
        return None
    writer = JsonlPredictionWriter(path, datamodule)
    preds = getattr(model, "test_predictions", None)
    if preds:
        return writer.write(model, preds)
    predictor = Trainer(
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[writer],
    )
    predictor.predict(model, dataloaders=datamodule.test_dataloader(), return_predictions=False)
    return writer.path if writer.path.exists() else None
