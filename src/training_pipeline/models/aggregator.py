"""The aggregator: fuses the base models' class probabilities into one calibrated risk probability.

The network (``nets.fusion.GatedFusionNet``) reads each view's probabilities (bytecode detector, code
analyzer, behavior model; optionally Slither's findings per class, the static-analysis view) and gives the
risk logit (the expert risk target, see ``risk.py``) and per-class vulnerability logits. A missing view is
masked out of the gate's softmax (its features, NaN in the data, are never read), and training drops
present views at random (modality dropout) so a contract without source or history degrades gracefully
instead of falling off a cliff.

Partially labelled rows (CGT's masked classes, the npm audited code that assesses none) carry
``label_mask``: the class head neither learns nor is scored on an unassessed class, and
``max_audited_flag_rate`` caps the share of the validation rows that assess no class (audited code) each
tuned class threshold flags, as in the base models. ``optional_views`` names views a scan may lack (Slither's
findings: the scanner runs with or without ``--static-analysis``): the thresholds are tuned with them and
with them masked, and each class keeps the stricter of the two, so the budget holds either way.

Calibration (temperature scaling and an isotonic map, both fitted on validation each epoch and saved with the
checkpoint) turns the risk logit into a probability; ``calibration`` chooses the one applied (``auto``:
temperature scaling unless it worsens the validation ECE, then isotonic, else none). Explanations:
the gate weights and leave-one-view-out deltas (risk with all views - risk without that view). The reliability
diagram, ``calibration.json`` and the predictions file are written by callbacks in ``evaluation``.

``members`` > 1 trains that many fusion networks side by side (``nets.fusion.FusionEnsemble``), each on its
own loss with its own modality dropout, and predicts with their mean; calibration and thresholds are fitted
on the mean, so everything after the network is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from training_pipeline.errors import ConfigError
from training_pipeline.metrics.calibration import (
    FITTED,
    ISOTONIC_GRID,
    METHODS,
    apply_isotonic,
    brier_score,
    calibration_summary,
    expected_calibration_error,
    fit_isotonic,
    fit_temperature,
)
from training_pipeline.metrics.classification import (
    FlagBudget,
    check_threshold_beta,
    class_flag_budgets,
    evaluate_multilabel,
    tune_thresholds,
)
from training_pipeline.metrics.multiclass import binary_prf, binary_ranking
from training_pipeline.models.base import OPTIM_KEYS, BaseModule
from training_pipeline.models.nets.fusion import EPS, FusionEnsemble, GatedFusionNet
from training_pipeline.risk import DEFAULT_LEVELS, check_levels, risk_level

NET_KEYS = ("encoders.", "gate.", "trunk.", "risk_head.", "class_head.", "class_feature_index", "class_stack")


class Aggregator(BaseModule):
    """Gated fusion of per-view probabilities → calibrated risk, class probabilities, view contributions."""

    def __init__(
        self,
        view_names: Sequence[str],
        view_features: Mapping[str, Sequence[str]],
        class_names: Sequence[str],
        view_kinds: Mapping[str, str] | None = None,
        target: dict[str, Any] | None = None,
        risk_pos_weight: float = 1.0,
        hidden: int = 32,
        dropout: float = 0.1,
        members: int = 1,
        modality_dropout: float = 0.3,
        class_loss_weight: float = 0.5,
        calibration: str = "auto",
        n_bins: int = 10,
        max_audited_flag_rate: FlagBudget = None,
        max_audited_flagged_share: float | None = None,
        threshold_beta: float = 1.0,
        optional_views: Sequence[str] = (),
        risk_levels: Mapping[str, float] | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler)
        check_threshold_beta(threshold_beta)
        if calibration not in METHODS:
            raise ConfigError(f"model.calibration={calibration!r}: expected one of {METHODS}")
        if not 0.0 <= modality_dropout < 1.0:
            raise ConfigError(f"model.modality_dropout={modality_dropout}: expected [0, 1)")
        if isinstance(members, bool) or not isinstance(members, int) or members < 1:
            raise ConfigError(f"model.members={members!r}: expected an integer >= 1")
        check_levels(risk_levels or DEFAULT_LEVELS)
        self.save_hyperparameters(ignore=OPTIM_KEYS)
        self.view_names = list(view_names)
        self.class_names = list(class_names)
        class_flag_budgets(max_audited_flag_rate, self.class_names)  # a budget naming no class fails now
        self.metric_classes = list(class_names)
        nets = [
            GatedFusionNet(self.view_names, view_features, self.class_names, hidden, dropout)
            for _ in range(members)
        ]
        self.net = nets[0] if members == 1 else FusionEnsemble(nets)  # one member: the checkpoints as before
        # the views a scan may lack that this model has (names it lacks are ignored: one config for all runs)
        self.optional_index = [i for i, v in enumerate(self.view_names) if v in set(optional_views or ())]
        self.register_buffer("risk_pos_weight", torch.tensor(float(risk_pos_weight)))
        self.register_buffer("temperature", torch.tensor(1.0))
        self.register_buffer("isotonic_table", torch.sigmoid(ISOTONIC_GRID).float())
        self.register_buffer("thresholds", torch.full((len(self.class_names),), 0.5))
        self.register_buffer("chosen", torch.tensor(0))  # index into FITTED: what "auto" picked on val
        self.test_predictions: dict[str, Any] = {}
        self.calibration_report: dict[str, Any] = {}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Checkpoints from before the network moved to ``self.net`` load too."""
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith(NET_KEYS)]:
            state[f"net.{key}"] = state.pop(key)

    @staticmethod
    def logged_metric_names() -> set[str]:
        scalars = (
            "loss",
            "auroc",
            "auprc",
            "brier",
            "nll",
            "ece",
            "ece_raw",
            "risk_f1",
            "f1_macro",
            "f1_micro",
        )
        return {f"{s}/{m}" for s in ("val", "test") for m in scalars} | {"train/loss", "val/temperature"}

    # -- forward ------------------------------------------------------------------------------------------
    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Risk logit (B,), class logits (B, C) and gate weights (B, V; 0 for missing views)."""
        return self.net(features, mask)

    @property
    def calibration_method(self) -> str:
        """The calibrator applied: the configured one, or for ``auto`` the one chosen on validation."""
        method = self.hparams.calibration
        return FITTED[int(self.chosen)] if method == "auto" else method

    def calibrate(self, risk_logit: torch.Tensor, method: str | None = None) -> torch.Tensor:
        """The risk probability under ``method`` (default: the calibrator in use)."""
        method = method or self.calibration_method
        if method == "temperature":
            return torch.sigmoid(risk_logit / self.temperature)
        if method == "isotonic":
            return apply_isotonic(risk_logit, self.isotonic_table)
        return torch.sigmoid(risk_logit)

    @torch.no_grad()
    def predict_risk(self, features: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Calibrated and raw risk, class probabilities and gate weights."""
        out = self(features, mask)
        return {
            "risk": self.calibrate(out["risk_logit"]),
            "risk_raw": torch.sigmoid(out["risk_logit"]),
            "class_probs": torch.sigmoid(out["class_logits"]),
            "gates": out["gates"],
        }

    @torch.no_grad()
    def explain(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Leave-one-view-out deltas (B, V): calibrated risk with every view minus risk without view v
        (0 where v is missing or is the only view present)."""
        mask = mask.bool()
        full = self.calibrate(self(features, mask)["risk_logit"])
        deltas = torch.zeros(mask.shape, device=features.device)
        for j in range(mask.shape[1]):
            reduced = mask.clone()
            reduced[:, j] = False
            ok = mask[:, j] & reduced.any(1)
            if ok.any():
                risk = self.calibrate(self(features[ok], reduced[ok])["risk_logit"])
                deltas[ok, j] = full[ok] - risk
        return deltas

    def risk_level(self, p: float) -> str:
        """The named risk level of a calibrated probability."""
        return risk_level(p, self.hparams.risk_levels or DEFAULT_LEVELS)

    # -- training -----------------------------------------------------------------------------------------
    def drop_modalities(self, mask: torch.Tensor) -> torch.Tensor:
        """Drop each present view with probability ``modality_dropout``, keeping at least one per row."""
        p = self.hparams.modality_dropout
        if p <= 0:
            return mask
        keep = mask & (torch.rand(mask.shape, device=mask.device) >= p)
        empty = ~keep.any(1)
        if empty.any():  # restore one random present view where all were dropped
            scores = torch.rand(mask.shape, device=mask.device).masked_fill(~mask, -1.0)
            pick = F.one_hot(scores.argmax(1), mask.shape[1]).bool()
            keep = torch.where(empty.unsqueeze(1), pick, keep)
        return keep

    def _loss(self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        risk_loss = F.binary_cross_entropy_with_logits(
            out["risk_logit"], batch["risk"].float(), pos_weight=self.risk_pos_weight
        )
        labels = batch["labels"].float()
        weight = batch.get("label_mask")  # unassessed classes (CGT's masks, audited code) teach nothing
        weight = torch.ones_like(labels) if weight is None else weight.float()
        class_loss = (
            F.binary_cross_entropy_with_logits(out["class_logits"], labels, reduction="none") * weight
        ).sum() / weight.sum().clamp(min=1.0)
        return risk_loss + self.hparams.class_loss_weight * class_loss

    log_train_steps = False

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss with modality dropout; an ensemble: the mean of its members' losses, each member with
        its own dropped views (trained apart, they stay diverse; their mean is what predicts)."""
        mask = batch["mask"].bool()
        members = self.net.members if isinstance(self.net, FusionEnsemble) else [self.net]
        losses = [self._loss(net(batch["features"], self.drop_modalities(mask)), batch) for net in members]
        return torch.stack(losses).mean()

    def eval_step(
        self, stage: str, batch: dict[str, torch.Tensor], batch_idx: int
    ) -> dict[str, torch.Tensor]:
        out = self(batch["features"], batch["mask"])
        self.log_loss(stage, self._loss(out, batch), self.batch_size_of(batch))
        rows = {
            "risk_logit": out["risk_logit"],
            "class_probs": torch.sigmoid(out["class_logits"]),
            "gates": out["gates"],
            "risk": batch["risk"].float(),
            "labels": batch["labels"].float(),
            "label_mask": batch.get("label_mask", torch.ones_like(batch["labels"])).float(),
            "mask": batch["mask"].bool(),
            "index": batch["index"],
        }
        if stage == "val" and self.optional_index:
            rows["class_probs_without"] = self._class_probs_without_optional(batch, rows["class_probs"])
        return rows

    def _class_probs_without_optional(
        self, batch: dict[str, torch.Tensor], probs: torch.Tensor
    ) -> torch.Tensor:
        """Class probabilities with the optional views masked (a row left with no view keeps ``probs``)."""
        reduced = batch["mask"].bool().clone()
        reduced[:, self.optional_index] = False
        ok = reduced.any(1)
        out = probs.clone()
        if ok.any():
            out[ok] = torch.sigmoid(self(batch["features"][ok], reduced[ok])["class_logits"])
        return out

    def _with_budget_rows(self, d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Validation rows plus the audited rows the datamodule adds to the false-alarm budget
        (``data.budget_splits``): class probabilities (and without the optional views), no label and nothing
        assessed, so they count in the budget and never in F1."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        extra = datamodule.budget_rows() if hasattr(datamodule, "budget_rows") else None
        if extra is None:
            return d
        batch = {k: v.to(self.device) for k, v in extra.items()}
        with torch.no_grad():
            probs = torch.sigmoid(self(batch["features"], batch["mask"])["class_logits"])
            rows = {"class_probs": probs}
            if "class_probs_without" in d:
                rows["class_probs_without"] = self._class_probs_without_optional(batch, probs)
        none = torch.zeros_like(probs)
        rows |= {"labels": none, "label_mask": none}
        return {k: torch.cat([d[k], rows[k].to(d[k])]) for k in rows}

    def _tuned_thresholds(self, d: dict[str, torch.Tensor]) -> torch.Tensor:
        """Class thresholds under the false-alarm budget: with every view, and (``optional_views``) the
        stricter of that and the thresholds tuned with the optional views masked."""
        budget = {
            "max_flag_rate": class_flag_budgets(self.hparams.get("max_audited_flag_rate"), self.class_names),
            "max_flagged_share": self.hparams.get("max_audited_flagged_share"),
            "beta": self.hparams.get("threshold_beta", 1.0),  # a checkpoint from before it: F1
        }
        labels, mask = d["labels"], d.get("label_mask")
        tuned = tune_thresholds(d["class_probs"], labels, mask=mask, **budget)
        if "class_probs_without" in d:
            without = tune_thresholds(d["class_probs_without"], labels, mask=mask, **budget)
            tuned = torch.maximum(tuned, without)
        return tuned

    def _metrics(self, stage: str, d: dict[str, torch.Tensor], probs: torch.Tensor) -> dict[str, float]:
        y = d["risk"]
        auroc, auprc = binary_ranking(probs, y)
        values = {
            f"{stage}/auroc": auroc,
            f"{stage}/auprc": auprc,
            f"{stage}/brier": brier_score(probs, y),
            f"{stage}/nll": float(F.binary_cross_entropy(probs.clamp(EPS, 1 - EPS), y)),
            f"{stage}/ece": expected_calibration_error(probs, y, self.hparams.n_bins),
            f"{stage}/ece_raw": expected_calibration_error(
                torch.sigmoid(d["risk_logit"]), y, self.hparams.n_bins
            ),
            f"{stage}/risk_f1": binary_prf(probs, y, 0.5)[2],
        }
        thresholds = self.thresholds  # tuned on val (each epoch, before these metrics), saved for test
        cls = evaluate_multilabel(
            stage,
            d["class_probs"],
            d["labels"],
            thresholds,
            self.class_names,
            list(range(len(self.class_names))),
            d.get("label_mask"),
        )
        if stage == "test":  # per-class precision/recall/F1 for the report and metrics.json
            return cls | values  # the risk metrics keep their names (test/auroc is the risk AUROC)
        values[f"{stage}/f1_macro"], values[f"{stage}/f1_micro"] = (
            cls[f"{stage}/f1_macro"],
            cls[f"{stage}/f1_micro"],
        )
        return values

    def on_validation_epoch_end(self) -> None:
        d = self.gather("val")
        if not d:
            return
        if not self.trainer.sanity_checking:  # fitted on val, saved with the checkpoint of this epoch
            self.temperature.fill_(fit_temperature(d["risk_logit"], d["risk"]))
            self.isotonic_table.copy_(fit_isotonic(d["risk_logit"], d["risk"]).to(self.isotonic_table))
            self.chosen.fill_(self._choose(d))
            self.thresholds.copy_(self._tuned_thresholds(self._with_budget_rows(d)))
        values = self._metrics("val", d, self.calibrate(d["risk_logit"]))
        values["val/temperature"] = float(self.temperature)
        self.log("val/auroc", values.pop("val/auroc"), prog_bar=True)
        self.log_dict(values)

    def _choose(self, d: dict[str, torch.Tensor]) -> int:
        """``auto``: temperature scaling unless it worsens the validation ECE, then isotonic, else none."""
        raw = expected_calibration_error(torch.sigmoid(d["risk_logit"]), d["risk"], self.hparams.n_bins)
        for i, method in enumerate(FITTED):
            ece = expected_calibration_error(
                self.calibrate(d["risk_logit"], method), d["risk"], self.hparams.n_bins
            )
            if ece <= raw + 1e-9:
                return i
        return FITTED.index("none")

    def on_test_epoch_end(self) -> None:
        d = self.gather("test")
        if not d:
            return
        probs = self.calibrate(d["risk_logit"])
        self.log_dict(self._metrics("test", d, probs))
        raw = torch.sigmoid(d["risk_logit"])
        self.calibration_report = {
            "method": self.calibration_method,
            "temperature": float(self.temperature),
            "test": calibration_summary(raw.cpu(), probs.cpu(), d["risk"].cpu(), self.hparams.n_bins),
        }
        self.test_predictions = {k: v.cpu() for k, v in d.items()} | {
            "risk_calibrated": probs.cpu(),
            "risk_raw": raw.cpu(),
        }

    def prediction_rows(self, outputs: dict[str, Any], datamodule: Any) -> Iterator[dict[str, Any]]:
        """One record per contract: calibrated risk, level, target, class probabilities, gates."""
        for row, i in enumerate(outputs["index"].tolist()):
            rec = datamodule.records[i]
            risk = float(outputs["risk_calibrated"][row])
            mask = outputs["mask"][row].tolist()
            out = {
                "id": rec["id"],
                "risk": round(risk, 5),
                "risk_raw": round(float(outputs["risk_raw"][row]), 5),
            }
            out["level"] = self.risk_level(risk)
            if "risk" in outputs:
                out["target"] = int(outputs["risk"][row])
            out |= {
                "views": [v for v, m in zip(self.view_names, mask, strict=True) if m],
                "gates": {
                    v: round(float(g), 4)
                    for v, g, m in zip(self.view_names, outputs["gates"][row], mask, strict=True)
                    if m
                },
                "probs": {
                    c: round(float(p), 5)
                    for c, p in zip(self.class_names, outputs["class_probs"][row], strict=True)
                },
                "labels": rec.get("labels") or [],
                "behavior": rec.get("behavior"),
            }
            if rec.get("top_lines"):  # the code analyzer's ranked lines, carried through the stacked data
                out["top_lines"] = rec["top_lines"]
            yield out

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """Calibrated and raw risk, class probabilities, gates, view mask, row index (and risk target)."""
        pred = self.predict_risk(batch["features"], batch["mask"])
        return {
            "risk_calibrated": pred["risk"],
            "risk_raw": pred["risk_raw"],
            "class_probs": pred["class_probs"],
            "gates": pred["gates"],
            "mask": batch["mask"].bool(),
            "index": batch["index"],
        } | ({"risk": batch["risk"].float()} if "risk" in batch else {})
