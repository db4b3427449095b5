"""``python -m training_pipeline train|eval|train-all|scan ...``: the console scripts, uninstalled."""

from __future__ import annotations

import sys

from training_pipeline.cli import eval_main, train_all_main, train_main

COMMANDS = {"train": train_main, "eval": eval_main, "train-all": train_all_main}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in {*COMMANDS, "scan"}:
        print(
            f"usage: python -m training_pipeline {{{','.join([*COMMANDS, 'scan'])}}} [args...]",
            file=sys.stderr,
        )
        raise SystemExit(2)
    command, args = sys.argv[1], sys.argv[2:]
    if command == "scan":
        from training_pipeline.scan.cli import main as scan_main  # torch: only for a scan

        raise SystemExit(scan_main(args))
    COMMANDS[command](args)


if __name__ == "__main__":
    main()
