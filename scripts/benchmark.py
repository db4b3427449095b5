"""Benchmarks, each measured side by side in this one run; printed and written to outputs/bench/.

python scripts/benchmark.py            # full
python scripts/benchmark.py --quick    # seconds: what the test suite runs
python scripts/benchmark.py --only tokenizer training
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

SECTIONS = (
    "tokenizer",
    "compile",
    "corpus",
    "training",
    "dropout",
    "eval_batches",
    "code_analyzer",
    "behavior",
    "serving",
    "scan",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: numbers in seconds, not minutes")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--out", type=Path, default=Path("outputs") / "bench")
    args = parser.parse_args(argv)

    results: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "quick": args.quick,
    }
    for section in args.only:
        start = time.perf_counter()
        module = importlib.import_module(f"training_pipeline.benchmarks.{section}")
        results.update(module.run(quick=args.quick))
        print(f"[{section}] {time.perf_counter() - start:.1f} s", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench_{time.strftime('%Y-%m-%d_%H-%M-%S')}{'_quick' if args.quick else ''}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
