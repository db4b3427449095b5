"""Scan contracts and report how risky they are and why: ``python src/predict.py contract.sol`` (the same as
``scathat-scan``; see ``training_pipeline.scan.cli`` for the flags)."""

import sys

from training_pipeline.scan.cli import main

if __name__ == "__main__":
    sys.exit(main())
