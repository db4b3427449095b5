"""``python -m training_pipeline.monitoring drift``: the inference log (or a contract file, Solidity or
bytecode, a transaction CSV) against a model package's reference profile; writes ``drift.json`` and
``report.html`` under ``outputs/monitoring/<time>/`` and raises the configured alerts.

Exit codes: 0 no drift, 1 warning, 2 alert (the higher of the report's status and the alerts' severities),
4 bad input (one ``error: ...`` line: a missing file, not a package, a package without a profile, a wrong
config key).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from training_pipeline.deploy.package import Package, PackageError, open_package, verify_package
from training_pipeline.errors import DataError, UserError
from training_pipeline.evaluation.profile import PROFILE_FILE
from training_pipeline.monitoring import alerts
from training_pipeline.monitoring.drift import (
    STATUSES,
    Current,
    compare,
    from_log,
    is_inference_log,
    load_config,
    parse_window,
    time_slices,
)
from training_pipeline.monitoring.features import contract_features
from training_pipeline.monitoring.report import report_dir, write_report
from training_pipeline.utils.run import one_line, user_errors

EXIT_BAD_INPUT = 4
DEFAULT_PACKAGE = "models:/scathat-pipeline@champion"
USAGE_EXAMPLES = """\
examples:
  python -m training_pipeline.monitoring drift --package models:/scathat-pipeline@champion \\
      --current outputs/serve/inference.jsonl --window 7d
  python -m training_pipeline.monitoring drift --package outputs/packages/scathat-bytecode_detector-<id> \\
      --current new_contracts.jsonl --out /tmp/drift

exit codes: 0 ok, 1 warning, 2 alert, 4 bad input (one error line)
"""


class _Parser(argparse.ArgumentParser):
    """Usage errors are bad input: one ``error:`` line and exit 4 (argparse's 2 would read as an alert)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m training_pipeline.monitoring",
        description="Drift of the served inputs and predictions against a model package's reference profile.",
        epilog=USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    p = sub.add_parser(
        "drift",
        help="drift report of the inference log (or contracts) against a package's reference profile",
        epilog=USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--package",
        default=DEFAULT_PACKAGE,
        help=f"package directory, .tar.gz or registry ref (default {DEFAULT_PACKAGE})",
    )
    p.add_argument(
        "--current",
        type=Path,
        default=None,
        help="inference log .jsonl (default outputs/serve/inference.jsonl), contract records "
        "(.jsonl/.json/.parquet), .sol/.hex files, or a transaction .csv",
    )
    p.add_argument(
        "--window", default=None, help="inference-log window ending at its newest record: 30m, 12h, 7d, all"
    )
    p.add_argument("--out", type=Path, default=None, help="report folder (default outputs/monitoring/<time>)")
    p.add_argument(
        "--config", type=Path, default=None, help="drift settings (default conf/monitoring/default.yaml)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. psi.alert=0.3",
    )
    p.add_argument(
        "--alerts-config", default=None, help="alert rules and delivery (default conf/monitoring/alerts.yaml)"
    )
    p.add_argument("--no-alerts", action="store_true", help="write the report only; raise no alerts")
    p.add_argument("--json", action="store_true", help="print the JSON report instead of the summary")
    return parser


def load_package(ref: str) -> tuple[Package, dict[str, Any]]:
    """The verified package of a directory, ``.tar.gz`` or registry ref, and its name/version/id."""
    path = Path(ref)
    if path.exists():
        pkg = open_package(path)
        return pkg, {"name": pkg.name, "version": pkg.meta.get("version"), "package_id": pkg.id}
    if not ref.startswith("models:/") and not ref.isdigit():
        raise UserError(
            f"--package {ref}: no such package path, and not a registry reference (models:/<name>@<alias>)"
        )
    from training_pipeline.deploy.registry import resolve  # noqa: PLC0415 - MLflow is slow to import

    local, info = resolve(ref)
    pkg = verify_package(local)
    return pkg, {"name": info.get("name") or pkg.name, "version": info.get("version"), "package_id": pkg.id}


def read_profile(pkg: Package) -> dict[str, Any]:
    path = pkg.path / PROFILE_FILE
    if not path.is_file():
        raise UserError(
            f"no reference profile in package {pkg.path} (packaged without one; repackage its run)"
        )
    try:
        profile = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PackageError(f"{path}: unreadable reference profile ({type(exc).__name__})") from None
    if not isinstance(profile, dict) or "features" not in profile:
        raise PackageError(f"{path}: not a reference profile (no features)")
    return profile


def read_current(path: Path, window: Any, package_id: str, score_source: str) -> Current:
    """The current data of ``path`` by its kind: inference log, contract records, Solidity/bytecode, CSV."""
    from training_pipeline.data.records import SUFFIXES
    from training_pipeline.scan.inputs import read_inputs

    if not path.exists():
        raise DataError(f"--current {path}: no such file")
    suffix = path.suffix.lower()
    if path.is_file() and suffix == ".jsonl" and is_inference_log(path):
        return from_log(path, window, package_id, score_source)
    if path.is_file() and suffix in SUFFIXES:
        from training_pipeline.data.records import read_records

        feats = [contract_features(r) for r in read_records(path)]
        kind = "contracts"
    else:
        items = read_inputs([str(path)])
        feats = [contract_features(item) for item in items]
        kind = "transactions" if suffix == ".csv" else "contracts"
    cur = Current(str(path), kind, features=feats)
    cur.window = {"length": "all", "records": len(feats)}
    cur.notes.append(f"{path}: inputs only, no model outputs: prediction drift not measured")
    return cur


def run_drift(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    window_text = args.window if args.window is not None else cfg.window
    window = parse_window(window_text)
    pkg, ident = load_package(args.package)
    profile = read_profile(pkg)
    current_path = args.current or _default_log()
    cur = read_current(Path(current_path), window, pkg.id, profile.get("score_source") or "probabilities")
    result = compare(profile, cur, cfg)
    report: dict[str, Any] = {
        "package": ident,
        "window": cur.window,
        "n_reference": int(profile.get("n_reference", 0)),
        "n_current": len(cur.features) if cur.kind != "inference_log" else len(cur.records),
        **result,
        "current": cur.source,
        "current_kind": cur.kind,
        "n_predictions": {"reference": profile.get("n_predictions"), "current": len(cur.predictions)},
        "risk_source": profile.get("risk_source"),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "notes": cur.notes,
    }
    out = Path(args.out) if args.out else report_dir(cfg.report.out_dir)
    html_path, json_path = write_report(
        report, profile, time_slices(cur.predictions, cfg.time_slices), cfg, out
    )
    status = report["status"]
    if not args.no_alerts:
        fired = alerts.fire(report, args.alerts_config, report_path=json_path)
        status = alerts.overall_status(fired, report)
        report["alerts"] = [a.to_dict() for a in fired]
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        drifted = ", ".join(report["drifted"]) or "none"
        print(
            f"drift {status}: {pkg.name} ({pkg.id[:12]}) vs {cur.source}: "
            f"{report['n_current']} current, drifted: {drifted}"
        )
        for note in cur.notes:
            print(f"note: {note}")
        print(f"report: {html_path}\njson: {json_path}")
    return STATUSES.index(status)


def _default_log() -> Path:
    from training_pipeline.config import project_root

    return project_root() / "outputs" / "serve" / "inference.jsonl"


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (4, already printed)
        return int(exc.code or 0)
    try:
        return run_drift(args)
    except (*user_errors(), OSError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
