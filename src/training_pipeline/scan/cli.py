"""``scathat-scan`` / ``python src/predict.py``: scan contracts and report how risky they are and why.

    scathat-scan contract.sol                       # compiled with the solc its pragma asks for
    scathat-scan contract.sol --transactions txs.csv --output report.json
    scathat-scan runtime.hex                        # or --bytecode 0x6080...
    scathat-scan contracts.jsonl                    # every record of a contract interchange file
    scathat-scan txs.csv --address 0xabc...         # a transaction history alone
    scathat-scan contract.sol --model models:/scathat-pipeline@challenger
    scathat-scan contract.sol --model 3             # version 3 of scathat-pipeline in the registry
    scathat-scan contract.sol --model outputs/packages/scathat-pipeline-<id>.tar.gz
    scathat-scan contract.sol --static-analysis     # Slither too: the aggregator's static-analysis view
    scathat-scan contract.sol --pipeline-dir outputs/pipeline/<name>             # development: a run dir
    scathat-scan contract.sol --checkpoint outputs/train/runs/<run>/checkpoints/best.ckpt
    scathat-scan contracts/ --output scan.sarif --fail-on high   # CI: SARIF for code scanning, gate on risk
    scathat-scan creation.hex --format json         # creation code: its runtime part is scanned

Models: a model package, verified file by file before loading: the registry's champion
(models:/scathat-pipeline@champion) unless --model names another registry version or a package path. For
development --pipeline-dir (a train-all run dir) or --checkpoint (a single base model: its own, uncalibrated
risk; read weights_only) skip packaging. The report's "models" names the package id and version used.
Without --static-analysis the static-analysis view (if the aggregator has one) is masked. Bad input is one
`error:` line and exit status 2.

Outputs: --format table (default), json (--json) or sarif (SARIF 2.1.0: one result per vulnerability class a
contract is flagged for, its level from the contract's risk level); --output FILE writes JSON, or SARIF when
FILE ends with .sarif or --format sarif is given. The JSON report carries "schema_version", "tool" and the
"models" used (package id and version). Exit status: 0 scanned, 1 when --fail-on LEVEL is given and a
contract's risk level reaches LEVEL (low < medium < high < critical), 2 on bad input (wins over 1).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from training_pipeline import __version__
from training_pipeline.scan.inputs import collect_inputs
from training_pipeline.scan.render import render
from training_pipeline.scan.report import report_payload
from training_pipeline.scan.sarif import to_sarif
from training_pipeline.scan.scanner import DEFAULT_MODEL, Scanner
from training_pipeline.utils.run import one_line, quiet_known_warnings, user_errors

FORMATS = ("table", "json", "sarif")
FAIL_LEVELS = ("low", "medium", "high", "critical")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The scan command line."""
    p = argparse.ArgumentParser(
        description="Scan smart contracts for security risk.",
        epilog=(__doc__ or "").partition("\n\n")[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"scathat-scan {__version__}")
    p.add_argument(
        "inputs",
        nargs="*",
        help=".sol or a folder of them, runtime bytecode (.hex/.bin/.txt or 0x...), .csv history, "
        ".jsonl/.parquet contracts",
    )
    p.add_argument(
        "--bytecode",
        help="runtime bytecode: hex string or file (with one contract: added as its bytecode view)",
    )
    p.add_argument("--transactions", help="transaction CSV (explorer export) of the contract")
    p.add_argument("--address", help="the contract's address in the transaction CSV (default: detected)")
    p.add_argument("--solc", help="compiler version for .sol inputs (default: from the pragma)")
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="folder inputs: skip .sol files whose path below the folder, or a name in it, matches this "
        "glob (repeatable)",
    )
    p.add_argument(
        "--include-tests",
        action="store_true",
        help="folder inputs: also scan test/, tests/, *.t.sol and mock files (skipped by default)",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--model",
        help=f"registry reference (models:/<name>@<alias>, models:/<name>/<version>, a version number) or a "
        f"package dir/.tar.gz (default: {DEFAULT_MODEL})",
    )
    which.add_argument("--pipeline-dir", help="development: a train-all run dir instead of a package")
    which.add_argument("--checkpoint", help="development: one base-model checkpoint instead of a package")
    p.add_argument(
        "--static-analysis",
        action="store_true",
        help="run Slither on .sol inputs (cached) and feed its findings to the aggregator",
    )
    p.add_argument(
        "--format", choices=FORMATS, default=None, help="what to print: table (default), json or sarif"
    )
    p.add_argument("--json", dest="format", action="store_const", const="json", help="= --format json")
    p.add_argument(
        "--output", help="write the report here: JSON, or SARIF for a .sarif name or --format sarif"
    )
    p.add_argument(
        "--fail-on",
        choices=FAIL_LEVELS,
        help="exit 1 when a scanned contract's risk level reaches this level (CI gate)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Scan the inputs of ``argv``; 0 when reported, 2 (one ``error:`` line on stderr) on bad input."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_known_warnings()
    try:
        found = collect_inputs(
            args.inputs,
            args.bytecode,
            args.transactions,
            args.address,
            args.solc,
            exclude=args.exclude,
            include_tests=args.include_tests,
        )
        for problem in found.errors:  # files that could not be compiled; the others are still scanned
            print(f"error: {problem}", file=sys.stderr, flush=True)
        if found.skipped:
            names = ", ".join(found.skipped[:10]) + (", ..." if len(found.skipped) > 10 else "")
            note = f"note: {len(found.skipped)} not deployable, not scanned: {names}"
            print(note, file=sys.stderr, flush=True)
        if not found.items:
            return 2
        items = found.items
        if args.checkpoint:
            scanner = Scanner.from_checkpoint(args.checkpoint, args.static_analysis)
        elif args.pipeline_dir:
            scanner = Scanner.from_pipeline(args.pipeline_dir, args.static_analysis)
        else:
            scanner = Scanner.from_model(args.model, args.static_analysis)
        reports = scanner.scan(items)
    except user_errors() as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr, flush=True)
        return 2
    emit(args, report_payload(scanner.models, reports))
    return 2 if found.errors else fail_status(reports, args.fail_on)


def emit(args: argparse.Namespace, payload: dict) -> None:
    """Print the report in ``--format`` and write ``--output`` (SARIF for .sarif or --format sarif)."""
    fmt = args.format or "table"
    if args.output:
        path = Path(args.output)
        sarif = fmt == "sarif" or path.suffix.lower() == ".sarif"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")  # renamed into place: never half a report
        tmp.write_text(json.dumps(to_sarif(payload) if sarif else payload, indent=2) + "\n")
        tmp.replace(path)
    if fmt == "table":
        render(payload["reports"])
        if args.output:
            print(f"report: {args.output}")
    else:
        print(json.dumps(to_sarif(payload) if fmt == "sarif" else payload, indent=2))


def fail_status(reports: list[dict], fail_on: str | None) -> int:
    """1 when ``fail_on`` is given and some report's risk level reaches it, else 0."""
    if fail_on is None:
        return 0
    rank = {level: i for i, level in enumerate(FAIL_LEVELS)}
    reached = [r for r in reports if rank.get(r.get("risk_level") or "", -1) >= rank[fail_on]]
    return 1 if reached else 0
