"""One risk per contract from its base models' outputs: the aggregator's calibrated fusion (views missing
from an input are masked), or a single base model's own, uncalibrated risk."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from training_pipeline.models.aggregator import Aggregator
from training_pipeline.risk import risk_level


def aggregator_input(out: Mapping[str, Any]) -> Mapping[str, float]:
    """What the aggregator reads of a view's output: the fold models' mean (``crossfit_mean``) where the
    view has one, else the view's own probabilities."""
    return out.get("aggregator_probs") or out["probs"]


def fuse(aggregator: Aggregator, outs: Mapping[str, dict[str, Any] | None]) -> dict[str, Any]:
    """Risk, level, calibrated class probabilities and per-view contributions (gate, risk delta)."""
    feats, mask = [], []
    for v in aggregator.view_names:
        names = aggregator.hparams.view_features[v]
        out = outs.get(v)
        mask.append(out is not None)
        if out is None:
            feats.extend([float("nan")] * len(names))
        else:
            feats.extend(aggregator_input(out).get(f, 0.0) for f in names)
    x = torch.tensor([feats], dtype=torch.float32)
    m = torch.tensor([mask])
    pred = aggregator.predict_risk(x, m)
    deltas = aggregator.explain(x, m)[0]
    risk = float(pred["risk"][0])
    classes = zip(aggregator.class_names, pred["class_probs"][0].tolist(), strict=True)
    return {
        "risk": round(risk, 4),
        "risk_level": aggregator.risk_level(risk),
        "risk_raw": round(float(pred["risk_raw"][0]), 4),
        "calibrated": aggregator.calibration_method,
        "vulnerabilities": {c: round(float(p), 4) for c, p in sorted(classes, key=lambda kv: -kv[1])},
        "contributions": {
            v: {"gate": round(float(pred["gates"][0, j]), 4), "delta": round(float(deltas[j]), 4)}
            for j, v in enumerate(aggregator.view_names)
            if mask[j]
        },
        "missing_views": [v for j, v in enumerate(aggregator.view_names) if not mask[j]],
    }


def single_model_risk(
    view: str, kind: str, view_report: Mapping[str, Any], levels: Mapping[str, float]
) -> dict[str, Any]:
    """The risk of a scan with one base model: its own view risk, not calibrated."""
    risk = view_report["risk"]
    out: dict[str, Any] = {"risk": risk, "risk_level": risk_level(risk, levels), "calibrated": False}
    if kind != "anomaly_classes":
        out["vulnerabilities"] = view_report["probs"]
    out["contributions"] = {view: {"gate": 1.0, "delta": risk}}
    return out
