"""The risk reports on the terminal: one table row per input, then each input's contributions, the guard's
choice, notes on the input, Slither's findings and the top lines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

LEVEL_COLORS = {"low": "green", "medium": "yellow", "high": "red", "critical": "bold red"}


def render(reports: Sequence[dict[str, Any]], console: Console | None = None) -> None:
    """A readable summary: risk, level, views and top vulnerabilities per input, then why."""
    if console is None:
        console = Console()
        console = console if console.is_terminal else Console(width=150)
    table = Table(title="Risk report")
    for col in ("input", "risk", "level", "views", "top vulnerabilities"):
        table.add_column(col, justify="right" if col == "risk" else "left")
    for r in reports:
        views = ", ".join(v for v, info in r["views"].items() if info["present"])
        vulns = ", ".join(f"{c} {p:.2f}" for c, p in list((r.get("vulnerabilities") or {}).items())[:3])
        level = r.get("risk_level") or "-"
        risk = "-" if r.get("risk") is None else f"{r['risk']:.3f}"
        color = LEVEL_COLORS.get(level, "white")
        table.add_row(escape(r["input"]), risk, f"[{color}]{level}[/]", views, vulns)
    console.print(table)
    for r in reports:
        parts = [
            f"{v}: gate {c['gate']:.2f}, delta {c['delta']:+.3f}"
            for v, c in (r.get("contributions") or {}).items()
        ]
        behavior = r["views"].get("behavior")
        if behavior and behavior.get("present"):
            parts.append(f"history: {behavior['predicted']} ({len(behavior['flagged_tx'])} flagged tx)")
        if r.get("guard"):
            parts.append(
                f"risk of {r['guard']['view']} alone (guard; aggregator {r['guard']['aggregator_risk']:.3f})"
            )
        console.print(f"[bold]{escape(r['input'])}[/bold]  " + " | ".join(parts))
        for note in r.get("notes") or []:
            console.print(f"    note: {escape(note)}")
        static = r["views"].get("static")
        for cls, f in ((static or {}).get("findings") or {}).items():
            where = f"lines {', '.join(map(str, f['lines'][:5]))}" if f["lines"] else "no lines"
            tag, checks = escape("[" + cls + "]"), ", ".join(f["checks"])
            console.print(f"    slither {tag} {f['count']} finding(s), {f['max_impact']}: {checks} ({where})")
        for line in r.get("top_lines") or []:
            tag = escape("[" + line["class"] + "]")
            console.print(f"    line {line['line']:>4} {tag} {escape(line['text'][:100])}")
