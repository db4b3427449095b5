"""Train everything: k-fold cross-fitting of the base models, full-split base models, the aggregator.

Pipeline run dir (``outputs/pipeline/<name>``; the same name resumes):

    stages/<model>/fold<k>/   a base model trained on the outer training folds minus fold k (fold k and the
                              outer test fold excluded from its train and val): its predictions on fold k are
                              the out-of-fold (OOF) predictions of those contracts
                              (``outer_test/``: its predictions on the outer test fold, for crossfit_mean;
                              ``variant_<key>/``: on fold k built another way, for ``stack_variants``)
    stages/<model>/full/      the base model trained on the outer training split: its test predictions
    stacked/                  OOF rows (train, val; one more per ``stack_variants`` build) + test rows
                              (``aggregator_inputs``: the mean of the fold models, or the full models), the
                              static-analysis view if on, the modality mask
    stages/aggregator/        the aggregator trained on the stacked rows, calibrated on val
    comparison.{json,md}      aggregator (and guarded risk) vs single models vs mean/max, with and without
                              each view
    pipeline.json             the artifacts the scanner loads (full and fold models, aggregator, its inputs,
                              the guard's choice), stage timings, the summary

Every stage writes ``manifest.json`` (config hash, split ids, outputs); a rerun skips a stage whose manifest
matches its config, ``force=true`` (``--force``) reruns everything and ``force=[code_analyzer,aggregator]``
reruns the stages named (or every stage of a model).
"""

from __future__ import annotations

import gc
import logging
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from training_pipeline.config import compose_task, override_value
from training_pipeline.data.contracts import source_fingerprint
from training_pipeline.data.stacked import read_stacked, write_stacked
from training_pipeline.data.weak_labels.features import STATIC_VIEW
from training_pipeline.errors import ConfigError
from training_pipeline.models.aggregator import Aggregator
from training_pipeline.models.checkpoint import load_checkpoint
from training_pipeline.pipeline.compare import compare, guard_choice, markdown_table, rich_table
from training_pipeline.pipeline.crossfit import outer_test_predictions, variant_predictions
from training_pipeline.pipeline.run_dirs import PIPELINE_FILE
from training_pipeline.pipeline.stack import ModelView, build_stacked
from training_pipeline.pipeline.stages import StageResult, config_hash, mark_failed, reusable, write_manifest
from training_pipeline.pipeline.static import stage_analysis_inputs, static_view
from training_pipeline.pipeline.views import check_kind, split_ids
from training_pipeline.tasks import train
from training_pipeline.utils.checks import check_known_keys
from training_pipeline.utils.run import write_json
from training_pipeline.utils.tracking import PipelineTracking

log = logging.getLogger(__name__)
TOP_LEVEL_KEYS = {
    "task_name", "name", "force", "seed", "cpu_threads", "test_fold", "inner_folds", "corpus",
    "common_overrides", "models", "aggregator", "aggregator_inputs", "guard_best_single", "static_analysis",
    "tracking", "paths", "extras", "real_data", "guard_margin",
}  # fmt: skip
REAL_DATA_KEYS = {"enabled", "corpus", "contract_overrides", "model_overrides", "aggregator_overrides"}
AGGREGATOR_INPUTS = ("crossfit_mean", "full")
MODEL_KEYS = {"enabled", "view", "adapter", "overrides", "crossfit_overrides", "stack_variants"}


def _forced(force: Any, name: str) -> bool:
    if force is True:
        return True
    if not force:
        return False
    items = [force] if isinstance(force, str) else list(force)
    return any(name == f or name.startswith(f"{f}/") for f in map(str, items))


def real_data(cfg: DictConfig) -> dict[str, Any]:
    """The pipeline's ``real_data`` block (empty when off), its keys checked."""
    block = OmegaConf.to_container(cfg.get("real_data") or {}, resolve=True)
    unknown = set(block) - REAL_DATA_KEYS
    if unknown:
        raise ConfigError(
            f"pipeline real_data: unknown key(s) {sorted(unknown)}; known {sorted(REAL_DATA_KEYS)}"
        )
    per_model = block.get("model_overrides") or {}
    if not isinstance(per_model, dict) or not all(isinstance(v, list) for v in per_model.values()):
        raise ConfigError(
            "pipeline real_data.model_overrides: expected a mapping model -> list of overrides, got "
            f"{per_model!r}"
        )
    unknown_models = set(per_model) - set(cfg.get("models") or {})
    if unknown_models:
        raise ConfigError(
            f"pipeline real_data.model_overrides: unknown model(s) {sorted(unknown_models)}; known "
            f"{sorted(cfg.get('models') or {})}"
        )
    return block if block.get("enabled") else {}


def stack_variants(mcfg: Any, mv: ModelView) -> list[str]:
    """A model's ``stack_variants`` (compile variant keys such as o1-r200), checked: a list of names, for a
    ``contract_classes`` view (its datamodule's ``data.variant`` picks the build)."""
    value = mcfg.get("stack_variants") or []
    value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    if not isinstance(value, list) or not all(isinstance(v, str) and v and "~" not in v for v in value):
        raise ConfigError(
            f"pipeline models.{mv.model}.stack_variants={value!r}: expected a list of compile variant keys "
            "such as [o1-r200]"
        )
    if value and mv.kind != "contract_classes":
        raise ConfigError(
            f"pipeline models.{mv.model}.stack_variants: only a contract model's view has compile variants"
        )
    if len(set(value)) != len(value):
        raise ConfigError(f"pipeline models.{mv.model}.stack_variants={value}: a variant twice")
    return value


def stage_overrides(cfg: DictConfig, model: str) -> list[str]:
    """The train.yaml overrides every stage of ``model`` in a train-all run starts from (``cfg``: the
    pipeline config): its corpus, folds, seed, data dir, the common overrides, the real-data sources (contract
    models, when ``real_data.enabled``), the model's real-data overrides (``real_data.model_overrides``: what
    needs the real sources, e.g. the audited code as negatives) and the model's own overrides, which win."""
    real = real_data(cfg)
    corpus = {**OmegaConf.to_container(cfg.corpus or {}, resolve=True), **(real.get("corpus") or {})}
    mcfg = cfg.models[model] if model in cfg.models else {}
    contract = mcfg.get("adapter", "contract_classes") == "contract_classes"
    return [
        f"model={model}",
        *(f"data.corpus.{k}={override_value(v)}" for k, v in corpus.items()),
        f"data.split.n_folds={int(cfg.inner_folds) + 1}",
        f"seed={cfg.seed}",
        f"paths.data_dir={override_value(str(cfg.paths.data_dir))}",
        *cfg.common_overrides,
        *(real.get("contract_overrides") or [] if contract else []),
        *((real.get("model_overrides") or {}).get(model) or []),
        *mcfg.get("overrides", []),
    ]


class Pipeline:
    """One pipeline run dir: plans the stages, runs or skips each, stacks, trains the aggregator, compares."""

    def __init__(self, cfg: DictConfig, console: Console | None = None) -> None:
        check_known_keys(cfg, TOP_LEVEL_KEYS, "pipeline config")
        self.cfg = cfg
        self.dir = Path(cfg.paths.output_dir).resolve()
        self.console = console or _console()
        self.n_folds = int(cfg.inner_folds) + 1
        if cfg.inner_folds < 3:
            raise ConfigError(
                f"inner_folds={cfg.inner_folds}: need at least 3 (each cross-fitted model needs a test, val "
                "and a train fold among the training folds)"
            )
        if not 0 <= cfg.test_fold < self.n_folds:
            raise ConfigError(f"test_fold={cfg.test_fold}: expected 0..{self.n_folds - 1}")
        self.inputs = str(cfg.get("aggregator_inputs", "crossfit_mean"))
        if self.inputs not in AGGREGATOR_INPUTS:
            raise ConfigError(f"aggregator_inputs={self.inputs!r}: expected one of {AGGREGATOR_INPUTS}")
        real_data(cfg)  # its keys checked before anything trains
        self.static_cfg = OmegaConf.to_container(cfg.get("static_analysis") or {}, resolve=True)
        self.static_used = False
        self.guard: dict[str, Any] | None = None
        self.inner = [k for k in range(self.n_folds) if k != cfg.test_fold]
        self.views: list[ModelView] = []
        for model, mcfg in (cfg.models or {}).items():
            unknown = set(mcfg or {}) - MODEL_KEYS
            if unknown:
                raise ConfigError(
                    f"pipeline models.{model}: unknown key(s) {sorted(unknown)}; known {sorted(MODEL_KEYS)}"
                )
            if mcfg.get("enabled", True):
                self.views.append(
                    ModelView(str(model), str(mcfg.view), check_kind(str(mcfg.adapter), str(model)))
                )
        if not self.views:
            raise ConfigError("pipeline models: no model enabled")
        self.stack_variants = {mv.view: stack_variants(cfg.models[mv.model], mv) for mv in self.views}
        names = [v.view for v in self.views]
        if len(set(names)) != len(names):
            raise ConfigError(f"pipeline models: view names must differ, got {names}")
        if self.static_cfg.get("enabled") and STATIC_VIEW in names:
            raise ConfigError(f"pipeline models: view {STATIC_VIEW!r} is the static-analysis view's name")
        self.stages: dict[str, StageResult] = {}
        self.train = train
        self.tracking = PipelineTracking.from_config(cfg, self.dir)  # None: tracking off

    # -- overrides ----------------------------------------------------------------------------------------
    def base_overrides(self, mv: ModelView) -> list[str]:
        return stage_overrides(self.cfg, mv.model)

    def plan(self) -> list[tuple[str, list[str], Any]]:
        """(stage name, overrides, extra hash input) for every base-model stage, in run order."""
        out = []
        for mv in self.views:
            base = self.base_overrides(mv)
            crossfit = list(self.cfg.models[mv.model].get("crossfit_overrides", []))
            for k in self.inner:
                out.append(
                    (
                        f"{mv.model}/fold{k}",
                        [
                            *base,
                            f"data.fold={k}",
                            f"++data.split.exclude_folds=[{self.cfg.test_fold}]",
                            *crossfit,
                        ],
                        None,
                    )
                )
            out.append((f"{mv.model}/full", [*base, f"data.fold={self.cfg.test_fold}"], None))
        return out

    # -- one stage ------------------------------------------------------------------------------------------
    def run_stage(self, name: str, overrides: list[str], extra: Any, step: int, total: int) -> StageResult:
        stage_dir = self.dir / "stages" / name
        cfg = compose_task("train.yaml", overrides, stage_dir, log_dir=self.dir / "logs")
        sources = source_fingerprint(cfg.get("data"))  # e.g. the packaged npm list: not in cfg itself
        wanted = config_hash(cfg, stage_dir, {"upstream": extra, "sources": sources} if sources else extra)
        prefix = f"[{step}/{total}] {name}"
        manifest = None if _forced(self.cfg.force, name) else reusable(stage_dir, self.dir, wanted)
        if manifest is not None:
            fields = {k: manifest.get(k) for k in StageResult.__dataclass_fields__ if k != "status"}
            result = StageResult(**{**fields, "status": "skipped"})
            self.console.print(f"{prefix}: [green]up to date[/green] (manifest matches), skipped")
            return result
        shutil.rmtree(stage_dir, ignore_errors=True)
        stage_dir.mkdir(parents=True)
        self.console.print(f"{prefix}: training ...")
        start = time.perf_counter()
        try:
            metrics, objects = self.train(cfg)
        except BaseException as exc:
            mark_failed(stage_dir, name, f"{type(exc).__name__}: {exc}")
            raise
        seconds = time.perf_counter() - start
        trainer, datamodule, model = objects["trainer"], objects["datamodule"], objects["model"]
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        preds = stage_dir / "test_predictions.jsonl"
        result = StageResult(
            name=name,
            status="trained",
            seconds=round(seconds, 1),
            config_hash=wanted,
            predictions=str(preds.relative_to(self.dir)) if preds.is_file() else None,
            checkpoint=str(Path(best).resolve().relative_to(self.dir)) if best else None,
            split_ids=split_ids(datamodule),
            metrics={
                k: round(v, 5) for k, v in metrics.items() if k.startswith("test/") and k.count("/") == 1
            },
            data_version=getattr(datamodule, "data_version", None),
            model_target=f"{type(model).__module__}.{type(model).__qualname__}",
        )
        write_manifest(stage_dir, result)
        del objects, trainer, datamodule, model
        gc.collect()
        self.console.print(f"{prefix}: [bold]trained[/bold] in {seconds:.0f} s  {self._headline(result)}")
        return result

    @staticmethod
    def _headline(r: StageResult) -> str:
        keys = ("test/auroc", "test/f1_macro", "test/ece")
        return "  ".join(f"{k.split('/')[1]} {r.metrics[k]:.3f}" for k in keys if k in r.metrics)

    # -- the whole run --------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:

        start = time.perf_counter()
        self.dir.mkdir(parents=True, exist_ok=True)
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # per-stage lines below instead
        threads = torch.get_num_threads()
        if self.cfg.get("cpu_threads"):
            torch.set_num_threads(int(self.cfg.cpu_threads))
        train_fn = self.train
        try:
            if self.tracking is not None:
                self.tracking.start()
                self.train = self.tracking.wrap(train_fn)  # each trained stage logs into a child run
            summary = self._run(start)
        except BaseException:
            if self.tracking is not None:
                self.tracking.fail()
            raise
        finally:
            self.train = train_fn
            torch.set_num_threads(threads)  # in process (tests, the API) the caller keeps its setting
        if self.tracking is not None:
            self.tracking.finish(self.stages, [self.dir / PIPELINE_FILE, self.dir / "comparison.md"])
        return summary

    def _run(self, start: float) -> dict[str, Any]:
        plan = self.plan()
        agg_on = bool(self.cfg.aggregator.get("enabled", True))
        total = len(plan) + int(agg_on)
        self.console.rule(
            f"pipeline {self.cfg.name}: {len(self.views)} base models x ({len(self.inner)} folds + full)"
        )
        self.console.print(f"run dir: {self.dir}")
        for step, (name, overrides, extra) in enumerate(plan, start=1):
            self.stages[name] = self.run_stage(name, overrides, extra, step, total)
        inner_tags = [f"fold{k}" for k in self.inner]
        test_members = self.crossfit_test_predictions(inner_tags) if self.inputs == "crossfit_mean" else None
        static = self.static_features() if self.static_cfg.get("enabled") else None
        self.static_used = static is not None
        variants = self.variant_oof_predictions(inner_tags)
        rows, manifest = build_stacked(
            self.dir, self.views, self.stages, inner_tags, test_members, static, variants
        )
        write_stacked(self.dir, rows, manifest)
        _, manifest = read_stacked(self.dir)
        self.console.print(
            f"stacked: {manifest['counts']} contracts, views {[v['view'] for v in manifest['views']]}, "
            f"test rows from {self.inputs}, cross-fitting checked by ids (no model predicted a contract it "
            "trained on)"
        )
        comparison: list[dict[str, Any]] = []
        if agg_on:
            agg = self.cfg.aggregator
            overrides = [
                "experiment=aggregator",
                f"data.pipeline_dir={override_value(str(self.dir))}",
                f"seed={self.cfg.seed}",
                f"paths.data_dir={override_value(str(self.cfg.paths.data_dir))}",
                *self.cfg.common_overrides,
                *(real_data(self.cfg).get("aggregator_overrides") or []),
                *agg.get("overrides", []),
            ]
            self.stages["aggregator"] = self.run_stage(
                "aggregator", overrides, manifest["content_hash"], total, total
            )
            comparison = self.compare()
        summary = self.finish(comparison, time.perf_counter() - start)
        return summary

    def crossfit_test_predictions(self, inner_tags: list[str]) -> dict[str, list[Path]]:
        """Per view, every fold model's predictions on the outer test fold (``crossfit_mean``)."""
        out: dict[str, list[Path]] = {}
        for mv in self.views:
            test_ids = self.stages[f"{mv.model}/full"].split_ids["test"]
            out[mv.view] = [
                outer_test_predictions(self.dir, self.stages[f"{mv.model}/{t}"], self.cfg.test_fold, test_ids)
                for t in inner_tags
            ]
        self.console.print(f"crossfit_mean: test rows average {len(inner_tags)} fold models per view")
        return out

    def variant_oof_predictions(self, inner_tags: list[str]) -> dict[str, dict[str, list[Path]]]:
        """Per view with ``stack_variants``, per compile variant, every fold model's predictions on its own
        out-of-fold contracts built that way (extra aggregator rows)."""
        out: dict[str, dict[str, list[Path]]] = {}
        for mv in self.views:
            for variant in self.stack_variants[mv.view]:
                out.setdefault(mv.view, {})[variant] = [
                    variant_predictions(self.dir, self.stages[f"{mv.model}/{t}"], variant) for t in inner_tags
                ]
                self.console.print(
                    f"stack_variants: {mv.model}'s {len(inner_tags)} fold models on their out-of-fold "
                    f"contracts built {variant}"
                )
        return out

    def static_features(self) -> dict[str, dict[str, float] | None] | None:
        """The static-analysis view's features of the contracts of the contract models' full stages (None:
        the view is left out)."""
        contract = [mv for mv in self.views if mv.kind == "contract_classes"]
        if not contract:
            raise ConfigError("static_analysis.enabled: needs a contract model (bytecode or source view)")
        stages = [self.stages[f"{mv.model}/full"] for mv in contract]
        ids = {i for full in stages for split in full.split_ids.values() for i in split}
        configs = [self.dir / "stages" / full.name / "config_resolved.yaml" for full in stages]
        return static_view(self.static_cfg, stage_analysis_inputs(configs, ids), self.console)

    def compare(self) -> list[dict[str, Any]]:
        stage = self.stages["aggregator"]
        if not stage.checkpoint:
            self.console.print("aggregator: no checkpoint (fast_dev_run?), comparison skipped")
            return []
        model = load_checkpoint(Aggregator, self.dir / stage.checkpoint)
        data_cfg = OmegaConf.load(self.dir / "stages" / "aggregator" / "config_resolved.yaml").data
        datamodule = instantiate(data_cfg, _convert_="all")
        if self.cfg.get("guard_best_single", True):
            self.guard = guard_choice(model, datamodule, float(self.cfg.get("guard_margin") or 0.0))
            best = self.guard["best_single"] or {}
            self.console.print(
                f"guard (val AUROC): aggregator {self.guard['aggregator']:.3f}, best single view "
                f"{best.get('view')} {best.get('auroc', float('nan')):.3f} (aggregator on its rows "
                f"{best.get('aggregator_auroc', float('nan')):.3f}) -> [bold]{self.guard['chosen']}[/bold]"
            )
        rows = compare(model, datamodule, self.guard)
        write_json(self.dir / "comparison.json", rows)
        (self.dir / "comparison.md").write_text(markdown_table(rows))
        self.console.print(rich_table(rows))
        return rows

    def finish(self, comparison: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
        table = Table(title=f"pipeline {self.cfg.name} ({seconds / 60:.1f} min)")
        for col in ("stage", "status", "seconds", "test metrics"):
            table.add_column(col, justify="right" if col == "seconds" else "left")
        for name, r in self.stages.items():
            table.add_row(name, r.status, f"{r.seconds:.0f}", self._headline(r))
        self.console.print(table)
        base = {
            mv.view: {
                "model": mv.model,
                "kind": mv.kind,
                "checkpoint": self.stages[f"{mv.model}/full"].checkpoint,
                "config": f"stages/{mv.model}/full/config_resolved.yaml",
                "model_target": self.stages[f"{mv.model}/full"].model_target,
                "folds": [
                    {
                        "fold": k,
                        "checkpoint": self.stages[f"{mv.model}/fold{k}"].checkpoint,
                        "config": f"stages/{mv.model}/fold{k}/config_resolved.yaml",
                    }
                    for k in self.inner
                ],
            }
            for mv in self.views
        }
        agg = self.stages.get("aggregator")
        summary = {
            "name": self.cfg.name,
            "status": "completed",
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_seconds": round(seconds, 1),
            "trained": [n for n, r in self.stages.items() if r.status == "trained"],
            "skipped": [n for n, r in self.stages.items() if r.status == "skipped"],
            "stages": {
                n: {"status": r.status, "seconds": r.seconds, "metrics": r.metrics}
                for n, r in self.stages.items()
            },
            "artifacts": {
                "base_models": base,
                "aggregator": agg.checkpoint if agg else None,
                "aggregator_config": "stages/aggregator/config_resolved.yaml" if agg else None,
                "aggregator_inputs": self.inputs,
                "mlflow_run_id": self.tracking.run_id if self.tracking is not None else None,
                "guard": self.guard,
                "static_analysis": {"cache_dir": self.static_cfg.get("cache_dir")}
                if self.static_used
                else None,
            },
            "comparison": comparison,
        }
        write_json(self.dir / PIPELINE_FILE, summary)
        self.console.print(
            f"pipeline dir: {self.dir} ({len(summary['trained'])} trained, {len(summary['skipped'])} skipped)"
        )
        return summary


def _console() -> Console:
    """Rich console; wide enough for the tables when output goes to a file or a pipe."""
    console = Console()
    return console if console.is_terminal else Console(width=150)


def run_pipeline(cfg: DictConfig, console: Console | None = None) -> dict[str, Any]:
    """Run (or resume) the pipeline of ``conf/pipeline.yaml``; returns the summary (pipeline.json)."""
    return Pipeline(cfg, console).run()
