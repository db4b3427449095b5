"""Gated retraining (``make retrain``): train a challenger, compare it with the registry's champion on a
frozen evaluation set, promote it only when it is better (``src/training_pipeline/monitoring/retrain.py``).

python scripts/retrain.py --models bytecode_detector                      # evaluate only
python scripts/retrain.py --new-data new.jsonl --increment-version        # register; promote if it passes
python scripts/retrain.py --trigger drift --increment-version --notify    # only when the drift report alerted
"""

import sys

from training_pipeline.monitoring.retrain import main

if __name__ == "__main__":
    sys.exit(main())
