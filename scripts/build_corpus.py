"""Build (or reuse) the generated contract corpus and print its manifest; optionally export it.

python scripts/build_corpus.py                                  # the default corpus of `make train`
python scripts/build_corpus.py data.corpus.n_contracts=5000     # any data.* override of train.yaml
python scripts/build_corpus.py --export corpus.jsonl            # interchange format (JSONL or parquet)
python scripts/build_corpus.py --coverage --coverage-out docs/coverage.md  # what the generator covers
python scripts/build_corpus.py experiment=bytecode_pretrain_real --export-data pairs.jsonl --no-report

--export-data writes every record the configured data loads (all `data.sources`, after clone grouping) with
the split it gets, as one interchange file. A machine without Node.js or `data/` (a GPU machine) then trains
on the same records and splits with `data.sources=[file] data.path=<that file>`; options that act per source
(source_weights, val_sources, eval_sources, weak labels) do not carry over, and test records that eval_sources
leaves out are not written.

The corpus is built (and its manifest printed) when `data.sources` holds it or --export asks for it. Then it
prints the data quality report of the configured data (every `data.sources`, split as training splits it,
each source side by side: class assessment, eras, compile settings and variants, sizes, clone groups
across sources, and Slither's agreement when its weak-label cache has the records; --slither-cache DIR
for another cache than conf/weak_labels/slither.yaml's) and writes outputs/data_report/report.{md,json}
(--report-dir elsewhere, --no-report skips it); a group shared by two splits makes it exit with status 1.

python scripts/build_corpus.py data.sources=[corpus,cgt,real_code] --report-dir /tmp/report
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hydra.errors import HydraException

from training_pipeline.config import compose_config
from training_pipeline.corpus.build import CorpusConfig, build_corpus, load_corpus, load_manifest
from training_pipeline.corpus.generator import coverage_markdown, generate_corpus
from training_pipeline.data.quality import (
    check_report,
    load_configured_data,
    load_configured_records,
    print_report,
    quality_report,
    slither_predictions,
    split_verdict,
    write_report,
)
from training_pipeline.data.records import write_records
from training_pipeline.errors import DataError, UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of train.yaml, e.g. data.corpus.seed=1")
    parser.add_argument(
        "--export", type=Path, help="write the corpus as interchange records (.jsonl/.parquet)"
    )
    parser.add_argument(
        "--export-data",
        type=Path,
        help="write the configured data's records with their splits (.jsonl/.parquet)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an export file if it exists")
    parser.add_argument(
        "--coverage",
        action="store_true",
        help="print the generator's coverage table (markdown) and the configured corpus's counts; no build",
    )
    parser.add_argument("--coverage-out", type=Path, help="also write the coverage table to this file")
    parser.add_argument("--report-dir", type=Path, help="data report folder (default: outputs/data_report)")
    parser.add_argument("--no-report", action="store_true", help="skip the data quality report")
    parser.add_argument(
        "--slither-cache", type=Path, help="Slither weak-label cache for the report (default: its config's)"
    )
    args = parser.parse_args(argv)

    try:
        cfg = compose_config("train.yaml", args.overrides)
        corpus = dict(cfg.data.corpus)
        corpus["compiler_versions"] = list(corpus["compiler_versions"])
        if args.coverage or args.coverage_out:
            return _coverage(CorpusConfig(**corpus), args.coverage, args.coverage_out)
        if args.export or "corpus" in cfg.data.sources:  # a report on [cgt,real_code] needs no corpus
            path = build_corpus(CorpusConfig(**corpus), cfg.paths.data_dir)
            manifest = load_manifest(path)
            print(json.dumps({"path": str(path), **manifest}, indent=2))
        if args.export:
            rows = load_corpus(path).to_list()
            for r in rows:
                r["vulnerable_lines"] = json.loads(r["vulnerable_lines"])
            write_records(rows, args.export, overwrite=args.force)
            print(f"exported {len(rows)} records to {args.export}", file=sys.stderr)
        if args.export_data:
            _export_data(args.overrides, args.export_data, args.force)
        if not args.no_report:
            out_dir = args.report_dir or Path(cfg.paths.log_dir) / "data_report"
            return _report(args.overrides, out_dir, args.slither_cache)
    except (UserError, TypeError, HydraException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _export_data(overrides: list[str], out: Path, force: bool) -> None:
    """Write the configured data's records, each with the split it gets (``split``), to ``out``."""
    if out.exists() and not force:  # before loading every source, not after
        raise DataError(f"{out}: exists; refusing to overwrite (pass --force)")
    records, split_of, _ = load_configured_records(overrides)
    rows = [{**r, "split": s} for r, s in zip(records, split_of, strict=True) if s != "unused"]
    write_records(rows, out, overwrite=force)
    counts = {s: split_of.count(s) for s in ("train", "val", "test")}
    print(f"exported {len(rows)} records ({counts}) to {out}", file=sys.stderr)


def _coverage(cfg, show: bool, out: Path | None) -> int:
    """Generate (without compiling) the configured corpus and report what it and the generator cover."""
    contracts = generate_corpus(
        cfg.n_contracts,
        seed=cfg.seed,
        families=cfg.families,
        compiler_versions=cfg.compiler_versions,
        safe_fraction=cfg.safe_fraction,
        multi_label_fraction=cfg.multi_label_fraction,
    )
    text = coverage_markdown(contracts)
    if show:
        print(text, end="")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"coverage written to {out}", file=sys.stderr)
    return 0


def _report(overrides: list[str], out_dir: Path, slither_cache: Path | None = None) -> int:
    """Print and write the data quality report; 1 when some group is in two splits."""
    records, split_of, cfg, skipped = load_configured_data(overrides)
    predictions, note = slither_predictions(records, slither_cache)
    report = quality_report(records, split_of, predictions, note, skipped)
    print_report(report)
    print(split_verdict(report))
    md = write_report(report, out_dir, {"sources": list(cfg.data.sources), "fold": cfg.data.fold})
    print(f"data report written to {md} and {md.with_suffix('.json')}", file=sys.stderr)
    try:
        check_report(report)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
