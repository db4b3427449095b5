"""Slither weak labels: run every Slither detector over contracts (offline, through solc-js), cache the raw
findings by source sha256, and optionally score Slither's contract-level predictions against reference labels.

python scripts/weak_label.py --source cgt                          # all of CGT (default path from the config)
python scripts/weak_label.py --source cgt --sample 400 --seed 0 --agreement
python scripts/weak_label.py --source corpus corpus.jsonl --agreement   # an exported generated corpus
python scripts/weak_label.py --source solidifi --limit 20
python scripts/weak_label.py --source file contracts/                # a .sol file or a folder of them
python scripts/weak_label.py --source real_code --agreement          # npm audited code: flag rates

--source real_code (records of scripts/build_real_code.py, default data dir `data`) analyses each contract's
file in place in its installed npm tree, imports resolved from disk, with the solc release it was compiled
with; it is cached by the hash of the resolved input set (every imported file and the release), and
--agreement writes its flag rates (unlabeled audited code: the false-alarm view) instead of agreement.

The cache (default data/weak_labels/slither/, --out elsewhere) holds one JSON per source and Slither version;
a rerun analyses only new sources. --agreement writes outputs/weak_labels/agreement.{md,json} (one section per
source; --report-dir elsewhere). Bad input is one `error:` line and exit status 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from training_pipeline.data.weak_labels import agreement as agree
from training_pipeline.data.weak_labels.cache import FindingsCache
from training_pipeline.data.weak_labels.mapping import (
    CONFIDENCES,
    IMPACTS,
    DetectorMapping,
    load_config,
    record_predictions,
)
from training_pipeline.data.weak_labels.runner import cache_key, label_sources, progress_printer
from training_pipeline.data.weak_labels.sources import SOURCES, load_source, select, tree_sources
from training_pipeline.errors import UserError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True, choices=SOURCES, help="what to label")
    p.add_argument("path", nargs="?", help="input path (cgt/solidifi default to the config's `sources`)")
    p.add_argument("--limit", type=int, help="only the first N contracts (after --sample)")
    p.add_argument("--sample", type=int, help="a random N contracts (seeded by --seed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, help="analysis processes (config: workers, 2)")
    p.add_argument("--timeout", type=float, help="seconds per contract, compile + analysis (config: 60)")
    p.add_argument("--out", type=Path, help="cache folder (config: cache_dir, data/weak_labels/slither)")
    p.add_argument("--config", type=Path, help="weak-label config (default: conf/weak_labels/slither.yaml)")
    p.add_argument("--agreement", action="store_true", help="score Slither against the source's labels")
    p.add_argument("--section", help="name of the agreement section (default: the source, plus the sample)")
    p.add_argument("--report-dir", type=Path, help="agreement folder (config: report_dir)")
    p.add_argument("--min-impact", choices=IMPACTS, help="lowest impact a finding needs to count")
    p.add_argument("--min-confidence", choices=CONFIDENCES, help="lowest confidence a finding needs to count")
    p.add_argument(
        "--retry",
        action="append",
        default=[],
        choices=("compile_error", "unsupported_pragma", "error", "timeout"),
        help="analyse cached failures with this status again (repeatable)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    for name in ("limit", "sample", "workers"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name} must be at least 1")
    if args.timeout is not None and args.timeout <= 0:
        p.error("--timeout must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    """Label, summarize, and optionally write the agreement report; 2 on bad input."""
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        cfg = load_config(args.config)
        mapping = DetectorMapping.from_config(
            cfg, min_impact=args.min_impact, min_confidence=args.min_confidence
        )
        if args.agreement and args.source == "file":
            raise UserError(
                "--agreement needs labelled records (--source cgt, solidifi or corpus) "
                "or real_code (flag rates)"
            )
        records = select(load_source(args.source, args.path, cfg), args.limit, args.sample, args.seed)
        cache = FindingsCache(args.out or cfg.get("cache_dir"))
        timeout = float(args.timeout or cfg.get("timeout_s", 60))
        tasks = tree_sources(records) if args.source == "real_code" else [r["source_code"] for r in records]
        keys = [cache_key(t) for t in tasks]
        results, summary = label_sources(
            tasks,
            cache,
            workers=args.workers or int(cfg.get("workers", 2)),
            timeout_s=timeout,
            bridge=cfg.get("bridge"),
            progress=None if args.quiet else progress_printer(),
            retry=set(args.retry),
        )
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.line())
    print(f"cache: {cache.dir}")
    predictions = {sha: record_predictions(rec, mapping) for sha, rec in results.items()}
    if args.source == "file" and len(records) <= 50:
        for r, key in zip(records, keys, strict=True):
            rec = results[key]
            pred = predictions[key]
            if pred is None:
                shown = f"{rec['status']}: {rec.get('reason', '')}"
            else:
                shown = ", ".join(pred.labels) or "no class"
            print(f"{r['id']}: {shown}")
    if args.agreement:
        meta = {
            "command": "python scripts/weak_label.py " + shlex.join(sys.argv[1:] if argv is None else argv),
            "slither": cache.version,
            "thresholds": f"impact >= {mapping.min_impact}, confidence >= {mapping.min_confidence}",
            "run seconds": round(time.perf_counter() - start, 1),
            "analysed this run": summary.analysed,
            "from cache": summary.cached,
        }
        report_dir = args.report_dir or cfg.get("report_dir", "outputs/weak_labels")
        if args.source == "real_code":
            section = args.section or "npm audited code: flag rates"
            rates = agree.flag_rates(records, [results[k] for k in keys], mapping)
            md, js = agree.write_flag_rates(section, rates, meta, report_dir)
            print(f"\n## {section}\n\n{agree.flag_rate_markdown(rates)}\n")
            print(f"report: {md} and {js}")
            return 0
        pairs = []
        for r, key in zip(records, keys, strict=True):
            pred = predictions[key]
            pairs.append((r, None if pred is None else pred.labels))
        per_class, coverage = agree.agreement(pairs)
        section = args.section or (
            f"{args.source} (random {args.sample}, seed {args.seed})" if args.sample else args.source
        )
        md, js = agree.write_report(
            section,
            {"per_class": per_class, "coverage": coverage, "meta": meta},
            report_dir,
        )
        print(f"\n## {section}\n\n{agree.markdown_table(per_class)}\n")
        print(f"agreement: {md} and {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
