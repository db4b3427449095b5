"""The trained models a scan uses: base models (each with the featurizer it was trained with) and the
aggregator, loaded from a train-all run dir or from one base-model checkpoint.

What a model reads and how its output is scored follows from its class (``BASE_MODELS``), never from
hyperparameter names.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule
from omegaconf import OmegaConf

from training_pipeline.config import compose_task
from training_pipeline.data.featurizers import BytecodeFeaturizer, SourceFeaturizer, TransactionFeaturizer
from training_pipeline.errors import DataError, UserError
from training_pipeline.models.aggregator import Aggregator
from training_pipeline.models.behavior_model import BehaviorModel
from training_pipeline.models.bytecode_detector import BytecodeDetector
from training_pipeline.models.checkpoint import load_checkpoint
from training_pipeline.models.code_analyzer import CodeAnalyzer
from training_pipeline.scan.inference import Output, predict_behavior, predict_bytecode, predict_source
from training_pipeline.scan.inputs import ScanInput


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

    def has_input(self, item: ScanInput) -> bool:
        """Whether ``item`` has the view this model reads."""
        return getattr(item, self.spec.needs) is not None

    def predict(self, items: Sequence[ScanInput]) -> list[Output | None]:
        """The model's output per input; None for an input without the view it reads."""
        todo = [i for i, it in enumerate(items) if self.has_input(it)]
        out: list[Output | None] = [None] * len(items)
        if todo:
            results = self.spec.predict(
                self.module, self.featurizer, [items[i] for i in todo], self.batch_size
            )
            for i, res in zip(todo, results, strict=True):
                out[i] = res
        return out


# -- from a pipeline run dir ---------------------------------------------------------------------------------
def load_pipeline_models(root: Path, info: Mapping[str, Any]) -> tuple[list[BaseView], Aggregator | None]:
    """The full base models of a train-all run dir (``info``: its pipeline.json) and its aggregator, the
    views in the aggregator's order."""
    views = []
    for view, art in info["artifacts"]["base_models"].items():
        if not art.get("checkpoint"):
            raise UserError(f"{root}: {art['model']} has no checkpoint")
        module = load_checkpoint(art["model_target"], root / art["checkpoint"])
        views.append(BaseView.of(module, _data_config(root / art["config"]), art["model"], view))
    aggregator = None
    if info["artifacts"].get("aggregator"):
        aggregator = load_checkpoint(Aggregator, root / info["artifacts"]["aggregator"])
        order = {v: i for i, v in enumerate(aggregator.view_names)}
        views = sorted([v for v in views if v.view in order], key=lambda v: order[v.view])
    return views, aggregator


def _data_config(run_config: Path) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.load(run_config).data, resolve=True)


# -- from one checkpoint -------------------------------------------------------------------------------------
def run_config_of(ckpt: Path) -> Path | None:
    """The resolved config of the run that wrote ``ckpt`` (``<run>/checkpoints/x.ckpt``), if there is one."""
    for run_dir in (ckpt.parent.parent, ckpt.parent):
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
