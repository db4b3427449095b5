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

from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from training_pipeline.metrics.multiclass import (
    THRESHOLD_GRID,
    binary_prf,
    binary_ranking,
    confusion_matrix,
    evaluate_multiclass,
    tune_binary_threshold,
)
from training_pipeline.models.base import OPTIM_KEYS, BaseModule
from training_pipeline.models.nets.sequence import BehaviorNet


class BehaviorModel(BaseModule):
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
        balance_classes: bool = True,
        tx_loss_weight: float = 1.0,
        label_smoothing: float = 0.0,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler)
        self.save_hyperparameters(ignore=OPTIM_KEYS)
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
        self.test_confusion: torch.Tensor | None = None  # drawn by evaluation.callbacks.ConfusionMatrixImage
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

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._shared_step(batch)[0]

    def _rows(
        self, batch: dict[str, torch.Tensor], logits: torch.Tensor, tx_logits: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Per history: probabilities, index (and label); per real transaction: probability, history, step."""
        mask = batch["mask"]
        rows = torch.arange(len(mask), device=mask.device).unsqueeze(1).expand_as(mask)
        steps = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0).expand_as(mask)
        out = {
            "probs": torch.softmax(logits.float(), 1),
            "index": batch["index"],
            "tx_probs": torch.sigmoid(tx_logits.float())[mask],
            "tx_history": batch["index"][rows[mask]],
            "tx_step": steps[mask],
        }
        if "labels" in batch:
            out |= {"labels": batch["labels"], "tx_labels": batch["tx_labels"][mask]}
        return out

    def eval_step(
        self, stage: str, batch: dict[str, torch.Tensor], batch_idx: int
    ) -> dict[str, torch.Tensor]:
        loss, logits, tx_logits = self._shared_step(batch)
        self.log_loss(stage, loss, self.batch_size_of(batch))
        return self._rows(batch, logits, tx_logits)

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
        d = self.gather("val")
        if not d:
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
        d = self.gather("test")
        if not d:
            return
        self.log_dict(self._metrics("test", d, float(self.history_threshold), float(self.tx_threshold)))
        preds = self.decide(d["probs"])
        self.test_confusion = confusion_matrix(preds.cpu(), d["labels"].long().cpu(), len(self.class_names))
        self.test_predictions = {k: v.cpu() for k, v in d.items()} | {"predicted": preds.cpu()}

    def prediction_rows(self, outputs: dict[str, Any], datamodule: Any) -> Iterator[dict[str, Any]]:
        """One record per history: class probabilities, prediction, and the flagged transactions (hashes for
        imported data, positions in the history for simulated data); true ones where labelled."""
        tx_t = float(self.tx_threshold)
        by_history: dict[int, list[int]] = {}
        for k, h in enumerate(outputs["tx_history"].tolist()):
            by_history.setdefault(int(h), []).append(k)
        labels, tx_labels = outputs.get("labels"), outputs.get("tx_labels")
        for row, idx in enumerate(outputs["index"].tolist()):
            refs = datamodule.tx_refs(idx)
            steps = by_history.get(idx, [])
            probs = outputs["probs"][row]
            rec = {"id": datamodule.records[idx]["contract_id"]}
            if labels is not None:
                rec["label"] = self.class_names[int(labels[row])]
            rec |= {
                "predicted": self.class_names[int(outputs["predicted"][row])],
                "anomaly_score": round(1 - float(probs[self.normal_index]), 5)
                if self.normal_index >= 0
                else None,
                "probs": {c: round(float(p), 5) for c, p in zip(self.class_names, probs, strict=True)},
                "flagged_tx": [
                    refs[int(outputs["tx_step"][k])] for k in steps if outputs["tx_probs"][k] >= tx_t
                ],
            }
            if tx_labels is not None:
                rec["true_flagged_tx"] = [
                    refs[int(outputs["tx_step"][k])] for k in steps if tx_labels[k] == 1
                ]
            yield rec

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """The evaluation rows (flattened transactions) and the decided class of each history."""
        logits, tx_logits = self(batch)
        out = self._rows(batch, logits, tx_logits)
        return out | {"predicted": self.decide(out["probs"])}
