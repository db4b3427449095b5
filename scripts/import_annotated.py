"""Convert a folder of annotated Solidity files into contract records (the interchange format).

python scripts/import_annotated.py FOLDER --labels labels.csv --out contracts.jsonl            # source only
python scripts/import_annotated.py FOLDER --labels labels.json --out contracts.parquet --compile

The labels file (CSV header path,label,lines, or a JSON list of such objects) names each file, its taxonomy
label (empty/safe/none = no known vulnerability) and the vulnerable lines ("12 15-18"). See
training_pipeline/data/importers/annotated.py. Any bad input is one `error: ...` line naming it, exit 2,
and nothing written; an existing --out is never overwritten without --force.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training_pipeline.corpus.solc import CompileError, SolcNotInstalledError
from training_pipeline.data.importers.annotated import compile_records, convert
from training_pipeline.data.records import write_records
from training_pipeline.errors import DataError, UserError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="folder of .sol files")
    parser.add_argument("--labels", type=Path, required=True, help="labels file (.csv or .json)")
    parser.add_argument("--out", type=Path, required=True, help="output records (.jsonl or .parquet)")
    parser.add_argument("--compile", action="store_true", help="add runtime bytecode (bundled solc-js)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.add_argument("--n-workers", type=int, default=2, help="solc-js processes for --compile")
    parser.add_argument("--cache-dir", type=Path, help="compile cache (default: data/solc_cache)")
    args = parser.parse_args(argv)

    try:
        if args.out.suffix not in (".jsonl", ".parquet"):
            raise DataError(f"{args.out}: write .jsonl or .parquet")
        if args.out.exists() and not args.force:
            raise DataError(f"{args.out}: exists; refusing to overwrite (pass --force)")
        records, stats = convert(args.folder, args.labels)
        if args.compile:
            compile_stats = compile_records(records, n_workers=args.n_workers, cache_dir=args.cache_dir)
            stats["compiled"] = int(compile_stats["compiled"] + compile_stats["cache_hits"])
        write_records(records, args.out, overwrite=args.force)
    except (UserError, ValueError, CompileError, SolcNotInstalledError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in stats.items())
    print(f"wrote {len(records)} records to {args.out} ({summary})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
