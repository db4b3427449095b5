"""The drift report on disk: ``drift.json`` (the schema ``monitoring.alerts`` reads) and a self-contained
``report.html`` (PNG plots embedded as base64: reference vs current histograms of the most drifted features,
PSI bars against the thresholds, scores over time), under ``outputs/monitoring/<time>/``."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from training_pipeline.config import project_root
from training_pipeline.monitoring.drift import DriftConfig

COLORS = {"ok": "#2e7d32", "warning": "#ef6c00", "alert": "#c62828"}


def monitoring_root() -> Path:
    return project_root() / "outputs" / "monitoring"


def report_dir(base: str | Path | None = None) -> Path:
    """A new ``<base>/<UTC time>`` folder (default base ``outputs/monitoring``)."""
    root = Path(base) if base else monitoring_root()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d_%H-%M-%S")
    out, k = root / stamp, 1
    while out.exists():
        out, k = root / f"{stamp}_{k}", k + 1
    out.mkdir(parents=True)
    return out


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _bin_labels(edges: Sequence[float]) -> list[str]:
    if not edges:
        return ["all"]
    fmt = [f"{e:.3g}" for e in edges]
    return [f"≤{fmt[0]}", *(f"{a}–{b}" for a, b in zip(fmt, fmt[1:], strict=False)), f">{fmt[-1]}"]


def histogram_figure(name: str, ref: Mapping[str, Any], entry: Mapping[str, Any]) -> Figure:
    """Reference vs current shares per bin (continuous) or per category (categorical)."""
    fig = Figure(figsize=(6, 2.8))
    ax = fig.add_subplot()
    if entry["kind"] == "categorical":
        labels = list(entry["reference_counts"])
        r = np.array([entry["reference_counts"][k] for k in labels], dtype=float)
        c = np.array([entry["current_counts"].get(k, 0) for k in labels], dtype=float)
    else:
        labels = _bin_labels(ref.get("edges") or [])
        r = np.asarray(ref.get("counts") or [0], dtype=float)
        c = np.asarray(entry.get("current_counts") or np.zeros_like(r), dtype=float)
    x = np.arange(len(labels))
    ax.bar(x - 0.2, r / max(r.sum(), 1), 0.4, label="reference")
    ax.bar(x + 0.2, c / max(c.sum(), 1), 0.4, label="current")
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("share")
    ax.set_title(f"{name}: PSI {entry['psi']:.3f} ({entry['status']})", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def psi_figure(entries: Mapping[str, Mapping[str, Any]], cfg: DriftConfig) -> Figure:
    names = list(entries)
    fig = Figure(figsize=(7, 0.22 * len(names) + 1.2))
    ax = fig.add_subplot()
    values = [entries[n]["psi"] for n in names]
    ax.barh(names, values, color=[COLORS[entries[n]["status"]] for n in names])
    ax.axvline(cfg.psi.warning, color=COLORS["warning"], ls="--", lw=1, label=f"warning {cfg.psi.warning}")
    ax.axvline(cfg.psi.alert, color=COLORS["alert"], ls="--", lw=1, label=f"alert {cfg.psi.alert}")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel("PSI")
    ax.legend(fontsize=7)
    return fig


def time_figure(slices: Sequence[Mapping[str, Any]]) -> Figure:
    fig = Figure(figsize=(7, 3))
    ax = fig.add_subplot()
    x = np.arange(len(slices))
    classes = sorted({c for s in slices for c in s["scores"]})
    for cls in classes:
        ax.plot(x, [s["scores"].get(cls, np.nan) for s in slices], marker=".", lw=1, label=cls)
    risks = [s["risk"] if s["risk"] is not None else np.nan for s in slices]
    ax.plot(x, risks, color="black", lw=2, marker="o", label="risk")
    ax.set_xticks(
        x, [s["start"][5:16].replace("T", " ") for s in slices], rotation=45, ha="right", fontsize=7
    )
    ax.set_ylabel("mean score")
    ax.legend(fontsize=6, ncol=2)
    return fig


def _row(name: str, e: Mapping[str, Any]) -> str:
    p = e.get("p_value")
    cells = [
        html.escape(name),
        e.get("kind", "share"),
        f"{e['psi']:.4f}",
        e.get("test", "—"),
        "—" if e.get("statistic") is None else f"{e['statistic']:.4f}",
        "—" if p is None else f"{p:.3g}",
        f"<b style='color:{COLORS[e['status']]}'>{e['status']}</b>",
        html.escape(e.get("note", "")),
    ]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def render_html(
    report: Mapping[str, Any],
    profile: Mapping[str, Any],
    slices: Sequence[Mapping[str, Any]],
    cfg: DriftConfig,
) -> str:
    pkg = report["package"]
    entries = {**report["features"], **report["predictions"]}
    refs = {
        **(profile.get("features") or {}),
        **{f"score/{c}": h for c, h in (profile.get("scores") or {}).items()},
    }
    if profile.get("risk"):
        refs["risk"] = profile["risk"]
    ranked = sorted((k for k in entries if k in refs), key=lambda k: -entries[k]["psi"])
    shown = [k for k in ranked if entries[k]["status"] != "ok"][: cfg.report.max_feature_plots]
    if not shown:
        shown = ranked[: min(4, cfg.report.max_feature_plots)]
    imgs = [
        f"<img src='data:image/png;base64,{_png(histogram_figure(k, refs[k], entries[k]))}'>" for k in shown
    ]
    head = ["name", "kind", "PSI", "test", "statistic", "p-value", "status", "note"]
    table = "".join(_row(k, e) for k, e in entries.items())
    quality = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in report["quality"].items())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.get("notes", []))
    over_time = (
        f"<img src='data:image/png;base64,{_png(time_figure(slices))}'>"
        if slices
        else "<p>too few timed predictions</p>"
    )
    color = COLORS[report["status"]]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Drift report: {html.escape(str(pkg.get("name")))}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:12px}} img{{margin:4px}}</style></head><body>
<h1>Drift report: <span style="color:{color}">{report["status"]}</span></h1>
<p>Package <b>{html.escape(str(pkg.get("name")))}</b> version {pkg.get("version")} id
<code>{str(pkg.get("package_id"))[:12]}</code>; current: {html.escape(str(report.get("current")))};
window {html.escape(json.dumps(report["window"]))}; n_reference {report["n_reference"]},
n_current {report["n_current"]}. Drifted: {html.escape(", ".join(report["drifted"]) or "none")}.</p>
<ul>{notes}</ul>
<h2>PSI</h2><img src='data:image/png;base64,{_png(psi_figure(entries, cfg))}'>
<h2>Reference vs current</h2>{"".join(imgs)}
<h2>Scores over time</h2>{over_time}
<h2>All statistics</h2><table><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr>{table}</table>
<h2>Data quality</h2><table>{quality}</table>
</body></html>
"""


def write_report(
    report: Mapping[str, Any],
    profile: Mapping[str, Any],
    slices: Sequence[Mapping[str, Any]],
    cfg: DriftConfig,
    out_dir: Path,
) -> tuple[Path, Path]:
    """``drift.json`` and ``report.html`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "drift.json"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    html_path = out_dir / "report.html"
    html_path.write_text(render_html(report, profile, slices, cfg), encoding="utf-8")
    return html_path, json_path
