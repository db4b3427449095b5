"""Model comparison on the test split: the aggregator (and, with ``guard_best_single``, the guarded risk)
vs each single model vs the mean and the max of the single models' risks, with every view and without each
one (the static-analysis view's rows read "with/without static analysis").

A single model's risk is the expert risk function applied to its probabilities (``risk.py``:
noisy-or of severity x probability for the contract models, expected severity for the behavior model); it is
not calibrated, so compare it on ranking (AUROC, AUPRC) first, on Brier and ECE second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rich.table import Table

from training_pipeline.data.stacked import single_view_risk
from training_pipeline.data.weak_labels.features import STATIC_VIEW
from training_pipeline.metrics.calibration import brier_score, expected_calibration_error
from training_pipeline.metrics.multiclass import binary_prf, binary_ranking

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


@dataclass
class SplitRisks:
    """One stacked split: the aggregator's inputs, the risk target and each single view's own risk (NaN where
    the view is missing)."""

    x: torch.Tensor
    mask: torch.Tensor
    y: np.ndarray
    single: np.ndarray  # (N, V)


def split_risks(datamodule: Any, split: str) -> SplitRisks:
    """The inputs, target and single-view risks of ``split`` of a set-up ``StackedPredictionData``."""
    data = datamodule.splits[split]
    views = list(datamodule.view_names)
    single = np.full((len(data.index), len(views)), np.nan)
    for i, k in enumerate(data.index):
        found = datamodule.records[k]["views"]
        for j, v in enumerate(views):
            if found.get(v) is not None:
                single[i, j] = single_view_risk(datamodule.target, datamodule.view_kinds[v], found[v])
    return SplitRisks(
        torch.from_numpy(data.x), torch.from_numpy(data.mask), data.risk.astype(np.float64), single
    )


def guard_choice(model: Any, datamodule: Any, margin: float = 0.0) -> dict[str, Any]:
    """``guard_best_single``: on the validation rows, the aggregator's AUROC against the best single view's
    (each on the rows where that view is present). The single view is chosen only when better by more than
    ``margin`` (``guard_margin``: a tie on a few hundred rows is noise); the scanner then reports its risk
    for inputs that have the view (the aggregator's for the others)."""
    datamodule.setup()
    model.eval()
    val = split_risks(datamodule, "val")
    agg = model.predict_risk(val.x, val.mask)["risk"].numpy()
    best: dict[str, Any] | None = None
    for j, v in enumerate(datamodule.view_names):
        ok = ~np.isnan(val.single[:, j])
        if ok.sum() < 2 or len(set(val.y[ok])) < 2:
            continue
        single = risk_metrics(val.single[ok, j], val.y[ok])["auroc"]
        if best is None or single > best["auroc"]:
            same_rows = risk_metrics(agg[ok], val.y[ok])["auroc"]
            best = {"view": v, "auroc": single, "n": int(ok.sum()), "aggregator_auroc": same_rows}
    chosen = "aggregator"
    if best is not None and best["auroc"] > best["aggregator_auroc"] + margin:
        chosen = best["view"]
    return {
        "metric": "val/auroc",
        "margin": margin,
        "aggregator": risk_metrics(agg, val.y)["auroc"],
        "best_single": best,
        "chosen": chosen,
    }


def guarded_risk(agg: np.ndarray, single: np.ndarray, views: Sequence[str], chosen: str) -> np.ndarray:
    """The guard's risk: the chosen single view's where it is present, else the aggregator's."""
    if chosen == "aggregator":
        return agg
    col = single[:, list(views).index(chosen)]
    return np.where(np.isnan(col), agg, col)


def _condition(dropped: str | None, views: Sequence[str]) -> str:
    static = STATIC_VIEW in views
    if dropped is None:
        return "all views (with static analysis)" if static else "all views"
    return "without static analysis" if dropped == STATIC_VIEW else f"without {dropped}"


def compare(model: Any, datamodule: Any, guard: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rows of the comparison table on ``datamodule``'s test split (``model``: a trained Aggregator; with
    ``guard`` (``guard_choice``) a row for the guarded risk too)."""
    datamodule.setup()
    views = list(datamodule.view_names)
    test = split_risks(datamodule, "test")
    y = test.y
    rows: list[dict[str, Any]] = []
    model.eval()
    for dropped in [None, *views]:
        m = test.mask.clone()
        if dropped is not None:
            m[:, views.index(dropped)] = False
        keep = m.any(1).numpy()
        if not keep.any():
            continue
        cond, n = _condition(dropped, views), int(keep.sum())
        agg = model.predict_risk(test.x[keep], m[keep])["risk"].numpy()
        s = np.where(m[keep].numpy(), test.single[keep], np.nan)
        rows.append({"method": "aggregator", "views": cond, "n": n, **risk_metrics(agg, y[keep])})
        if dropped is None and guard is not None:
            risk = guarded_risk(agg, s, views, guard["chosen"])
            method = f"guarded ({guard['chosen']})"
            rows.append({"method": method, "views": cond, "n": n, **risk_metrics(risk, y[keep])})
        for method, reduce in (("mean of models", np.nanmean), ("max of models", np.nanmax)):
            rows.append({"method": method, "views": cond, "n": n, **risk_metrics(reduce(s, 1), y[keep])})
    for j, v in enumerate(views):
        ok = ~np.isnan(test.single[:, j])
        if ok.any():
            rows.append(
                {
                    "method": datamodule.view_models[v],
                    "views": f"{v} only",
                    "n": int(ok.sum()),
                    **risk_metrics(test.single[ok, j], y[ok]),
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
