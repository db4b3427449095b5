"""Per-arm summary of the inference log: what to watch while a challenger takes a share of the traffic.

    python -m training_pipeline.serve.log_summary [outputs/serve/inference.jsonl] [--last 1000] [--json]

For each arm (champion, challenger, and the challenger's shadow answers): requests, their share, the model
versions that answered, error rate, mean risk, the share rated high or critical, and p50/p95 latency. Reads
the log and its rotated backups (newest last), skipping lines that are not JSON (a torn last line).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from training_pipeline.config import project_root
from training_pipeline.utils.run import one_line

HIGH = ("high", "critical")


def default_log() -> Path:
    return project_root() / "outputs" / "serve" / "inference.jsonl"


def read_log(path: Path, last: int | None = None) -> list[dict[str, Any]]:
    """The log's records, oldest first (rotated backups ``.N`` … ``.1`` before the current file)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no inference log (is the service's inference_log.path elsewhere?)")
    backups = sorted(path.parent.glob(f"{path.name}.*"), key=lambda p: -int(p.suffix[1:] or 0))
    records = []
    for file in [*(b for b in backups if b.suffix[1:].isdigit()), path]:
        for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records[-last:] if last else records


def _versions(records: Iterable[dict[str, Any]], arm: str) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for r in records:
        model = (r.get("models") or {}).get(arm) or {}
        counts[f"{model.get('name', '?')}/{model.get('version', model.get('package_id', '?'))}"] += 1
    return dict(counts)


def _stats(rows: Sequence[dict[str, Any]], total: int, arm: str) -> dict[str, Any]:
    ok = [r for r in rows if not r.get("error")]
    risks = [r["risk"] for r in ok if isinstance(r.get("risk"), int | float)]
    latency = sorted(r["latency_ms"] for r in rows if isinstance(r.get("latency_ms"), int | float))
    q = statistics.quantiles(latency, n=20, method="inclusive") if len(latency) > 1 else latency * 19
    return {
        "requests": len(rows),
        "share": round(len(rows) / total, 3) if total else 0.0,
        "models": _versions(rows, arm),
        "error_rate": round(1 - len(ok) / len(rows), 3) if rows else 0.0,
        "mean_risk": round(statistics.fmean(risks), 4) if risks else None,
        "high_or_critical": round(sum(r.get("risk_level") in HIGH for r in ok) / len(ok), 3) if ok else None,
        "p50_ms": round(q[9], 1) if q else None,
        "p95_ms": round(q[18], 1) if q else None,
    }


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-arm statistics of inference-log ``records`` (``challenger (shadow)``: the shadow answers)."""
    scans = [r for r in records if r.get("arm")]
    by_arm: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in scans:
        by_arm[r["arm"]].append(r)
    out = {arm: _stats(rows, len(scans), arm) for arm, rows in sorted(by_arm.items())}
    shadows = [
        r["shadow"] | {"models": {"challenger": r["shadow"].get("model")}} for r in scans if r.get("shadow")
    ]
    if shadows:
        out["challenger (shadow)"] = _stats(shadows, len(scans), "challenger")
    return out


def render(summary: dict[str, dict[str, Any]]) -> str:
    header = ("arm", "requests", "share", "models", "errors", "mean risk", "high+", "p50 ms", "p95 ms")
    rows = [
        (
            arm,
            s["requests"],
            s["share"],
            ", ".join(f"{m} ({n})" for m, n in s["models"].items()),
            s["error_rate"],
            s["mean_risk"],
            s["high_or_critical"],
            s["p50_ms"],
            s["p95_ms"],
        )
        for arm, s in summary.items()
    ]
    cells = [tuple("-" if v is None else str(v) for v in row) for row in [header, *rows]]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "log", nargs="?", type=Path, default=None, help="default: outputs/serve/inference.jsonl"
    )
    parser.add_argument("--last", type=int, default=None, help="only the last N requests")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        summary = summarize(read_log(args.log or default_log(), args.last))
    except (OSError, ValueError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2) if args.json else render(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
