"""What every contract classifier shares: label maps, loss, per-class thresholds tuned on val, metrics.

Partially labelled data (CGT) carries ``label_mask`` in every batch (1 = the class was assessed for that
contract): threshold tuning and every per-class metric use assessed entries only. The loss weighs entries by
``loss_weight`` (default: the mask), where training batches also carry weak labels and per-source weights;
val and test batches' loss weights are their masks, so nothing but human labels is ever scored.

A subclass builds its network and heads, calls ``init_labels`` in ``__init__``, and implements
``_logits(batch) -> (vulnerability logits, family logits)`` (one row per contract). The bytecode detector
and the code analyzer are such subclasses, so they log the same metric names.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from training_pipeline.data.contracts import era_code
from training_pipeline.errors import ConfigError
from training_pipeline.metrics.classification import (
    cap_flags,
    class_flag_budgets,
    era_groups,
    evaluate_multilabel,
    tune_era_thresholds,
    tune_thresholds,
)
from training_pipeline.models.base import BaseModule
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


def check_threshold_eras(eras: Sequence[Any] | None) -> list[int]:
    """``model.threshold_eras`` (``["0.5"]``) as ascending ``era_code`` values; a ConfigError naming it."""
    if not eras:
        return []
    listed = isinstance(eras, Sequence) and not isinstance(eras, str)
    codes = [era_code(str(e)) for e in eras] if listed else []
    if not codes or min(codes) < 0 or codes != sorted(set(codes)):
        raise ConfigError(
            f"model.threshold_eras={eras!r}: expected ascending compiler eras as quoted strings, e.g. ['0.5']"
        )
    return codes


def check_era_max_flags(k: Any, eras: Sequence[Any] | None) -> int | None:
    """``model.era_max_flags``: None, or an int >= 1 with ``model.threshold_eras`` set (it caps the classes
    flagged on code of those eras); a ConfigError naming it."""
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"model.era_max_flags={k!r}: expected an integer >= 1 or null")
    if not eras:
        raise ConfigError(
            f"model.era_max_flags={k}: caps flags on code of model.threshold_eras, which is not set"
        )
    return k


def row_thresholds(
    base: torch.Tensor,
    by_era: torch.Tensor | None,
    bounds: torch.Tensor | None,
    eras: torch.Tensor | None,
    n: int,
    probs: torch.Tensor | None = None,
    max_flags: int | None = None,
) -> torch.Tensor:
    """(n, C) thresholds of n rows: ``base`` (C,), or where era groups exist (``by_era`` (G, C) for the
    groups at or above ``bounds``) and the rows' eras are known, each row's group's; era -1 (unknown) keeps
    ``base``. With ``max_flags`` and the rows' ``probs``, a row of an era group flags at most ``max_flags``
    classes (``cap_flags``; the others' thresholds are +inf)."""
    if eras is None or by_era is None or bounds is None:
        return base.expand(n, -1)
    groups = era_groups(eras.to(bounds.device), bounds)
    rows = torch.cat([base[None], by_era])[groups]
    if max_flags is None or probs is None:
        return rows
    return cap_flags(probs.to(rows), rows, groups > 0, max_flags)


def label_mask_of(batch: dict[str, Any]) -> torch.Tensor:
    """The batch's assessed mask as floats (all ones when the batch carries none)."""
    mask = batch.get("label_mask")
    return torch.ones_like(batch["labels"], dtype=torch.float) if mask is None else mask.float()


class ContractClassifier(BaseModule):
    """Multi-label vulnerability head + family head; thresholds and label maps travel in the checkpoint."""

    def init_labels(
        self,
        class_names: list[str],
        family_names: list[str],
        pos_weight: list[float] | None,
        metric_classes: list[str] | None,
    ) -> None:
        if self.hparams.loss not in LOSSES:
            raise ConfigError(f"model.loss={self.hparams.loss!r}: expected one of {LOSSES}")
        self.class_names = list(class_names)
        class_flag_budgets(self.hparams.get("max_audited_flag_rate"), self.class_names)  # names checked now
        self.register_buffer("pos_weight", torch.tensor(pos_weight or [1.0] * len(class_names)))
        self.register_buffer("thresholds", torch.full((len(class_names),), 0.5))
        self.init_era_thresholds(self.hparams.get("threshold_eras"))
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
        self._family_seen: dict[str, int] = {}
        self.test_predictions: dict[str, Any] = {}

    def init_era_thresholds(self, eras: Sequence[Any] | None) -> None:
        """Thresholds per compiler-era group (``model.threshold_eras``, e.g. ``["0.5"]``: code compiled by 0.5
        or newer gets its own; ``metrics.classification.tune_era_thresholds``), tuned with ``thresholds`` at
        each validation end and saved with them. Without eras (the default) every row uses ``thresholds``."""
        codes = check_threshold_eras(eras)
        self.hparams["threshold_eras"] = [str(e) for e in eras] if codes else None  # what rebuilds them
        check_era_max_flags(self.hparams.get("era_max_flags"), self.hparams["threshold_eras"])
        self.register_buffer("era_bounds", torch.tensor(codes) if codes else None, persistent=False)
        by_era = self.thresholds.expand(len(codes), -1).clone() if codes else None
        self.register_buffer("era_thresholds", by_era)

    def thresholds_for(
        self, eras: torch.Tensor | None, n: int, probs: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(n, C) thresholds of n rows: ``thresholds``, or each row's era group's (``eras``: ``era_code`` per
        row, -1 unknown, which keeps ``thresholds``) when the model has era groups; given the rows' ``probs``,
        capped to ``model.era_max_flags`` flags per row of an era group."""
        return row_thresholds(
            self.thresholds, self.era_thresholds, self.era_bounds, eras, n, probs,
            self.hparams.get("era_max_flags"),
        )  # fmt: skip

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
        """The multi-label loss weighted by ``loss_weight`` (else ``label_mask``), plus the family loss."""
        loss = multilabel_loss(
            vuln_logits,
            batch["labels"],
            self.pos_weight,
            self.hparams.loss,
            self.hparams.focal_gamma,
            weight=batch.get("loss_weight", batch.get("label_mask")),
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

    def training_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        return self._shared_step(batch)[0]

    def eval_step(
        self, stage: str, batch: dict[str, Any], batch_idx: int, logits: tuple | None = None
    ) -> dict[str, torch.Tensor]:
        vuln_logits, fam_logits = logits if logits is not None else self._logits(batch)
        self.log_loss(stage, self._loss(vuln_logits, fam_logits, batch), self.batch_size_of(batch))
        (self.val_family_acc if stage == "val" else self.test_family_acc).update(fam_logits, batch["family"])
        self._family_seen[stage] = self._family_seen.get(stage, 0) + int((batch["family"] >= 0).sum())
        return {
            "probs": torch.sigmoid(vuln_logits.float()),
            "targets": batch["labels"].float(),
            "mask": label_mask_of(batch),
            "index": batch["index"],
        } | ({"era": batch["era"]} if "era" in batch else {})

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        probs = torch.sigmoid(self._logits(batch)[0])
        return self.predict_outputs(batch, probs)

    def predict_outputs(self, batch: dict[str, Any], probs: torch.Tensor) -> dict[str, torch.Tensor]:
        """``predict_step``'s dict: probabilities, flags at each row's thresholds, index, era, truth."""
        era = batch.get("era")
        predicted = probs >= self.thresholds_for(era, len(probs), probs)
        out = {"probs": probs, "predicted": predicted, "index": batch["index"]}
        out |= {"era": era} if era is not None else {}
        if "labels" in batch:
            out |= {"targets": batch["labels"].float(), "mask": label_mask_of(batch)}
        return out

    # -- epoch ends -----------------------------------------------------------------------------------------
    def _epoch_metrics(
        self,
        stage: str,
        probs: torch.Tensor,
        targets: torch.Tensor,
        thresholds: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> dict[str, float]:
        candidates = self.metric_index.tolist()
        return evaluate_multilabel(stage, probs, targets, thresholds, self.class_names, candidates, mask)

    def _family_metric(self, stage: str, metric: MulticlassAccuracy) -> dict[str, float]:
        """Family accuracy, only when the split has family labels (imported data has none)."""
        seen = self._family_seen.pop(stage, 0)
        value = float(metric.compute()) if seen else None
        metric.reset()
        return {} if value is None else {f"{stage}/family_acc": value}

    def on_validation_epoch_end(self) -> None:
        d = self.gather("val")
        if not d:
            return
        probs, targets, mask = d["probs"], d["targets"], d.get("mask")
        values = self._epoch_metrics("val", probs, targets, torch.full_like(self.thresholds, 0.5), mask)
        tuned = tune_thresholds(
            probs,
            targets,
            mask=mask,
            max_flag_rate=class_flag_budgets(self.hparams.get("max_audited_flag_rate"), self.class_names),
            max_flagged_share=self.hparams.get("max_audited_flagged_share"),
            beta=self.hparams.get("threshold_beta", 1.0),  # a checkpoint from before it: F1
        )
        era = d.get("era")
        by_era = None
        if self.era_bounds is not None and era is not None:
            by_era = tune_era_thresholds(
                probs, targets, era, self.era_bounds, tuned, mask=mask,
                max_flag_rate=class_flag_budgets(self.hparams.get("max_audited_flag_rate"), self.class_names),
                beta=self.hparams.get("threshold_beta", 1.0),
            )  # fmt: skip
        rows = row_thresholds(
            tuned, by_era, self.era_bounds, era, len(probs), probs, self.hparams.get("era_max_flags")
        )
        values["val/f1_macro_tuned"] = self._epoch_metrics("val", probs, targets, rows, mask)["val/f1_macro"]
        values.update(self._family_metric("val", self.val_family_acc))
        if not self.trainer.sanity_checking:
            self.thresholds.copy_(tuned)  # saved with the checkpoint taken after this epoch
            if by_era is not None:
                self.era_thresholds.copy_(by_era)
        self.log("val/f1_macro", values.pop("val/f1_macro"), prog_bar=True)
        self.log_dict(values)

    def test_epoch_values(self) -> dict[str, float]:
        """Test metrics at the tuned thresholds; keeps ``test_predictions`` for the predictions file."""
        d = self.gather("test")
        if not d:
            return {}
        thresholds = self.thresholds_for(d.get("era"), len(d["probs"]), d["probs"])
        values = self._epoch_metrics("test", d["probs"], d["targets"], thresholds, d.get("mask"))
        values.update(self._family_metric("test", self.test_family_acc))
        self.test_predictions = {k: v.cpu() for k, v in d.items()}
        return values

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_epoch_values())

    # -- predictions file -----------------------------------------------------------------------------------
    def prediction_rows(self, outputs: dict[str, Any], datamodule: Any) -> Iterator[dict[str, Any]]:
        """One record per contract: id, every class's probability, predicted and (when known) true labels;
        ``unassessed`` lists the classes whose truth is unknown (masked), absent when every class was."""
        thresholds = self.thresholds_for(outputs.get("era"), len(outputs["probs"]), outputs["probs"]).cpu()
        targets, mask = outputs.get("targets"), outputs.get("mask")
        fields = getattr(datamodule, "prediction_fields", None)  # e.g. the bytecode's compile variant
        for row, i in enumerate(outputs["index"].tolist()):
            p = outputs["probs"][row].cpu()
            rec = {
                "id": datamodule.records[i]["id"],
                "probs": {c: round(float(v), 5) for c, v in zip(self.class_names, p, strict=True)},
                "predicted": [
                    c for c, v, t in zip(self.class_names, p, thresholds[row], strict=True) if v >= t
                ],
            }
            if targets is not None:
                rec["labels"] = [c for c, v in zip(self.class_names, targets[row], strict=True) if v > 0.5]
            if mask is not None and not bool(mask[row].all()):
                rec["unassessed"] = [c for c, m in zip(self.class_names, mask[row], strict=True) if m < 0.5]
            if fields is not None:
                rec.update(fields(i))
            yield rec
