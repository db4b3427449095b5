"""Build (or reuse) the generated contract corpus and print its manifest; optionally export it.

python scripts/build_corpus.py                                  # the default corpus of `make train`
python scripts/build_corpus.py data.corpus.n_contracts=5000     # any data.* override of train.yaml
python scripts/build_corpus.py --export corpus.jsonl            # interchange format (JSONL or parquet)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("PROJECT_ROOT", str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of train.yaml, e.g. data.corpus.seed=1")
    parser.add_argument(
        "--export", type=Path, help="write the corpus as interchange records (.jsonl/.parquet)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite the --export file if it exists")
    args = parser.parse_args(argv)

    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from training_pipeline.corpus.build import CorpusConfig, build_corpus, load_corpus, load_manifest
    from training_pipeline.utils.errors import UserError

    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
            cfg = compose("train.yaml", overrides=args.overrides)
        corpus = dict(cfg.data.corpus)
        corpus["compiler_versions"] = list(corpus["compiler_versions"])
        path = build_corpus(CorpusConfig(**corpus), cfg.paths.data_dir)
        manifest = load_manifest(path)
        print(json.dumps({"path": str(path), **manifest}, indent=2))
        if args.export:
            from training_pipeline.data.records import write_records

            rows = load_corpus(path).to_list()
            for r in rows:
                r["vulnerable_lines"] = json.loads(r["vulnerable_lines"])
            write_records(rows, args.export, overwrite=args.force)
            print(f"exported {len(rows)} records to {args.export}", file=sys.stderr)
    except (UserError, TypeError, HydraException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
