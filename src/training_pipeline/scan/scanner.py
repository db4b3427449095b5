"""``Scanner``: the models of a train-all run dir (or one base-model checkpoint) and the scan of some inputs:
each base model on the inputs that have its view, batched (with ``static_analysis``: Slither too), then
fusion, the run's guard (``guard_best_single``) and one report per input."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training_pipeline.errors import UserError
from training_pipeline.models.aggregator import Aggregator
from training_pipeline.risk import DEFAULT_LEVELS, RiskTarget
from training_pipeline.scan.inputs import ScanInput
from training_pipeline.scan.models import (
    BaseView,
    StaticView,
    aggregator_inputs,
    load_base_model,
    load_pipeline_models,
    load_static_view,
)
from training_pipeline.scan.pipelines import latest_pipeline, pipelines_root, read_manifest
from training_pipeline.scan.report import build_report


class Scanner:
    """Trained models and the report builder; ``models`` says which models these are and how they were
    chosen (the report's ``models`` entry); ``guard``: the view whose own risk the run's guard chose over
    the aggregator's (None: the aggregator)."""

    def __init__(
        self,
        views: list[BaseView | StaticView],
        aggregator: Aggregator | None = None,
        origin: str = "",
        models: dict[str, Any] | None = None,
        guard: str | None = None,
    ) -> None:
        self.views, self.aggregator, self.origin, self.guard = views, aggregator, origin, guard
        self.models = models or {"path": origin}
        self.target = RiskTarget(**(dict(aggregator.hparams.target) if aggregator is not None else {}))
        self.levels = dict(aggregator.hparams.risk_levels) if aggregator is not None else dict(DEFAULT_LEVELS)

    @classmethod
    def from_pipeline(cls, pipeline_dir: str | Path | None = None, static_analysis: bool = False) -> Scanner:
        """The base models and the aggregator of a train-all run dir (default: the newest completed); with
        ``static_analysis`` Slither runs on the scanned sources (else that view is masked)."""
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
        info = read_manifest(root)
        inputs = aggregator_inputs(root, info)
        views: list[BaseView | StaticView] = []
        base, aggregator = load_pipeline_models(root, info, inputs)
        views += base
        if static_analysis:
            views.append(load_static_view(info))
        guard = (info["artifacts"].get("guard") or {}).get("chosen", "aggregator")
        models |= {"aggregator_inputs": inputs, "guard": guard, "static_analysis": static_analysis}
        return cls(views, aggregator, str(root), models, None if guard == "aggregator" else guard)

    @classmethod
    def from_checkpoint(cls, ckpt: str | Path, static_analysis: bool = False) -> Scanner:
        """One base model: its own, uncalibrated risk (``static_analysis``: Slither's findings beside)."""
        views: list[BaseView | StaticView] = [load_base_model(ckpt)]
        if static_analysis:
            views.append(load_static_view())
        models = {"kind": "checkpoint", "path": str(ckpt), "chosen": "given (--checkpoint)"}
        return cls(views, None, str(ckpt), models)

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
                self.guard,
            )
            for k, item in enumerate(items)
        ]
