"""Model comparison on the test split: the aggregator vs each single model vs the mean and the max of the
single models' risks, with every view and without each one.

A single model's risk is the expert risk function applied to its probabilities (``risk.py``:
noisy-or of severity x probability for the contract models, expected severity for the behavior model); it is
not calibrated, so compare it on ranking (AUROC, AUPRC) first, on Brier and ECE second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from rich.table import Table

from training_pipeline.metrics.calibration import brier_score, expected_calibration_error
from training_pipeline.metrics.multiclass import binary_prf, binary_ranking
from training_pipeline.risk import view_risk

COLUMNS = ("auroc", "auprc", "brier", "ece", "f1")


def risk_metrics(probs: Sequence[float], targets: Sequence[float], n_bins: int = 10) -> dict[str, float]:
    p = torch.tensor(np.asarray(probs, dtype=np.float64)).float()
    y = torch.tensor(np.asarray(targets, dtype=np.float64)).float()
    auroc, auprc = binary_ranking(p, y)
    return {
        "auroc": auroc,
        "auprc": auprc,
        "brier": brier_score(p, y),
        "ece": expected_calibration_error(p, y, n_bins),
        "f1": binary_prf(p, y, 0.5)[2],
    }


def compare(model, datamodule) -> list[dict[str, Any]]:
    """Rows of the comparison table on ``datamodule``'s test split (``model``: a trained Aggregator)."""
    datamodule.setup()
    data = datamodule.splits["test"]
    records = [datamodule.records[i] for i in data.index]
    views = list(datamodule.view_names)
    kinds = datamodule.view_kinds
    y = data.risk.astype(np.float64)
    x = torch.from_numpy(data.x)
    mask = torch.from_numpy(data.mask)
    single = np.full((len(records), len(views)), np.nan)
    for i, r in enumerate(records):
        for j, v in enumerate(views):
            if r["views"].get(v) is not None:
                single[i, j] = view_risk(datamodule.target, kinds[v], r["views"][v])
    rows: list[dict[str, Any]] = []
    model.eval()
    for dropped in [None, *views]:
        m = mask.clone()
        if dropped is not None:
            m[:, views.index(dropped)] = False
        keep = m.any(1).numpy()
        if not keep.any():
            continue
        cond = "all views" if dropped is None else f"without {dropped}"
        agg = model.predict_risk(x[keep], m[keep])["risk"].numpy()
        present = m[keep].numpy()
        s = np.where(present, single[keep], np.nan)
        rows.append(
            {"method": "aggregator", "views": cond, "n": int(keep.sum()), **risk_metrics(agg, y[keep])}
        )
        rows.append(
            {
                "method": "mean of models",
                "views": cond,
                "n": int(keep.sum()),
                **risk_metrics(np.nanmean(s, 1), y[keep]),
            }
        )
        rows.append(
            {
                "method": "max of models",
                "views": cond,
                "n": int(keep.sum()),
                **risk_metrics(np.nanmax(s, 1), y[keep]),
            }
        )
    for j, v in enumerate(views):
        ok = ~np.isnan(single[:, j])
        if ok.any():
            model_name = datamodule.view_models[v]
            rows.append(
                {
                    "method": model_name,
                    "views": f"{v} only",
                    "n": int(ok.sum()),
                    **risk_metrics(single[ok, j], y[ok]),
                }
            )
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        "| method | views | n | " + " | ".join(c.upper() if c != "f1" else "F1@0.5" for c in COLUMNS) + " |"
    )
    sep = "|---|---|---:|" + "---:|" * len(COLUMNS)
    lines = [head, sep]
    for r in rows:
        vals = " | ".join("n/a" if r[c] != r[c] else f"{r[c]:.3f}" for c in COLUMNS)
        lines.append(f"| {r['method']} | {r['views']} | {r['n']} | {vals} |")
    return "\n".join(lines) + "\n"


def rich_table(rows: Sequence[dict[str, Any]], title: str = "Test comparison (expert risk target)"):
    table = Table(title=title)
    for col in ("method", "views", "n", *COLUMNS):
        table.add_column(col, justify="left" if col in ("method", "views") else "right")
    last = None
    for r in rows:
        if last is not None and r["views"] != last and r["method"] == "aggregator":
            table.add_section()
        last = r["views"]
        table.add_row(
            r["method"], r["views"], str(r["n"]), *("n/a" if r[c] != r[c] else f"{r[c]:.3f}" for c in COLUMNS)
        )
    return table
