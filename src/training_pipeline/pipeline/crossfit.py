"""The cross-fitted models on the outer test fold: what the aggregator meets at test time under
``aggregator_inputs: crossfit_mean``.

Each fold model predicts the outer test contracts (which it never saw) with its own data config, the outer
test fold made its test split, featurized with its own tokenizer or normalizer (``tasks.predict``). The
predictions land in ``stages/<model>/fold<k>/outer_test/predictions.jsonl`` and are reused while they cover
exactly the outer test contracts; a retrained fold stage deletes its dir, so they never outlive the model.

``stack_variants`` (a bytecode view's compile variants, e.g. ``o1-r200``): each fold model also predicts
its own out-of-fold contracts from that build (``data.variant``), into
``stages/<model>/fold<k>/variant_<key>/``; those predictions become extra aggregator rows, so it learns from
(and tunes its thresholds on) both compile settings.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from training_pipeline.pipeline.stages import StageResult
from training_pipeline.tasks import EVAL_KEYS, predict

OUTER_TEST_DIR = "outer_test"


def _predicted_ids(path: Path) -> set[str]:
    return {json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()}


def _fold_predictions(
    pipeline_dir: Path, stage: StageResult, out_name: str, ids: Collection[str], data: dict[str, Any]
) -> Path:
    """The fold model's (``stage``) predictions on the test split of its data config with the ``data`` keys
    (dotted, under ``data.``) set, in
    ``stages/<fold>/<out_name>/predictions.jsonl``: computed once, then reused while they cover ``ids``."""
    out_dir = pipeline_dir / "stages" / stage.name / out_name
    path = out_dir / "predictions.jsonl"
    if path.is_file() and _predicted_ids(path) == set(ids):
        return path
    stage_cfg = OmegaConf.load(pipeline_dir / "stages" / stage.name / "config_resolved.yaml")
    cfg = OmegaConf.masked_copy(stage_cfg, sorted(EVAL_KEYS & set(stage_cfg)))
    for key, value in data.items():
        OmegaConf.update(cfg, f"data.{key}", value)
    cfg.logger = None
    cfg.ckpt_path = str(pipeline_dir / stage.checkpoint)
    cfg.split = "test"
    cfg.paths.output_dir = str(out_dir)
    return predict(cfg)  # writes <out_dir>/predictions.jsonl


def outer_test_predictions(
    pipeline_dir: Path, fold: StageResult, test_fold: int, test_ids: Collection[str]
) -> Path:
    """The fold model's predictions on the outer test fold (``test_ids``), computed once, then reused: the
    outer test fold made its test split, nothing excluded."""
    return _fold_predictions(
        pipeline_dir, fold, OUTER_TEST_DIR, test_ids, {"fold": test_fold, "split.exclude_folds": []}
    )


def variant_predictions(pipeline_dir: Path, fold: StageResult, variant: str) -> Path:
    """The fold model's predictions on its own out-of-fold contracts (its test split) built with the compile
    ``variant`` (``data.variant``), computed once, then reused."""
    return _fold_predictions(
        pipeline_dir, fold, f"variant_{variant}", fold.split_ids["test"], {"variant": variant}
    )
