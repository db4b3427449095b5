"""Install and import the real npm Solidity packages of data.real_code (conf/data/real_code.yaml).

python scripts/build_real_code.py                           # the configured list (make data-real)
python scripts/build_real_code.py --force                   # rebuild the stored imports (installs stay)
python scripts/build_real_code.py data.real_code.install=false  # any override (train.yaml, data=real_code)

Prints and stores (data/imported/real_code/summary.{json,md}) the contracts per package and era, and how
many have each compile variant (data.real_code.compile_variants); a package that cannot be installed or used
is one line naming it, the others still build, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from pathlib import Path

from hydra.errors import HydraException

from training_pipeline.config import compose_config
from training_pipeline.data.importers.real_code import RealCodeConfig, count_table, import_real_code
from training_pipeline.data.importers.store import plain
from training_pipeline.errors import UserError
from training_pipeline.utils.checks import config_dataclass
from training_pipeline.utils.run import write_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data.real_code.n_workers=1")
    parser.add_argument("--force", action="store_true", help="rebuild the stored imports")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    start = time.perf_counter()
    try:
        cfg = compose_config("train.yaml", ["data=real_code", *args.overrides])
        config = config_dataclass(RealCodeConfig, plain(cfg.data.real_code), "data.real_code")
        data_dir = Path(cfg.paths.data_dir)
        outcome = import_real_code(config, data_dir, force=args.force)
    except (UserError, HydraException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    manifests = outcome.manifests()
    table = count_table(manifests)
    seconds = round(time.perf_counter() - start, 1)
    print(table, end="")
    total = sum(m["n_records"] for m in manifests.values())
    failures = sum(m["compile_failures"] for m in manifests.values())
    print(f"{total} deployable contracts, {failures} files failed to compile, {seconds} s")
    variants: Counter[str] = Counter()
    for m in manifests.values():
        variants.update({k: v["records"] for k, v in m.get("variants", {}).items()})
    print("contracts per compile variant: " + ", ".join(f"{k} {n}" for k, n in variants.items()))
    out = data_dir / "imported" / "real_code"
    summary = {
        "packages": {
            k: {
                "stored": str(outcome.stored[k]),
                "licence": m["package"]["licence"],
                **{f: m[f] for f in ("n_files", "n_records", "per_era", "skipped", "compile_failures")},
                "linked_library_placeholders": m["linked_library_placeholders"],
                "variants": m.get("variants"),
                "seconds": m["seconds"],
            }
            for k, m in manifests.items()
        },
        "failed_packages": outcome.failed,
        "n_records": total,
        "variants": dict(variants),
        "compile_failures": failures,
        "seconds": seconds,
    }
    write_json(out / "summary.json", summary)
    (out / "summary.md").write_text(table)
    print(f"summary written to {out / 'summary.json'} and {out / 'summary.md'}", file=sys.stderr)
    if outcome.failed:
        for line in outcome.failed.values():
            print(f"error: {line}", file=sys.stderr)
        print(f"error: {len(outcome.failed)} package(s) failed: {', '.join(outcome.failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
