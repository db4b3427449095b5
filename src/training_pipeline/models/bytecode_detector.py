"""The bytecode detector: multi-label vulnerability classes and contract family from EVM runtime bytecode."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from training_pipeline.evaluation.metrics import evaluate_multilabel, tune_thresholds
from training_pipeline.models.losses import multilabel_loss
from training_pipeline.models.nets.cnn import BytecodeCNN

SCHEDULERS = ("cosine", "none")


class BytecodeDetector(LightningModule):
    """A dilated residual CNN over opcode ids with two heads: vulnerability logits (sigmoid) and family.

    Everything needed to predict (dimensions, label maps, tokenizer state, tuned per-class thresholds) is
    stored in the checkpoint, so ``BytecodeDetector.load_from_checkpoint(path)`` needs no config.
    """

    def __init__(
        self,
        vocab_size: int,
        class_names: list[str],
        family_names: list[str],
        pos_weight: list[float] | None = None,
        metric_classes: list[str] | None = None,
        tokenizer_state: dict[str, Any] | None = None,
        embed_dim: int = 32,
        channels: int = 96,
        depth: int = 4,
        kernel_size: int = 5,
        dilation_base: int = 2,
        dropout: float = 0.1,
        downsample: int = 4,
        lr: float = 2e-3,
        weight_decay: float = 0.01,
        scheduler: str = "cosine",
        loss: str = "bce",
        focal_gamma: float = 2.0,
        family_loss_weight: float = 0.3,
    ) -> None:
        super().__init__()
        if scheduler not in SCHEDULERS:
            raise ValueError(f"model.scheduler={scheduler!r}: expected one of {SCHEDULERS}")
        if loss not in ("bce", "focal"):
            raise ValueError(f"model.loss={loss!r}: expected 'bce' or 'focal'")
        self.save_hyperparameters()
        self.class_names = list(class_names)
        self.net = BytecodeCNN(
            vocab_size, embed_dim, channels, depth, kernel_size, dilation_base, dropout, downsample
        )
        self.dropout = nn.Dropout(dropout)
        self.vuln_head = nn.Linear(self.net.out_dim, len(class_names))
        self.family_head = nn.Linear(self.net.out_dim, len(family_names))
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
        self.test_predictions: dict[str, torch.Tensor] = {}

    # -- names the module logs (checked against optimized_metric before training) ---------------------
    @staticmethod
    def logged_metric_names() -> set[str]:
        scalars = (
            "f1_macro",
            "f1_micro",
            "precision_macro",
            "recall_macro",
            "auroc",
            "auprc",
            "family_acc",
            "loss",
        )
        names = {f"{stage}/{m}" for stage in ("val", "test") for m in scalars}
        return names | {"train/loss", "val/f1_macro_tuned"}

    # -- forward ------------------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(vulnerability logits, family logits)."""
        h = self.dropout(self.net(input_ids))
        return self.vuln_head(h), self.family_head(h)

    @torch.no_grad()
    def predict_proba(self, input_ids: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self(input_ids)[0])

    def _shared_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        vuln_logits, fam_logits = self(batch["input_ids"])
        loss = multilabel_loss(
            vuln_logits, batch["labels"], self.pos_weight, self.hparams.loss, self.hparams.focal_gamma
        )
        if (batch["family"] >= 0).any():
            loss = loss + self.hparams.family_loss_weight * F.cross_entropy(
                fam_logits, batch["family"], ignore_index=-100
            )
        return loss, vuln_logits, fam_logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _, _ = self._shared_step(batch)
        self.log(
            "train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["labels"])
        )
        return loss

    def _eval_step(self, stage: str, batch: dict[str, torch.Tensor]) -> None:
        loss, vuln_logits, fam_logits = self._shared_step(batch)
        self.log(
            f"{stage}/loss",
            loss,
            on_epoch=True,
            prog_bar=stage == "val",
            sync_dist=True,
            batch_size=len(batch["labels"]),
        )
        (self.val_family_acc if stage == "val" else self.test_family_acc).update(fam_logits, batch["family"])
        out = self._outputs.setdefault(stage, [])
        out.append(
            torch.cat(
                [
                    torch.sigmoid(vuln_logits.float()),
                    batch["labels"].float(),
                    batch["index"].float().unsqueeze(1),
                ],
                dim=1,
            )
        )

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)

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

    def on_validation_epoch_end(self) -> None:
        probs, targets, _ = self._gather("val")
        if not len(probs):
            return
        values = self._epoch_metrics("val", probs, targets, torch.full_like(self.thresholds, 0.5))
        tuned = tune_thresholds(probs, targets)
        values["val/f1_macro_tuned"] = self._epoch_metrics("val", probs, targets, tuned)["val/f1_macro"]
        values["val/family_acc"] = float(self.val_family_acc.compute())
        self.val_family_acc.reset()
        if not self.trainer.sanity_checking:
            self.thresholds.copy_(tuned)  # saved with the checkpoint taken after this epoch
        self.log("val/f1_macro", values.pop("val/f1_macro"), prog_bar=True)
        self.log_dict(values)

    def on_test_epoch_end(self) -> None:
        probs, targets, index = self._gather("test")
        values = self._epoch_metrics("test", probs, targets, self.thresholds)
        values["test/family_acc"] = float(self.test_family_acc.compute())
        self.test_family_acc.reset()
        self.log_dict(values)
        self.test_predictions = {"probs": probs.cpu(), "targets": targets.cpu(), "index": index.cpu()}

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        probs = self.predict_proba(batch["input_ids"])
        return {"probs": probs, "predicted": probs >= self.thresholds, "index": batch["index"]}

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.scheduler == "none" or self.trainer is None:
            return opt
        epochs = max(int(self.trainer.max_epochs or 1), 1)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=self.hparams.lr * 0.05)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
