"""Train every model: cross-fitted base models, full-split base models, the aggregator (``make train-all``).

python scripts/train_all.py                         # outputs/pipeline/default; a rerun resumes
python scripts/train_all.py --force                 # retrain every stage
python scripts/train_all.py force=[aggregator]      # retrain some stages (a model name = all its stages)
python scripts/train_all.py name=big corpus.n_contracts=1500 inner_folds=4
python scripts/train_all.py models.code_analyzer.enabled=false
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from training_pipeline.utils.run import set_project_root, task_wrapper  # noqa: E402

set_project_root()


@hydra.main(version_base="1.3", config_path="../conf", config_name="pipeline.yaml")
@task_wrapper
def main(cfg: DictConfig) -> None:
    from training_pipeline.pipeline.runner import run_pipeline
    from training_pipeline.utils.run import quiet_known_warnings

    if cfg.extras.get("ignore_warnings"):
        quiet_known_warnings()
    run_pipeline(cfg)


if __name__ == "__main__":
    sys.argv = ["force=true" if a == "--force" else a for a in sys.argv]
    main()
