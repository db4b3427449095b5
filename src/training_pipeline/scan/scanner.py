"""``Scanner``: the models of a train-all run dir (or one base-model checkpoint) and the scan of some inputs:
each base model on the inputs that have its view, batched, then fusion and one report per input."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training_pipeline.errors import UserError
from training_pipeline.models.aggregator import Aggregator
from training_pipeline.risk import DEFAULT_LEVELS, RiskTarget
from training_pipeline.scan.inputs import ScanInput
from training_pipeline.scan.models import BaseView, load_base_model, load_pipeline_models
from training_pipeline.scan.pipelines import latest_pipeline, pipelines_root, read_manifest
from training_pipeline.scan.report import build_report


class Scanner:
    """Trained models and the report builder; ``models`` says which models these are and how they were
    chosen (the report's ``models`` entry)."""

    def __init__(
        self,
        views: list[BaseView],
        aggregator: Aggregator | None = None,
        origin: str = "",
        models: dict[str, Any] | None = None,
    ) -> None:
        self.views, self.aggregator, self.origin = views, aggregator, origin
        self.models = models or {"path": origin}
        self.target = RiskTarget(**(dict(aggregator.hparams.target) if aggregator is not None else {}))
        self.levels = dict(aggregator.hparams.risk_levels) if aggregator is not None else dict(DEFAULT_LEVELS)

    @classmethod
    def from_pipeline(cls, pipeline_dir: str | Path | None = None) -> Scanner:
        """The full base models and the aggregator of a train-all run dir (default: the newest completed)."""
        if pipeline_dir:
            root = Path(pipeline_dir)
            models = {"kind": "pipeline", "path": str(root), "chosen": "given (--pipeline-dir)"}
        else:
            base = pipelines_root()
            root, finished = latest_pipeline(base)
            when = datetime.fromtimestamp(finished, tz=UTC).isoformat(timespec="seconds")
            models = {
                "kind": "pipeline",
                "path": str(root),
                "chosen": f"the newest completed pipeline run under {base} (finished {when})",
            }
        views, aggregator = load_pipeline_models(root, read_manifest(root))
        return cls(views, aggregator, str(root), models)

    @classmethod
    def from_checkpoint(cls, ckpt: str | Path) -> Scanner:
        """One base model: its own, uncalibrated risk."""
        view = load_base_model(ckpt)
        models = {"kind": "checkpoint", "path": str(ckpt), "chosen": "given (--checkpoint)"}
        return cls([view], None, str(ckpt), models)

    def scan(self, items: Sequence[ScanInput]) -> list[dict[str, Any]]:
        """One report per input; a UserError when no input has a view any model reads."""
        if not any(v.has_input(it) for it in items for v in self.views):
            have = ", ".join(v.view for v in self.views)
            raise UserError(f"no input has a view these models read ({have})")
        per_view = {v.view: v.predict(items) for v in self.views}
        return [
            build_report(
                item,
                self.views,
                {v.view: per_view[v.view][k] for v in self.views},
                self.aggregator,
                self.target,
                self.levels,
            )
            for k, item in enumerate(items)
        ]
