"""The cross-fitted models on the outer test fold: what the aggregator meets at test time under
``aggregator_inputs: crossfit_mean``.

Each fold model predicts the outer test contracts (which it never saw) with its own data config, the outer
test fold made its test split, featurized with its own tokenizer or normalizer (``tasks.predict``). The
predictions land in ``stages/<model>/fold<k>/outer_test/predictions.jsonl`` and are reused while they cover
exactly the outer test contracts; a retrained fold stage deletes its dir, so they never outlive the model.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

from omegaconf import OmegaConf

from training_pipeline.pipeline.stages import StageResult
from training_pipeline.tasks import EVAL_KEYS, predict

OUTER_TEST_DIR = "outer_test"


def _predicted_ids(path: Path) -> set[str]:
    return {json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()}


def outer_test_predictions(
    pipeline_dir: Path, fold: StageResult, test_fold: int, test_ids: Collection[str]
) -> Path:
    """The fold model's predictions on the outer test fold (``test_ids``), computed once, then reused."""
    out_dir = pipeline_dir / "stages" / fold.name / OUTER_TEST_DIR
    path = out_dir / "predictions.jsonl"
    if path.is_file() and _predicted_ids(path) == set(test_ids):
        return path
    stage_cfg = OmegaConf.load(pipeline_dir / "stages" / fold.name / "config_resolved.yaml")
    cfg = OmegaConf.masked_copy(stage_cfg, sorted(EVAL_KEYS & set(stage_cfg)))
    cfg.data.fold = test_fold  # the outer test fold as the test split; nothing excluded
    cfg.data.split.exclude_folds = []
    cfg.logger = None
    cfg.ckpt_path = str(pipeline_dir / fold.checkpoint)
    cfg.split = "test"
    cfg.paths.output_dir = str(out_dir)
    return predict(cfg)  # writes <out_dir>/predictions.jsonl
