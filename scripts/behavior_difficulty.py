"""The behavior model's difficulty curve: train and test it at several ``data.sim.difficulty`` values.

python scripts/behavior_difficulty.py                             # 0, 0.25, 0.5, 0.75, 1; default data
python scripts/behavior_difficulty.py --difficulties 0 0.5 1 --n-contracts 400 --epochs 5
python scripts/behavior_difficulty.py model.encoder=transformer   # any override of train.yaml

Each difficulty is one `python src/train.py model=behavior_model data.sim.difficulty=D` run (same seed, same
corpus contracts; the histories are simulated once per difficulty and cached under data/behavior/). Writes
outputs/behavior_difficulty/<time>/curve.{md,json,png} and each run's folder d<D>/ beside them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from training_pipeline.config import compose_task
from training_pipeline.errors import UserError
from training_pipeline.tasks import train
from training_pipeline.utils.run import quiet_known_warnings

METRICS = {"test/auroc": "test AUROC", "test/f1_macro": "macro-F1", "test/tx_f1": "per-tx F1"}


def run_one(difficulty: float, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Train and test the behavior model at one difficulty; its test metrics and wall time."""
    overrides = [
        "model=behavior_model",
        f"data.sim.difficulty={difficulty}",
        "trainer.enable_progress_bar=false",
        *([f"data.corpus.n_contracts={args.n_contracts}"] if args.n_contracts else []),
        *([f"trainer.max_epochs={args.epochs}"] if args.epochs else []),
        *args.overrides,
    ]
    cfg = compose_task("train.yaml", overrides, out / f"d{difficulty:g}")
    start = time.perf_counter()
    metrics, objects = train(cfg)
    return {
        "difficulty": difficulty,
        **{k: round(float(metrics[k]), 4) for k in (*METRICS, "test/auprc")},
        "test_histories": len(objects["datamodule"].splits["test"]),
        "epochs": objects["trainer"].current_epoch,
        "seconds": round(time.perf_counter() - start, 1),
        "data_version": objects["datamodule"].data_version,
    }


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    """The curve as a markdown table, with the command that made it."""
    lines = [
        f"Behavior model difficulty curve: `{command}`",
        "",
        "| difficulty | test AUROC | AUPRC | macro-F1 | per-tx F1 | test histories | epochs | wall time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['difficulty']:g} | {r['test/auroc']:.3f} | {r['test/auprc']:.3f} "
            f"| {r['test/f1_macro']:.3f} | {r['test/tx_f1']:.3f} | {r['test_histories']} | {r['epochs']} "
            f"| {r['seconds']:.0f} s |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Each metric against the difficulty (Agg canvas, no pyplot state)."""
    fig = Figure(figsize=(5, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = [r["difficulty"] for r in rows]
    for key, name in METRICS.items():
        ax.plot(xs, [r[key] for r in rows], marker="o", label=name)
    ax.set(xlabel="data.sim.difficulty", ylabel="test metric", ylim=(0, 1.02), title="behavior model")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of train.yaml, e.g. model.hidden=32")
    parser.add_argument("--difficulties", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--n-contracts", type=int, help="histories (corpus contracts); default: the config's")
    parser.add_argument("--epochs", type=int, help="trainer.max_epochs; default: the config's")
    parser.add_argument("--out", type=Path, default=Path("outputs") / "behavior_difficulty")
    args = parser.parse_args(argv)

    out = args.out / time.strftime("%Y-%m-%d_%H-%M-%S")
    quiet_known_warnings()
    command = " ".join(
        ["python", "scripts/behavior_difficulty.py", *(argv if argv is not None else sys.argv[1:])]
    )
    try:
        rows = [run_one(d, args, out) for d in args.difficulties]
    except (UserError, TypeError, HydraException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    (out / "curve.json").write_text(json.dumps({"command": command, "runs": rows}, indent=2) + "\n")
    table = markdown(rows, command)
    (out / "curve.md").write_text(table)
    plot(rows, out / "curve.png")
    print(table)
    print(f"written to {out}/curve.{{md,json,png}}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
