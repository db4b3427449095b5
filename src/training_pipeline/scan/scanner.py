"""``Scanner``: the models of a model package (from the registry or a path: ``from_model``, what deployments
use), of a train-all run dir or of one base-model checkpoint (development), and the scan of some inputs: each
base model on the inputs that have its view, batched (with ``static_analysis``: Slither too), then fusion,
the run's guard (``guard_best_single``) and one report per input."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training_pipeline.data.weak_labels.features import STATIC_VIEW
from training_pipeline.deploy.package import Package, open_package, verify_package
from training_pipeline.errors import UserError
from training_pipeline.models.aggregator import Aggregator
from training_pipeline.pipeline.run_dirs import latest_pipeline, pipelines_root, read_manifest
from training_pipeline.risk import DEFAULT_LEVELS, RiskTarget
from training_pipeline.scan.inputs import ScanInput
from training_pipeline.scan.models import (
    BaseView,
    StaticView,
    aggregator_inputs,
    load_base_model,
    load_package_models,
    load_pipeline_models,
    load_static_view,
)
from training_pipeline.scan.report import build_report

log = logging.getLogger(__name__)

DEFAULT_MODEL = "models:/scathat-pipeline@champion"
"""What a scan uses unless told otherwise: the registry's champion pipeline."""


def is_registry_ref(ref: str) -> bool:
    """Whether ``ref`` names a registry entry (``models:/<name>@<alias>``, ``models:/<name>/<version>`` or a
    version number of ``scathat-pipeline``) rather than a package path."""
    return ref.startswith("models:/") or ref.isdigit()


def warn_static_masked(
    learnt: bool, scanning: bool, where: str | Path, aggregator: Aggregator | None = None
) -> None:
    """A warning when an aggregator that learnt Slither's findings (train-all static_analysis) scans without
    them: the view is masked. One whose thresholds were tuned with it present only (before
    ``optional_views``) then flags more audited code; one tuned both ways keeps its false-alarm budget but
    misses what Slither's findings add (docs/results.md)."""
    if not learnt or scanning:
        return
    optional = aggregator is not None and STATIC_VIEW in {
        aggregator.view_names[i] for i in aggregator.optional_index
    }
    effect = (
        "its thresholds keep the false-alarm budget without it, but it misses what those findings add"
        if optional
        else "its thresholds, tuned with it, flag more audited code"
    )
    log.warning(
        "%s: the aggregator learnt Slither's findings (static_analysis); without --static-analysis that view "
        "is masked: %s",
        where,
        effect,
    )


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
            views.append(load_static_view(info, aggregator))
        warn_static_masked(bool(info["artifacts"].get("static_analysis")), static_analysis, root, aggregator)
        guard = (info["artifacts"].get("guard") or {}).get("chosen", "aggregator")
        models |= {"aggregator_inputs": inputs, "guard": guard, "static_analysis": static_analysis}
        return cls(views, aggregator, str(root), models, None if guard == "aggregator" else guard)

    @classmethod
    def from_model(cls, ref: str | None = None, static_analysis: bool = False) -> Scanner:
        """The models of a package: ``ref`` a registry reference (default ``DEFAULT_MODEL``) or a package
        directory / ``.tar.gz``; every file is verified against the package manifest before loading."""
        ref = ref or DEFAULT_MODEL
        if Path(ref).exists():
            origin = {"uri": ref, "chosen": "given (--model)"}
            return cls.from_package(open_package(ref), static_analysis, origin)
        if not is_registry_ref(ref):
            raise UserError(
                f"--model {ref}: no such package path, and not a registry reference "
                "(models:/<name>@<alias>, models:/<name>/<version> or a version number)"
            )
        from training_pipeline.deploy.registry import resolve  # noqa: PLC0415 - MLflow is slow to import

        local, info = resolve(ref)
        return cls.from_package(verify_package(local), static_analysis, {**info, "uri": ref})

    @classmethod
    def from_package(
        cls, pkg: Package, static_analysis: bool = False, origin: dict[str, Any] | None = None
    ) -> Scanner:
        """The models of a verified package (``origin``: how it was chosen: registry version, alias, uri)."""
        views: list[BaseView | StaticView] = []
        base, aggregator = load_package_models(pkg)
        views += base
        if static_analysis:
            views.append(load_static_view(aggregator=aggregator))
        warn_static_masked(bool(pkg.meta.get("static_analysis")), static_analysis, pkg.path, aggregator)
        guard = pkg.meta.get("guard", "aggregator")
        models = {
            "kind": "package",
            "name": pkg.name,
            "package_id": pkg.id,
            "version": None,
            "path": str(pkg.path),
            "data_version": pkg.data_version,
            **(origin or {}),
            "aggregator_inputs": pkg.meta.get("aggregator_inputs"),
            "guard": guard,
            "static_analysis": static_analysis,
        }
        return cls(views, aggregator, str(pkg.path), models, None if guard == "aggregator" else guard)

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
