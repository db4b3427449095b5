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

Models: a model package, verified file by file before loading: the registry's champion
(models:/scathat-pipeline@champion) unless --model names another registry version or a package path. For
development --pipeline-dir (a train-all run dir) or --checkpoint (a single base model: its own, uncalibrated
risk; read weights_only) skip packaging. The report's "models" names the package id and version used.
Without --static-analysis the static-analysis view (if the aggregator has one) is masked. Bad input is one
`error:` line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from training_pipeline.scan.inputs import read_inputs
from training_pipeline.scan.render import render
from training_pipeline.scan.scanner import DEFAULT_MODEL, Scanner
from training_pipeline.utils.run import one_line, quiet_known_warnings, user_errors


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The scan command line."""
    p = argparse.ArgumentParser(description="Scan smart contracts for security risk.")
    p.add_argument(
        "inputs",
        nargs="*",
        help=".sol, runtime bytecode (.hex/.bin/.txt or 0x...), .csv history, .jsonl/.parquet contracts",
    )
    p.add_argument(
        "--bytecode",
        help="runtime bytecode: hex string or file (with one contract: added as its bytecode view)",
    )
    p.add_argument("--transactions", help="transaction CSV (explorer export) of the contract")
    p.add_argument("--address", help="the contract's address in the transaction CSV (default: detected)")
    p.add_argument("--solc", help="compiler version for .sol inputs (default: from the pragma)")
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
    p.add_argument("--output", help="write the JSON report here")
    p.add_argument("--json", action="store_true", help="print the JSON report instead of the table")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Scan the inputs of ``argv``; 0 when reported, 2 (one ``error:`` line on stderr) on bad input."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_known_warnings()
    try:
        items = read_inputs(args.inputs, args.bytecode, args.transactions, args.address, args.solc)
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
    payload = {"models": scanner.models, "reports": reports}
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(payload, indent=2) + "\n")
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        render(reports)
        if args.output:
            print(f"report: {args.output}")
    return 0
