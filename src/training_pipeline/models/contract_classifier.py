"""What every contract classifier shares: label maps, loss, per-class thresholds tuned on val, metrics.

A subclass builds its network and heads, calls ``init_labels`` in ``__init__``, and implements
``_logits(batch) -> (vulnerability logits, family logits)`` (one row per contract). The bytecode detector
and the code analyzer are such subclasses, so they log the same metric names.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torchmetrics.classification import MulticlassAccuracy

from training_pipeline.metrics.classification import evaluate_multilabel, tune_thresholds
from training_pipeline.models.losses import multilabel_loss

LOSSES = ("bce", "focal")
SCALAR_METRICS = (
    "f1_macro",
    "f1_micro",
    "precision_macro",
    "recall_macro",
    "auroc",
    "auprc",
    "family_acc",
    "loss",
)


class ContractClassifier(LightningModule):
    """Multi-label vulnerability head + family head; thresholds and label maps travel in the checkpoint."""

    def init_labels(
        self,
        class_names: list[str],
        family_names: list[str],
        pos_weight: list[float] | None,
        metric_classes: list[str] | None,
    ) -> None:
        self.class_names = list(class_names)
        self.register_buffer("pos_weight", torch.tensor(pos_weight or [1.0] * len(class_names)))
        self.register_buffer("thresholds", torch.full((len(class_names),), 0.5))
        self.metric_classes = [c for c in class_names if c in set(metric_classes or class_names)]
        if len(self.metric_classes) < 2:  # torchmetrics' multilabel metrics need two labels or more
            self.metric_classes = list(class_names)
        self.register_buffer(
            "metric_index",
            torch.tensor([class_names.index(c) for c in self.metric_classes]),
            persistent=False,
        )
        self.val_family_acc = MulticlassAccuracy(len(family_names), ignore_index=-100)
        self.test_family_acc = MulticlassAccuracy(len(family_names), ignore_index=-100)
        self._outputs: dict[str, list[torch.Tensor]] = {}
        self._family_seen: dict[str, int] = {}
        self.test_predictions: dict[str, Any] = {}

    # -- names the module logs (checked against optimized_metric before training) ---------------------
    @staticmethod
    def logged_metric_names() -> set[str]:
        names = {f"{stage}/{m}" for stage in ("val", "test") for m in SCALAR_METRICS}
        return names | {"train/loss", "val/f1_macro_tuned"}

    # -- steps ----------------------------------------------------------------------------------------------
    def _logits(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _loss(
        self, vuln_logits: torch.Tensor, fam_logits: torch.Tensor, batch: dict[str, Any]
    ) -> torch.Tensor:
        loss = multilabel_loss(
            vuln_logits, batch["labels"], self.pos_weight, self.hparams.loss, self.hparams.focal_gamma
        )
        if (batch["family"] >= 0).any() and self.hparams.family_loss_weight > 0:
            loss = loss + self.hparams.family_loss_weight * F.cross_entropy(
                fam_logits, batch["family"], ignore_index=-100
            )
        return loss

    def _shared_step(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, vulnerability logits, family logits)."""
        vuln_logits, fam_logits = self._logits(batch)
        return self._loss(vuln_logits, fam_logits, batch), vuln_logits, fam_logits

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss, _, _ = self._shared_step(batch)
        n = len(batch["labels"])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        return loss

    def _eval_step(self, stage: str, batch: dict[str, Any], logits=None) -> None:
        vuln_logits, fam_logits = logits if logits is not None else self._logits(batch)
        loss = self._loss(vuln_logits, fam_logits, batch)
        n = len(batch["labels"])
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=stage == "val", sync_dist=True, batch_size=n)
        (self.val_family_acc if stage == "val" else self.test_family_acc).update(fam_logits, batch["family"])
        self._family_seen[stage] = self._family_seen.get(stage, 0) + int((batch["family"] >= 0).sum())
        rows = [torch.sigmoid(vuln_logits.float()), batch["labels"].float(), batch["index"].float()[:, None]]
        self._outputs.setdefault(stage, []).append(torch.cat(rows, dim=1))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        probs = torch.sigmoid(self._logits(batch)[0])
        return {"probs": probs, "predicted": probs >= self.thresholds, "index": batch["index"]}

    # -- epoch ends -----------------------------------------------------------------------------------------
    def _gather(self, stage: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = torch.cat(
            self._outputs.pop(stage, [])
            or [torch.zeros(0, 2 * len(self.class_names) + 1, device=self.device)]
        )
        if self.trainer.world_size > 1:
            rows = self.all_gather(rows).flatten(0, 1)
        c = len(self.class_names)
        return rows[:, :c], rows[:, c : 2 * c], rows[:, 2 * c].long()

    def _epoch_metrics(
        self, stage: str, probs: torch.Tensor, targets: torch.Tensor, thresholds: torch.Tensor
    ) -> dict[str, float]:
        candidates = self.metric_index.tolist()
        return evaluate_multilabel(stage, probs, targets, thresholds, self.class_names, candidates)

    def _family_metric(self, stage: str, metric: MulticlassAccuracy) -> dict[str, float]:
        """Family accuracy, only when the split has family labels (imported data has none)."""
        seen = self._family_seen.pop(stage, 0)
        value = float(metric.compute()) if seen else None
        metric.reset()
        return {} if value is None else {f"{stage}/family_acc": value}

    def on_validation_epoch_end(self) -> None:
        probs, targets, _ = self._gather("val")
        if not len(probs):
            return
        values = self._epoch_metrics("val", probs, targets, torch.full_like(self.thresholds, 0.5))
        tuned = tune_thresholds(probs, targets)
        values["val/f1_macro_tuned"] = self._epoch_metrics("val", probs, targets, tuned)["val/f1_macro"]
        values.update(self._family_metric("val", self.val_family_acc))
        if not self.trainer.sanity_checking:
            self.thresholds.copy_(tuned)  # saved with the checkpoint taken after this epoch
        self.log("val/f1_macro", values.pop("val/f1_macro"), prog_bar=True)
        self.log_dict(values)

    def test_epoch_values(self) -> dict[str, float]:
        """Test metrics at the tuned thresholds; keeps ``test_predictions`` for the predictions file."""
        probs, targets, index = self._gather("test")
        values = self._epoch_metrics("test", probs, targets, self.thresholds)
        values.update(self._family_metric("test", self.test_family_acc))
        self.test_predictions = {"probs": probs.cpu(), "targets": targets.cpu(), "index": index.cpu()}
        return values

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_epoch_values())
