"""Re-tune a trained contract model's class thresholds under another false-alarm budget, without retraining
(``src/training_pipeline/evaluation/retune.py``); writes a new run dir, the original is never touched.

python scripts/retune_thresholds.py outputs/train/runs/<run> --out outputs/retune/share10 \\
    --max-flagged-share 0.1 --max-flag-rate none
"""

import sys

from training_pipeline.evaluation.retune import main

if __name__ == "__main__":
    sys.exit(main())
