"""Figures for reports and TensorBoard (matplotlib, Agg): reliability diagrams (binary risk; multi-label
vulnerability probabilities pooled and per class), the confusion matrix and per-class 2×2 confusions.

Figures are built with ``matplotlib.figure.Figure`` and an Agg canvas, never pyplot, so no global backend
state or GUI is involved and figures are freed with their last reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def frequency_bars(ax: Any, bins: Sequence[dict[str, float]], **style: Any) -> None:
    """One bar per non-empty confidence bin, spanning the bin, at its observed frequency."""
    kept = [b for b in bins if b["count"] and np.isfinite(b["frequency"])]
    ax.bar(
        [b["lo"] for b in kept],
        [b["frequency"] for b in kept],
        width=[b["hi"] - b["lo"] for b in kept],
        align="edge",
        **style,
    )


def reliability_figure(
    bins: Sequence[dict[str, float]], raw_bins: Sequence[dict[str, float]] | None = None
) -> Figure:
    """Observed frequency per confidence bin (filled: calibrated, outline: raw) against the diagonal."""
    fig = Figure(figsize=(4, 4), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()

    frequency_bars(ax, bins, color="#4285f4", label="calibrated")
    if raw_bins is not None:
        frequency_bars(ax, raw_bins, fill=False, edgecolor="#787878", label="raw")
    ax.plot([0, 1], [0, 1], color="#dc3232", linewidth=1, label="perfect")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted risk", ylabel="observed frequency")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return fig


def confusion_figure(cm: torch.Tensor | np.ndarray, class_names: Sequence[str]) -> Figure:
    """Rows = true classes, columns = predicted; cells shaded by row share and labelled with their counts."""
    cm = np.asarray(cm.cpu() if isinstance(cm, torch.Tensor) else cm, dtype=np.int64)
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(class_names)
    fig = Figure(figsize=(1.2 + 0.6 * n, 1.0 + 0.6 * n), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(n):
        for j in range(n):
            color = "white" if share[i, j] > 0.5 else "black"
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", color=color, fontsize="small")
    ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize="x-small")
    ax.set_yticks(range(n), class_names, fontsize="x-small")
    ax.set(xlabel="predicted", ylabel="true")
    fig.tight_layout()
    return fig


def figure_array(fig: Figure) -> np.ndarray:
    """The rendered figure as an RGB array (H, W, 3) of uint8."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG."""
    fig.savefig(str(path), format="png")
    return Path(path)


def confusion_markdown(cm: torch.Tensor, class_names: Sequence[str]) -> str:
    """The confusion matrix as a markdown table with class names (TensorBoard's text tab)."""
    head = "| true \\ predicted | " + " | ".join(f"{i} {c}" for i, c in enumerate(class_names)) + " |"
    sep = "|---" * (len(class_names) + 1) + "|"
    rows = [
        f"| {i} {c} | " + " | ".join(str(int(v)) for v in cm[i]) + " |" for i, c in enumerate(class_names)
    ]
    return "\n".join([head, sep, *rows])


def _grid(n: int, cols: int, cell: float) -> tuple[Figure, list]:
    rows = max(1, -(-n // cols))
    cols = max(1, min(cols, n))
    fig = Figure(figsize=(cell * cols, cell * rows), dpi=80)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    return fig, axes


def multilabel_confusion_figure(
    cms: torch.Tensor | np.ndarray,
    class_names: Sequence[str],
    thresholds: Sequence[float] | None = None,
    cols: int = 3,
) -> Figure:
    """One 2×2 confusion per class (rows = true no/yes, columns = predicted no/yes) in a grid, each titled
    with its class (and decision threshold); cells shaded by row share and labelled with their counts."""
    cms = np.asarray(cms.cpu() if isinstance(cms, torch.Tensor) else cms, dtype=np.int64)
    fig, axes = _grid(len(class_names), cols, 2.2)
    for k, (ax, name) in enumerate(zip(axes, class_names, strict=True)):
        cm = cms[k]
        share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
        for i in range(2):
            for j in range(2):
                color = "white" if share[i, j] > 0.5 else "black"
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", color=color, fontsize="small")
        ax.set_xticks([0, 1], ["no", "yes"], fontsize="x-small")
        ax.set_yticks([0, 1], ["no", "yes"], fontsize="x-small")
        title = name if thresholds is None else f"{name} (t={float(thresholds[k]):.2f})"
        ax.set_title(title, fontsize="x-small")
        ax.set_xlabel("predicted", fontsize="x-small")
        ax.set_ylabel("true", fontsize="x-small")
    fig.tight_layout()
    return fig


def multilabel_reliability_figure(
    pooled: Sequence[dict[str, float]], per_class: dict[str, Sequence[dict[str, float]]]
) -> Figure:
    """Left: observed frequency per confidence bin over every assessed (contract, class) entry, against the
    diagonal; right: each class's observed frequency at its bins' mean confidence."""
    fig = Figure(figsize=(8, 4), dpi=80)
    FigureCanvasAgg(fig)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    frequency_bars(left, pooled, color="#4285f4", label="all classes")
    for name, bins in per_class.items():
        pts = [b for b in bins if b["count"] and np.isfinite(b["frequency"])]
        right.plot(
            [b["confidence"] for b in pts],
            [b["frequency"] for b in pts],
            marker="o",
            markersize=3,
            label=name,
        )
    for ax, title in ((left, "pooled"), (right, "per class")):
        ax.plot([0, 1], [0, 1], color="#dc3232", linewidth=1, label="perfect")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted probability", ylabel="observed frequency")
        ax.set_title(title, fontsize="small")
    left.legend(loc="upper left", fontsize="small")
    right.legend(loc="upper left", fontsize="xx-small", ncol=2)
    fig.tight_layout()
    return fig
