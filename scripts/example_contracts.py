"""Write a scan example from a train-all run's own held-out contracts: a vulnerable contract of the outer
test fold (no model of the run trained on it), its safe twin (the same skeleton with every flaw repaired), and
the vulnerable contract's runtime bytecode alone.

python scripts/example_contracts.py                      # outputs/examples/, from the latest train-all run
python scripts/example_contracts.py --vulnerability access_control --out DIR --pipeline-dir outputs/pipeline/x
python src/predict.py outputs/examples/vulnerable.sol outputs/examples/safe_twin.sol \
    outputs/examples/vulnerable_runtime.hex
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from training_pipeline import taxonomy
from training_pipeline.corpus.build import CorpusConfig, corpus_dir, load_corpus
from training_pipeline.errors import ConfigError, DataError
from training_pipeline.scan import latest_pipeline_dir
from training_pipeline.utils.run import one_line, user_errors

FILES = ("vulnerable.sol", "safe_twin.sol", "vulnerable_runtime.hex")


def pick_pair(records: list[dict], fold: int, vulnerability: str) -> tuple[dict, dict]:
    """The first (by id) test-fold group holding a contract whose only flaw is ``vulnerability`` and its
    label-free twin."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        if r["fold"] == fold:
            groups.setdefault(r["group"], []).append(r)
    for group in sorted(groups):
        rows = sorted(groups[group], key=lambda r: r["id"])
        flawed = [r for r in rows if list(r["labels"]) == [vulnerability]]
        safe = [r for r in rows if not r["labels"]]
        if flawed and safe:
            return flawed[0], safe[0]
    raise ValueError(
        f"no test-fold ({fold}) group has a contract flawed only by {vulnerability!r} and a twin"
    )


def run_corpus(root: Path) -> tuple[list[dict], int]:
    """The corpus records of a train-all run dir and its outer test fold (from the full bytecode stage)."""
    stage_cfg = root / "stages" / "bytecode_detector" / "full" / "config_resolved.yaml"
    if not stage_cfg.is_file():
        raise DataError(f"{root}: no finished bytecode_detector/full stage (run `make train-all` first)")
    cfg = OmegaConf.load(stage_cfg)
    corpus = CorpusConfig(**OmegaConf.to_container(cfg.data.corpus, resolve=True))
    path = corpus_dir(corpus, cfg.paths.data_dir)
    if not path.is_dir():
        raise DataError(f"{path}: the run's corpus is missing (rerun `make train-all`)")
    return list(load_corpus(path)), int(cfg.data.fold)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pipeline-dir", help="a train-all run dir (default: the latest under outputs/pipeline)")
    p.add_argument("--vulnerability", default="reentrancy", help="the flaw of the vulnerable contract")
    p.add_argument("--out", default="outputs/examples", help="folder for the three files")
    p.add_argument("--force", action="store_true", help="overwrite existing example files")
    args = p.parse_args(argv)
    try:
        if args.vulnerability not in taxonomy.VULNERABILITY_CLASSES:
            raise ConfigError(
                f"--vulnerability {args.vulnerability!r}: expected one of {taxonomy.VULNERABILITY_CLASSES}"
            )
        records, fold = run_corpus(Path(args.pipeline_dir) if args.pipeline_dir else latest_pipeline_dir())
        try:
            flawed, safe = pick_pair(records, fold, args.vulnerability)
        except ValueError as exc:
            raise DataError(str(exc)) from None
        out = Path(args.out)
        taken = [out / f for f in FILES if (out / f).exists()]
        if taken and not args.force:
            raise DataError(f"{taken[0]}: exists (use --force to overwrite)")
        out.mkdir(parents=True, exist_ok=True)
        (out / FILES[0]).write_text(flawed["source_code"])
        (out / FILES[1]).write_text(safe["source_code"])
        (out / FILES[2]).write_text(flawed["bytecode"] + "\n")
    except user_errors() as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    lines = json.loads(flawed["vulnerable_lines"]) if flawed.get("vulnerable_lines") else {}
    print(
        f"{out / FILES[0]}: {flawed['id']} ({flawed['family']}, solc {flawed['compiler_version']}), "
        f"{args.vulnerability} at lines {lines.get(args.vulnerability)}"
    )
    print(f"{out / FILES[1]}: {safe['id']}, its safe twin")
    print(f"{out / FILES[2]}: runtime bytecode of {flawed['id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
