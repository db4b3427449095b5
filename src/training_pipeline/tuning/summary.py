"""Summaries of a multirun: mean ± std of every test metric over its jobs (cross-validation folds, seeds)
and the best job by the optimized metric (sweeps). Written as summary.json and summary.md in the sweep dir.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from training_pipeline.utils.run import write_json

log = logging.getLogger(__name__)


def summarize_multirun(sweep_dir: str | Path, direction: str = "maximize") -> dict[str, Any]:
    """Aggregate ``<sweep_dir>/<job>/metrics.json`` files; jobs that failed are counted, not averaged."""
    sweep_dir = Path(sweep_dir)
    jobs: list[dict[str, Any]] = []
    failed: list[str] = []
    for job_dir in sorted(
        (p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    ):
        metrics_file = job_dir / "metrics.json"
        if not metrics_file.exists():
            failed.append(job_dir.name)
            continue
        m = json.loads(metrics_file.read_text())
        overrides_file = job_dir / ".hydra" / "overrides.yaml"
        overrides = overrides_file.read_text().strip() if overrides_file.exists() else ""
        jobs.append(
            {
                "job": job_dir.name,
                "value": m.get("value"),
                "optimized_metric": m.get("optimized_metric"),
                "test": m.get("test", {}),
                "overrides": overrides,
            }
        )
    names = sorted({k for j in jobs for k in j["test"]})
    aggregate = {}
    for name in names:
        values = [j["test"][name] for j in jobs if name in j["test"]]
        aggregate[name] = {
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values),
        }
    scored = [j for j in jobs if j["value"] is not None]
    best = (max if direction == "maximize" else min)(scored, key=lambda j: j["value"]) if scored else None
    summary = {
        "sweep_dir": str(sweep_dir),
        "n_jobs": len(jobs),
        "failed_jobs": failed,
        "test": aggregate,
        "best_job": best,
        "direction": direction,
    }
    write_json(sweep_dir / "summary.json", summary)
    (sweep_dir / "summary.md").write_text(render_markdown(summary))
    return summary


def render_markdown(summary: dict[str, Any]) -> str:
    lines = [f"# Multirun summary: {summary['n_jobs']} jobs", ""]
    if summary["failed_jobs"]:
        lines += [f"Failed jobs (no metrics.json): {', '.join(summary['failed_jobs'])}", ""]
    best = summary["best_job"]
    if best:
        lines += [
            f"Best job {best['job']}: {best['optimized_metric']} = {best['value']:.4f}",
            "",
            "```",
            best["overrides"],
            "```",
            "",
        ]
    lines += ["| test metric | mean | std | n |", "|---|---|---|---|"]
    for name, agg in summary["test"].items():
        if name.count("/") == 1:  # per-class metrics stay in summary.json
            lines.append(f"| {name} | {agg['mean']:.4f} | {agg['std']:.4f} | {agg['n']} |")
    return "\n".join(lines) + "\n"


class MultirunSummaryCallback(Callback):
    """Hydra callback: writes the summary when a multirun ends (registered in conf/hydra/default.yaml)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        direction = str(config.hydra.sweeper.get("direction", "maximize"))
        if "minimize" in direction:
            direction = "minimize"
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        summary = summarize_multirun(sweep_dir, "minimize" if direction == "minimize" else "maximize")
        log.info("Multirun summary written to %s", sweep_dir / "summary.md")
        print(render_markdown(summary), file=sys.stderr)


if __name__ == "__main__":  # python -m training_pipeline.tuning.summary <sweep_dir>
    print(render_markdown(summarize_multirun(sys.argv[1])))
