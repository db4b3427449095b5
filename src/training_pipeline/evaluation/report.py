"""A compact test report: one row per class (precision, recall, F1) under the averaged metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.table import Table


def metrics_table(metrics: Mapping[str, float], class_names: Sequence[str], stage: str = "test") -> Table:
    """Per-class precision/recall/F1 rows, the macro row, other averages in the caption."""
    table = Table(title=f"{stage} metrics", show_lines=False)
    for col in ("class", "precision", "recall", "F1"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for c in class_names:
        if f"{stage}/f1/{c}" in metrics:
            table.add_row(c, *(f"{metrics[f'{stage}/{m}/{c}']:.3f}" for m in ("precision", "recall", "f1")))
    table.add_section()
    table.add_row(
        "macro",
        *(
            f"{metrics.get(f'{stage}/{m}', float('nan')):.3f}"
            for m in ("precision_macro", "recall_macro", "f1_macro")
        ),
    )
    extras = ", ".join(
        f"{m} {metrics[f'{stage}/{m}']:.3f}"
        for m in ("f1_micro", "auroc", "auprc", "family_acc")
        if f"{stage}/{m}" in metrics
    )
    table.caption = extras
    return table


def print_metrics(metrics: Mapping[str, float], class_names: Sequence[str], stage: str = "test") -> None:
    """Print ``metrics_table`` to the console."""
    Console().print(metrics_table(metrics, class_names, stage))
