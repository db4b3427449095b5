"""The behavior model: a contract's transaction history → its anomaly class, and the transactions responsible.

A sequence encoder (GRU, LSTM or transformer: ``model.encoder``) over per-transaction features feeds two
heads: the history's class (``normal`` or an anomaly type, softmax, class-weighted cross-entropy) and an
anomaly logit per transaction (BCE with ``pos_weight``, padded and unlabelled steps masked out). Decisions
use two thresholds tuned on validation each epoch and saved in the checkpoint: a history is anomalous when
1 - p(normal) reaches ``history_threshold`` (then its most likely anomaly type is predicted), a transaction
is flagged when its probability reaches ``tx_threshold``. The checkpoint also holds the label map and the
feature normalizer's statistics, so ``BehaviorModel.load_from_checkpoint(path)`` is all inference needs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule

from training_pipeline.metrics.multiclass import (
    THRESHOLD_GRID,
    binary_prf,
    binary_ranking,
    confusion_image,
    confusion_markdown,
    confusion_matrix,
    evaluate_multiclass,
    tune_binary_threshold,
)
from training_pipeline.models.nets.sequence import BehaviorNet

SCHEDULERS = ("cosine", "none")


class BehaviorModel(LightningModule):
    """History classification and per-transaction anomaly flags from a transaction sequence."""

    def __init__(
        self,
        class_names: list[str],
        feature_names: list[str],
        n_methods: int,
        n_roles: int,
        class_weights: list[float] | None = None,
        tx_pos_weight: float = 1.0,
        normalizer_state: dict[str, Any] | None = None,
        encoder: str = "gru",
        d_model: int = 64,
        hidden: int = 64,
        layers: int = 1,
        bidirectional: bool = True,
        heads: int = 4,
        dropout: float = 0.1,
        lr: float = 2e-3,
        weight_decay: float = 0.01,
        scheduler: str = "cosine",
        balance_classes: bool = True,
        tx_loss_weight: float = 1.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if scheduler not in SCHEDULERS:
            raise ValueError(f"model.scheduler={scheduler!r}: expected one of {SCHEDULERS}")
        self.save_hyperparameters()
        self.class_names = list(class_names)
        self.metric_classes = list(class_names)  # the report's rows
        self.normal_index = self.class_names.index("normal") if "normal" in self.class_names else -1
        self.net = BehaviorNet(
            len(feature_names),
            n_methods,
            n_roles,
            len(class_names),
            encoder,
            d_model,
            hidden,
            layers,
            bidirectional,
            heads,
            dropout,
        )
        weights = class_weights if (class_weights and balance_classes) else [1.0] * len(class_names)
        self.register_buffer("class_weight", torch.tensor(weights, dtype=torch.float32))
        self.register_buffer("tx_pos_weight", torch.tensor(float(tx_pos_weight)))
        self.register_buffer("history_threshold", torch.tensor(0.5))
        self.register_buffer("tx_threshold", torch.tensor(0.5))
        self._outputs: dict[str, list[dict[str, torch.Tensor]]] = {}
        self.test_predictions: dict[str, Any] = {}

    @staticmethod
    def logged_metric_names() -> set[str]:
        scalars = (
            "loss",
            "f1_macro",
            "accuracy",
            "precision_macro",
            "recall_macro",
            "auroc",
            "auprc",
            "tx_f1",
            "tx_precision",
            "tx_recall",
            "tx_auprc",
        )
        names = {f"{stage}/{m}" for stage in ("val", "test") for m in scalars}
        return names | {"train/loss", "val/f1_macro_tuned", "val/tx_f1_tuned"}

    # -- forward ------------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(history logits (B, C), per-transaction logits (B, T))."""
        return self.net(batch["numeric"], batch["method"], batch["role"], batch["mask"])

    def decide(self, probs: torch.Tensor, threshold: float | torch.Tensor | None = None) -> torch.Tensor:
        """The likeliest anomaly type where 1 - p(normal) reaches the threshold, else normal."""
        if self.normal_index < 0:
            return probs.argmax(1)
        t = self.history_threshold if threshold is None else threshold
        anomalous = probs.clone()
        anomalous[:, self.normal_index] = -1.0
        score = 1 - probs[:, self.normal_index]
        return torch.where(score >= t, anomalous.argmax(1), torch.full_like(score, self.normal_index).long())

    def _shared_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, tx_logits = self(batch)
        loss = F.cross_entropy(
            logits, batch["labels"], weight=self.class_weight, label_smoothing=self.hparams.label_smoothing
        )
        known = batch["mask"] & (batch["tx_labels"] >= 0)
        if known.any():
            tx_loss = F.binary_cross_entropy_with_logits(
                tx_logits[known], batch["tx_labels"][known], pos_weight=self.tx_pos_weight
            )
            loss = loss + self.hparams.tx_loss_weight * tx_loss
        return loss, logits, tx_logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _, _ = self._shared_step(batch)
        self.log(
            "train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["labels"])
        )
        return loss

    def _eval_step(self, stage: str, batch: dict[str, torch.Tensor]) -> None:
        loss, logits, tx_logits = self._shared_step(batch)
        n = len(batch["labels"])
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=stage == "val", sync_dist=True, batch_size=n)
        mask = batch["mask"]
        rows = torch.arange(n, device=mask.device).unsqueeze(1).expand_as(mask)
        steps = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0).expand_as(mask)
        self._outputs.setdefault(stage, []).append(
            {
                "probs": torch.softmax(logits.float(), 1),
                "labels": batch["labels"],
                "index": batch["index"],
                "tx_probs": torch.sigmoid(tx_logits.float())[mask],
                "tx_labels": batch["tx_labels"][mask],
                "tx_history": batch["index"][rows[mask]],
                "tx_step": steps[mask],
            }
        )

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def _gather(self, stage: str) -> dict[str, torch.Tensor]:
        outs = self._outputs.pop(stage, [])
        keys = ("probs", "labels", "index", "tx_probs", "tx_labels", "tx_history", "tx_step")
        if not outs:
            c = len(self.class_names)
            empty = {k: torch.zeros(0, device=self.device) for k in keys}
            return {**empty, "probs": torch.zeros(0, c, device=self.device)}
        data = {k: torch.cat([o[k] for o in outs]) for k in keys}
        if self.trainer.world_size > 1:
            data = {k: self._all_gather_rows(v) for k, v in data.items()}
        return data

    def _all_gather_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate a tensor of any length over ranks (padded to the longest for all_gather)."""
        sizes = self.all_gather(torch.tensor([len(x)], device=x.device)).flatten()
        longest = int(sizes.max())
        padded = torch.zeros((longest, *x.shape[1:]), dtype=x.dtype, device=x.device)
        padded[: len(x)] = x
        gathered = self.all_gather(padded)
        return torch.cat([gathered[r, : int(s)] for r, s in enumerate(sizes)])

    def _metrics(
        self, stage: str, d: dict[str, torch.Tensor], hist_t: float, tx_t: float
    ) -> dict[str, float]:
        labels = d["labels"].long()
        values = evaluate_multiclass(stage, self.decide(d["probs"], hist_t), labels, self.class_names)
        if self.normal_index >= 0:
            score = 1 - d["probs"][:, self.normal_index]
            values[f"{stage}/auroc"], values[f"{stage}/auprc"] = binary_ranking(
                score, labels != self.normal_index
            )
        known = d["tx_labels"] >= 0
        p, r, f1 = binary_prf(d["tx_probs"][known], d["tx_labels"][known], tx_t)
        values.update({f"{stage}/tx_precision": p, f"{stage}/tx_recall": r, f"{stage}/tx_f1": f1})
        values[f"{stage}/tx_auprc"] = binary_ranking(d["tx_probs"][known], d["tx_labels"][known])[1]
        return values

    def _tune_history_threshold(self, probs: torch.Tensor, labels: torch.Tensor) -> float:
        """The grid threshold on 1 - p(normal) with the best macro-F1."""
        best, best_f1 = 0.5, -1.0
        for t in THRESHOLD_GRID.tolist():
            f1 = evaluate_multiclass("v", self.decide(probs, t), labels, self.class_names)["v/f1_macro"]
            if f1 > best_f1 + 1e-9:
                best, best_f1 = t, f1
        return best

    def on_validation_epoch_end(self) -> None:
        d = self._gather("val")
        if not len(d["labels"]):
            return
        values = self._metrics("val", d, 0.5, 0.5)
        hist_t = self._tune_history_threshold(d["probs"], d["labels"].long())
        known = d["tx_labels"] >= 0
        tx_t = tune_binary_threshold(d["tx_probs"][known], d["tx_labels"][known])
        tuned = self._metrics("val", d, hist_t, tx_t)
        values["val/f1_macro_tuned"], values["val/tx_f1_tuned"] = tuned["val/f1_macro"], tuned["val/tx_f1"]
        if not self.trainer.sanity_checking:
            self.history_threshold.fill_(hist_t)  # saved with the checkpoint taken after this epoch
            self.tx_threshold.fill_(tx_t)
        self.log("val/f1_macro", values.pop("val/f1_macro"), prog_bar=True)
        self.log_dict(values)

    def on_test_epoch_end(self) -> None:
        d = self._gather("test")
        values = self._metrics("test", d, float(self.history_threshold), float(self.tx_threshold))
        self.log_dict(values)
        preds = self.decide(d["probs"]) if len(d["probs"]) else d["labels"].long()
        cm = confusion_matrix(preds.cpu(), d["labels"].long().cpu(), len(self.class_names))
        self._log_confusion(cm)
        self.test_predictions = {k: v.cpu() for k, v in d.items()} | {
            "predicted": preds.cpu(),
            "confusion": cm,
        }

    def _log_confusion(self, cm: torch.Tensor) -> None:
        """The test confusion matrix as an image (and a table with class names) in TensorBoard."""
        from lightning.pytorch.loggers import TensorBoardLogger

        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                exp = logger.experiment
                exp.add_image(
                    "test/confusion_matrix", confusion_image(cm), self.global_step, dataformats="HWC"
                )
                exp.add_text("test/confusion_matrix_classes", confusion_markdown(cm, self.class_names))

    def write_test_predictions(self, path: str | Path, datamodule) -> Path | None:
        """One JSON line per tested history: class probabilities, prediction, and the flagged transactions
        (hashes for imported data, positions in the history for simulated data)."""
        d = self.test_predictions
        if not d:
            return None
        path = Path(path)
        tx_t = float(self.tx_threshold)
        by_history: dict[int, list[int]] = {}
        for k, h in enumerate(d["tx_history"].tolist()):
            by_history.setdefault(int(h), []).append(k)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w") as fh:
            for row, idx in enumerate(d["index"].tolist()):
                refs = datamodule.tx_refs(idx)
                steps = by_history.get(idx, [])
                probs = d["probs"][row]
                rec = {
                    "id": datamodule.records[idx]["contract_id"],
                    "label": self.class_names[int(d["labels"][row])],
                    "predicted": self.class_names[int(d["predicted"][row])],
                    "anomaly_score": round(1 - float(probs[self.normal_index]), 5)
                    if self.normal_index >= 0
                    else None,
                    "probs": {c: round(float(p), 5) for c, p in zip(self.class_names, probs, strict=True)},
                    "flagged_tx": [refs[int(d["tx_step"][k])] for k in steps if d["tx_probs"][k] >= tx_t],
                    "true_flagged_tx": [refs[int(d["tx_step"][k])] for k in steps if d["tx_labels"][k] == 1],
                }
                fh.write(json.dumps(rec) + "\n")
        tmp.replace(path)
        return path

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        logits, tx_logits = self(batch)
        probs = torch.softmax(logits, 1)
        tx_probs = torch.sigmoid(tx_logits) * batch["mask"]
        return {
            "probs": probs,
            "predicted": self.decide(probs),
            "tx_probs": tx_probs,
            "tx_flagged": (tx_probs >= self.tx_threshold) & batch["mask"],
            "index": batch["index"],
        }

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.scheduler == "none" or self.trainer is None:
            return opt
        epochs = max(int(self.trainer.max_epochs or 1), 1)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=self.hparams.lr * 0.05)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
