"""The aggregator: fuses the base models' class probabilities into one calibrated risk probability.

Each view (bytecode detector, code analyzer, behavior model) has a small encoder over its probabilities
(logits of them); a gate scores every view present, a softmax over the present views weighs them, and the
fused vector, each present view's own vector and the modality mask feed two heads: the risk logit (the
expert risk target, see ``risk.py``) and per-class vulnerability logits. A missing view is masked
out of the gate's softmax (its features, NaN in the data, are never read), and training drops present views
at random (modality dropout) so a contract without source or history degrades gracefully instead of falling
off a cliff.

Calibration (temperature scaling and an isotonic map, both fitted on validation each epoch and saved with the
checkpoint) turns the risk logit into a probability; ``calibration`` chooses the one applied (``auto``:
temperature scaling unless it worsens the validation ECE, then isotonic, else none). Explanations:
the gate weights and leave-one-view-out deltas (risk with all views - risk without that view).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn

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
    reliability_image,
    save_png,
)
from training_pipeline.metrics.classification import evaluate_multilabel, tune_thresholds
from training_pipeline.metrics.multiclass import binary_prf, binary_ranking
from training_pipeline.risk import DEFAULT_LEVELS, check_levels, risk_level

EPS = 1e-4


class Aggregator(LightningModule):
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
        modality_dropout: float = 0.3,
        class_loss_weight: float = 0.5,
        lr: float = 3e-3,
        weight_decay: float = 0.01,
        calibration: str = "auto",
        n_bins: int = 10,
        risk_levels: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        if calibration not in METHODS:
            raise ConfigError(f"model.calibration={calibration!r}: expected one of {METHODS}")
        if not 0.0 <= modality_dropout < 1.0:
            raise ConfigError(f"model.modality_dropout={modality_dropout}: expected [0, 1)")
        check_levels(risk_levels or DEFAULT_LEVELS)
        self.save_hyperparameters()
        self.view_names = list(view_names)
        self.class_names = list(class_names)
        self.metric_classes = list(class_names)
        self.dims = [len(view_features[v]) for v in self.view_names]
        self.encoders = nn.ModuleList(
            nn.Sequential(
                nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.GELU()
            )
            for d in self.dims
        )
        self.gate = nn.Linear(hidden, 1)
        n_views = len(self.view_names)
        # the trunk reads the gated mixture, every view's own vector (zeros where missing; the mask beside
        # them tells a missing view from a present one) and the mask: evidence from two views can add up,
        # which a convex mixture alone cannot express
        self.trunk = nn.Sequential(
            nn.Linear(hidden * (n_views + 1) + n_views, hidden), nn.GELU(), nn.Dropout(dropout)
        )
        self.risk_head = nn.Linear(hidden, 1)
        self.class_head = nn.Linear(hidden, len(self.class_names))
        # per-class stacking beside the trunk: class c's logit adds w[v, c] x (view v's logit for class c) for
        # every present view that predicts class c, so a view's evidence for one class reaches that class
        # directly (the trunk alone blurred it: on the default run the fused class probabilities ranked
        # worse than the bytecode detector's own). w starts as the mean over the views predicting c.
        where = torch.full((n_views, len(self.class_names)), -1, dtype=torch.long)
        start = 0
        for j, v in enumerate(self.view_names):
            for k, feature in enumerate(view_features[v]):
                if feature in self.class_names:
                    where[j, self.class_names.index(feature)] = start + k
            start += self.dims[j]
        self.register_buffer("class_feature_index", where)
        n_predicting = (where >= 0).sum(0).clamp(min=1).float()
        self.class_stack = nn.Parameter((where >= 0).float() / n_predicting)
        self.register_buffer("risk_pos_weight", torch.tensor(float(risk_pos_weight)))
        self.register_buffer("temperature", torch.tensor(1.0))
        self.register_buffer("isotonic_table", torch.sigmoid(ISOTONIC_GRID).float())
        self.register_buffer("thresholds", torch.full((len(self.class_names),), 0.5))
        self.register_buffer("chosen", torch.tensor(0))  # index into FITTED: what "auto" picked on val
        self._outputs: dict[str, list[dict[str, torch.Tensor]]] = {}
        self.test_predictions: dict[str, Any] = {}
        self.calibration_report: dict[str, Any] = {}

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
        mask = mask.bool()
        if not mask.any(1).all():
            raise ValueError("Aggregator: every contract needs at least one view (mask row all False)")
        hs, zs, start = [], [], 0  # zs: every view's logits, for the per-class stacking path
        for j, (enc, d) in enumerate(zip(self.encoders, self.dims, strict=True)):
            present = mask[:, j : j + 1]
            x = torch.where(present, features[:, start : start + d], torch.zeros((), device=features.device))
            z = torch.logit(x.float().clamp(EPS, 1 - EPS))  # probabilities → logits
            hs.append(enc(z / 4.0))  # scaled for the encoder
            zs.append(z)
            start += d
        h = torch.stack(hs, 1)  # (B, V, H)
        gate_logits = self.gate(h).squeeze(-1).masked_fill(~mask, float("-inf"))
        gates = torch.softmax(gate_logits, 1)
        fused = (gates.unsqueeze(-1) * h).sum(1)
        per_view = (h * mask.unsqueeze(-1)).flatten(1)
        t = self.trunk(torch.cat([fused, per_view, mask.float()], 1))
        return {
            "risk_logit": self.risk_head(t).squeeze(-1),
            "class_logits": self.class_head(t) + self._stacked_class_logits(torch.cat(zs, 1), mask),
            "gates": gates,
        }

    def _stacked_class_logits(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, C): sum over present views v predicting class c of w[v, c] x v's logit for c."""
        where = self.class_feature_index  # (V, C) feature column or -1
        logits = z[:, where.clamp(min=0)]  # (B, V, C)
        usable = (where >= 0).unsqueeze(0) & mask.unsqueeze(-1)
        return (logits * usable * self.class_stack).sum(1)

    @property
    def calibration_method(self) -> str:
        """The calibrator applied: the configured one, or for ``auto`` the one chosen on validation."""
        method = self.hparams.calibration
        return FITTED[int(self.chosen)] if method == "auto" else method

    def calibrate(self, risk_logit: torch.Tensor, method: str | None = None) -> torch.Tensor:
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
        class_loss = F.binary_cross_entropy_with_logits(out["class_logits"], batch["labels"].float())
        return risk_loss + self.hparams.class_loss_weight * class_loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self(batch["features"], self.drop_modalities(batch["mask"].bool()))
        loss = self._loss(out, batch)
        self.log(
            "train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch["risk"])
        )
        return loss

    def _eval_step(self, stage: str, batch: dict[str, torch.Tensor]) -> None:
        out = self(batch["features"], batch["mask"])
        loss = self._loss(out, batch)
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=stage == "val", batch_size=len(batch["risk"]))
        self._outputs.setdefault(stage, []).append(
            {
                "risk_logit": out["risk_logit"].detach(),
                "class_probs": torch.sigmoid(out["class_logits"].detach()),
                "gates": out["gates"].detach(),
                "risk": batch["risk"].float(),
                "labels": batch["labels"].float(),
                "mask": batch["mask"].bool(),
                "index": batch["index"],
            }
        )

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def _gather(self, stage: str) -> dict[str, torch.Tensor]:
        outs = self._outputs.pop(stage, [])
        if not outs:
            return {}
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}

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
        )
        if stage == "test":  # per-class precision/recall/F1 for the report and metrics.json
            return cls | values  # the risk metrics keep their names (test/auroc is the risk AUROC)
        values[f"{stage}/f1_macro"], values[f"{stage}/f1_micro"] = (
            cls[f"{stage}/f1_macro"],
            cls[f"{stage}/f1_micro"],
        )
        return values

    def on_validation_epoch_end(self) -> None:
        d = self._gather("val")
        if not d:
            return
        if (
            not self.trainer.sanity_checking
        ):  # fitted on val, saved with the checkpoint taken after this epoch
            self.temperature.fill_(fit_temperature(d["risk_logit"], d["risk"]))
            self.isotonic_table.copy_(fit_isotonic(d["risk_logit"], d["risk"]).to(self.isotonic_table))
            self.chosen.fill_(self._choose(d))
            self.thresholds.copy_(tune_thresholds(d["class_probs"], d["labels"]))
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
        d = self._gather("test")
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
            "probs": probs.cpu(),
            "risk_raw": raw.cpu(),
        }
        self._save_reliability(self.calibration_report["test"])

    def _save_reliability(self, summary: dict[str, Any]) -> None:
        """The test reliability diagram: PNG and calibration.json in the run dir, an image in TensorBoard."""
        if self.trainer is None or not self.trainer.is_global_zero:
            return
        image = reliability_image(summary["bins"], summary["bins_raw"])
        root = Path(self.trainer.default_root_dir)
        root.mkdir(parents=True, exist_ok=True)
        save_png(image, root / "reliability_test.png")
        (root / "calibration.json").write_text(json.dumps(self.calibration_report, indent=2) + "\n")
        from lightning.pytorch.loggers import TensorBoardLogger

        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("test/reliability", image, self.global_step, dataformats="HWC")

    def write_test_predictions(self, path: str | Path, datamodule) -> Path | None:
        """One JSON line per test contract: calibrated risk, level, target, class probabilities, gates."""
        d = self.test_predictions
        if not d:
            return None
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w") as fh:
            for row, i in enumerate(d["index"].tolist()):
                rec = datamodule.records[i]
                risk = float(d["probs"][row])
                out = {
                    "id": rec["id"],
                    "risk": round(risk, 5),
                    "risk_raw": round(float(d["risk_raw"][row]), 5),
                    "level": self.risk_level(risk),
                    "target": int(d["risk"][row]),
                    "views": [v for v, m in zip(self.view_names, d["mask"][row].tolist(), strict=True) if m],
                    "gates": {
                        v: round(float(g), 4)
                        for v, g, m in zip(self.view_names, d["gates"][row], d["mask"][row], strict=True)
                        if m
                    },
                    "probs": {
                        c: round(float(p), 5)
                        for c, p in zip(self.class_names, d["class_probs"][row], strict=True)
                    },
                    "labels": rec.get("labels") or [],
                    "behavior": rec.get("behavior"),
                }
                if rec.get("top_lines"):  # the code analyzer's ranked lines, carried through the stacked data
                    out["top_lines"] = rec["top_lines"]
                fh.write(json.dumps(out) + "\n")
        tmp.replace(path)
        return path

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return {**self.predict_risk(batch["features"], batch["mask"]), "index": batch["index"]}

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.trainer is None:
            return opt
        epochs = max(int(self.trainer.max_epochs or 1), 1)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=self.hparams.lr * 0.05)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
