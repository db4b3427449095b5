"""The trained models a scan uses: base models (each with the featurizer it was trained with) and the
aggregator, loaded from a verified model package (what deployments use: ``load_package_models``), a train-all
run dir or one base-model checkpoint (for development); optionally Slither (the static-analysis view).

A run dir trained with ``aggregator_inputs: crossfit_mean`` feeds the aggregator, per view, the mean of the
cross-fitted (fold) models' probabilities (``aggregator_probs``), as its test rows were; what the view itself
says (its probabilities, risk and predicted classes, the code analyzer's top lines, the behavior model's
flagged transactions) stays the full model's, so a predicted class is always one at or above its threshold.

What a model reads and how its output is scored follows from its class (``BASE_MODELS``), never from
hyperparameter names.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule
from omegaconf import OmegaConf

from training_pipeline.config import compose_task
from training_pipeline.data.featurizers import BytecodeFeaturizer, SourceFeaturizer, TransactionFeaturizer
from training_pipeline.data.stacked import mean_probs
from training_pipeline.data.weak_labels.cache import FindingsCache
from training_pipeline.data.weak_labels.features import (
    STATIC_KIND,
    STATIC_MODEL,
    STATIC_VIEW,
    learnt_detectors,
    static_features,
)
from training_pipeline.data.weak_labels.mapping import DetectorMapping, record_predictions
from training_pipeline.data.weak_labels.runner import cache_key, label_sources
from training_pipeline.deploy.package import Package, load_component
from training_pipeline.errors import DataError, UserError
from training_pipeline.models.aggregator import Aggregator
from training_pipeline.models.behavior_model import BehaviorModel
from training_pipeline.models.bytecode_detector import BytecodeDetector
from training_pipeline.models.checkpoint import load_checkpoint
from training_pipeline.models.code_analyzer import CodeAnalyzer
from training_pipeline.scan.inference import Output, predict_behavior, predict_bytecode, predict_source
from training_pipeline.scan.inputs import ScanInput
from training_pipeline.utils.checkpoints import REFUSED

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """What the scanner knows about one base-model class."""

    view: str  # the aggregator's name for its view: bytecode | source | behavior
    kind: str  # how its probabilities become a risk (risk.view_risk): contract_classes | anomaly_classes
    option: str  # its conf/model option
    needs: str  # the ScanInput field it reads
    what: str  # that field in words, for "no ... given"
    featurizer: Callable[[Mapping[str, Any], LightningModule], Any]
    predict: Callable[[Any, Any, Sequence[ScanInput], int], list[Output]]


BASE_MODELS: dict[type[LightningModule], ModelSpec] = {
    BytecodeDetector: ModelSpec(
        "bytecode",
        "contract_classes",
        "bytecode_detector",
        "bytecode",
        "bytecode",
        lambda cfg, m: BytecodeFeaturizer.from_checkpoint_state(cfg, m.hparams.tokenizer_state),
        predict_bytecode,
    ),
    CodeAnalyzer: ModelSpec(
        "source",
        "contract_classes",
        "code_analyzer",
        "source_code",
        "source",
        lambda cfg, m: SourceFeaturizer.from_checkpoint_state(cfg, m.hparams.tokenizer_state),
        predict_source,
    ),
    BehaviorModel: ModelSpec(
        "behavior",
        "anomaly_classes",
        "behavior_model",
        "tx_path",
        "transaction history",
        lambda cfg, m: TransactionFeaturizer.from_checkpoint_state(cfg, m.hparams.normalizer_state),
        predict_behavior,
    ),
}
MODEL_OPTIONS: dict[str, str] = {spec.view: spec.option for spec in BASE_MODELS.values()}
"""View → the conf/model option of the model that reads it."""


def spec_of(model: LightningModule | type[LightningModule]) -> ModelSpec:
    """The spec of a base model (an instance or its class); anything else is a UserError."""
    cls = model if isinstance(model, type) else type(model)
    for base, spec in BASE_MODELS.items():
        if issubclass(cls, base):
            return spec
    if issubclass(cls, Aggregator):
        raise UserError("an aggregator checkpoint needs its base models: use --pipeline-dir")
    raise UserError(f"{cls.__name__}: not a bytecode detector, code analyzer or behavior model")


@dataclass
class BaseView:
    """One trained base model, the featurizer it was trained with, and how the scanner batches it."""

    spec: ModelSpec
    model_name: str
    module: Any
    featurizer: Any
    batch_size: int = 32
    name: str | None = None  # the view's name where a pipeline names it differently
    folds: list[tuple[Any, Any]] = field(default_factory=list)
    """(module, featurizer) of the cross-fitted models: their mean probabilities are what the aggregator
    reads (``aggregator_probs``); the view's own output stays the module's."""

    @classmethod
    def of(
        cls,
        module: LightningModule,
        data_cfg: Mapping[str, Any],
        model_name: str | None = None,
        view: str | None = None,
    ) -> BaseView:
        """The view of a loaded base model trained with data config ``data_cfg``."""
        spec = spec_of(module)
        featurizer = spec.featurizer(data_cfg, module)
        batch_size = int(data_cfg.get("batch_size", 32))
        return cls(spec, model_name or spec.option, module, featurizer, batch_size, view)

    @property
    def view(self) -> str:
        return self.name or self.spec.view

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def what(self) -> str:
        """The input this model reads, in words."""
        return self.spec.what

    def has_input(self, item: ScanInput) -> bool:
        """Whether ``item`` has the view this model reads."""
        return getattr(item, self.spec.needs) is not None

    def predict(self, items: Sequence[ScanInput]) -> list[Output | None]:
        """The module's output per input (with fold models, plus their mean probabilities as
        ``aggregator_probs``); None for an input without the view it reads."""
        todo = [i for i, it in enumerate(items) if self.has_input(it)]
        out: list[Output | None] = [None] * len(items)
        if todo:
            chosen = [items[i] for i in todo]
            results = self.spec.predict(self.module, self.featurizer, chosen, self.batch_size)
            members = [self.spec.predict(m, f, chosen, self.batch_size) for m, f in self.folds]
            for row, (i, res) in enumerate(zip(todo, results, strict=True)):
                mean = {"aggregator_probs": mean_probs([m[row]["probs"] for m in members])} if members else {}
                out[i] = {**res, **mean}
        return out


@dataclass
class StaticView:
    """Slither on the scanned source (``--static-analysis``): its findings per class, the aggregator's
    static-analysis view. Analyses are cached (the weak-label cache), so a source is analysed once.

    ``inputs``: input name -> what Slither analyses instead of the scanned text (``analysis_inputs``: a
    dataset's original text, an npm contract in its package tree; the real-world benchmark); ``fill=False``
    reads the cache only (nothing is analysed; an input without a cached analysis has the view masked).
    ``detectors``: the per-detector features its aggregator learnt (``static_analysis.detectors``), if any."""

    cache: FindingsCache
    mapping: DetectorMapping = field(default_factory=DetectorMapping.from_config)
    detectors: Sequence[str] = ()
    workers: int = 2
    timeout_s: float = 60.0
    inputs: Mapping[str, Any] = field(default_factory=dict)
    fill: bool = True
    view: str = STATIC_VIEW
    kind: str = STATIC_KIND
    model_name: str = STATIC_MODEL
    what: str = "Solidity source Slither could analyse"

    def has_input(self, item: ScanInput) -> bool:
        """Whether ``item`` has source code (or a given analysis input) to analyse."""
        return item.source_code is not None or item.name in self.inputs

    def predict(self, items: Sequence[ScanInput]) -> list[Output | None]:
        """Per input: the view's features (``probs``), the classes flagged and the findings behind them;
        None without source or without a usable analysis (compile error, timeout): the view is masked."""
        todo = [i for i, it in enumerate(items) if self.has_input(it)]
        sources = [self.inputs.get(items[i].name, items[i].source_code) for i in todo]
        if sources and self.fill:
            label_sources(sources, self.cache, self.workers, self.timeout_s)
        out: list[Output | None] = [None] * len(items)
        for i, src in zip(todo, sources, strict=True):
            pred = record_predictions(self.cache.get(cache_key(src)), self.mapping)
            if pred is None:
                continue
            out[i] = {
                "probs": static_features(pred, self.detectors),
                "predicted": pred.labels,
                "findings": {
                    c: {"count": p.count, "max_impact": p.max_impact, "checks": p.checks, "lines": p.lines}
                    for c, p in pred.classes.items()
                    if p.present
                },
            }
        return out


# -- from a pipeline run dir ---------------------------------------------------------------------------------
def aggregator_inputs(root: Path, info: Mapping[str, Any]) -> str:
    """What the run's aggregator was tested on: ``crossfit_mean`` (the fold models' mean) or ``full``; a run
    dir from before the choice existed (no fold checkpoints recorded) falls back to ``full``."""
    artifacts = info["artifacts"]
    inputs = artifacts.get("aggregator_inputs", "full")
    recorded = all(art.get("folds") for art in artifacts["base_models"].values())
    if inputs == "crossfit_mean" and not recorded:
        log.warning("%s: pipeline.json records no fold checkpoints; scanning with the full models", root)
        return "full"
    if "aggregator_inputs" not in artifacts:
        log.info("%s: a run dir from before aggregator_inputs; scanning with the full models", root)
    return inputs


def load_pipeline_models(
    root: Path, info: Mapping[str, Any], inputs: str | None = None
) -> tuple[list[BaseView], Aggregator | None]:
    """The base models of a train-all run dir (``info``: its pipeline.json; ``inputs``: its
    ``aggregator_inputs`` if known; with ``crossfit_mean`` each full model with its fold models) and its
    aggregator, the views in the aggregator's order."""
    crossfit = (inputs or aggregator_inputs(root, info)) == "crossfit_mean"
    views = []
    for view, art in info["artifacts"]["base_models"].items():
        if not art.get("checkpoint"):
            raise UserError(f"{root}: {art['model']} has no checkpoint")
        module = load_checkpoint(art["model_target"], root / art["checkpoint"])
        base = BaseView.of(module, _data_config(root / art["config"]), art["model"], view)
        for fold in art["folds"] if crossfit else []:
            member = load_checkpoint(art["model_target"], root / fold["checkpoint"])
            base.folds.append((member, base.spec.featurizer(_data_config(root / fold["config"]), member)))
        views.append(base)
    aggregator = None
    if info["artifacts"].get("aggregator"):
        aggregator = load_checkpoint(Aggregator, root / info["artifacts"]["aggregator"])
        order = {v: i for i, v in enumerate(aggregator.view_names)}
        views = sorted([v for v in views if v.view in order], key=lambda v: order[v.view])
    return views, aggregator


# -- from a model package ------------------------------------------------------------------------------------
def load_package_models(pkg: Package) -> tuple[list[BaseView], Aggregator | None]:
    """The base models (with their fold models where the package has them) and the aggregator of a verified
    package, the views in the aggregator's order; a model package gives its one model and no aggregator."""
    if pkg.kind == "model":
        module, featurizer = load_component(pkg.path / "model")
        return [BaseView.of(module, featurizer or {}, pkg.meta.get("model"))], None
    views = []
    for view, about in pkg.meta["views"].items():
        root = pkg.path / "views" / view
        module, featurizer = load_component(root)
        base = BaseView.of(module, featurizer or {}, about.get("model"), view)
        folds = root / "folds"
        for fold in sorted(folds.iterdir(), key=lambda d: int(d.name)) if folds.is_dir() else []:
            member, member_featurizer = load_component(fold)
            base.folds.append((member, base.spec.featurizer(member_featurizer or {}, member)))
        views.append(base)
    aggregator = None
    if pkg.meta.get("aggregator"):
        aggregator, _ = load_component(pkg.path / "aggregator")
        order = {v: i for i, v in enumerate(aggregator.view_names)}
        views = sorted([v for v in views if v.view in order], key=lambda v: order[v.view])
    return views, aggregator


def load_static_view(
    info: Mapping[str, Any] | None = None, aggregator: Aggregator | None = None
) -> StaticView:
    """Slither with the findings cache the run dir's pipeline used (``info``: its pipeline.json), else the
    default weak-label cache, giving the features ``aggregator`` learnt; a UserError when Slither is not
    installed."""
    static = ((info or {}).get("artifacts") or {}).get("static_analysis") or {}
    learnt = (aggregator.hparams.view_features or {}).get(STATIC_VIEW, []) if aggregator is not None else []
    return StaticView(FindingsCache(static.get("cache_dir")), detectors=learnt_detectors(learnt))


def _data_config(run_config: Path) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.load(run_config).data, resolve=True)


# -- from one checkpoint -------------------------------------------------------------------------------------
def run_config_of(ckpt: Path) -> Path | None:
    """The resolved config of the run that wrote ``ckpt`` (``<run>/checkpoints/x.ckpt``), or of the run dir
    ``ckpt`` names, if there is one."""
    own = (ckpt,) if ckpt.is_dir() else ()
    for run_dir in (*own, ckpt.parent.parent, ckpt.parent):
        resolved = run_dir / "config_resolved.yaml"
        if resolved.is_file():
            return resolved
    return None


def load_any_checkpoint(ckpt: str | Path) -> LightningModule:
    """A checkpoint loaded as the class its run's config names; without a run config, as the first of the
    base models and the aggregator whose class accepts it."""
    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise DataError(f"{ckpt}: no such checkpoint")
    config = run_config_of(ckpt)
    target = OmegaConf.select(OmegaConf.load(config), "model._target_") if config else None
    if target:
        return load_checkpoint(target, ckpt)
    errors = []
    for cls in (*BASE_MODELS, Aggregator):
        try:
            return load_checkpoint(cls, ckpt)
        except DataError as exc:
            if REFUSED in str(exc):
                raise
            errors.append(str(exc))
    raise DataError(
        f"{ckpt}: not a bytecode detector, code analyzer, behavior model or aggregator checkpoint "
        f"({errors[0].split(': ', 1)[-1]})"
    )


def checkpoint_model_option(ckpt: str | Path) -> str:
    """The conf/model option of a checkpoint's model (``aggregator`` for an aggregator)."""
    module = load_any_checkpoint(ckpt)
    return "aggregator" if isinstance(module, Aggregator) else spec_of(module).option


def load_base_model(ckpt: str | Path) -> BaseView:
    """One base-model checkpoint with the data config of its run (else the default one of its model)."""
    ckpt = Path(ckpt)
    module = load_any_checkpoint(ckpt)
    spec = spec_of(module)
    config = run_config_of(ckpt)
    if config is not None:
        data_cfg = _data_config(config)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = compose_task("train.yaml", [f"model={spec.option}"], Path(tmp))
            data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    return BaseView.of(module, data_cfg)
