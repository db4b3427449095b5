"""MLflow tracking: where the store is, the Lightning logger of ``logger=mlflow``, the runs of ``train-all``.

The store is ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<project root>/outputs/mlflow/mlflow.db``
with artifacts in ``outputs/mlflow/artifacts`` (``mlflow ui --backend-store-uri sqlite:///outputs/mlflow/
mlflow.db`` shows it). MLflow is an optional extra and slow to import, so it is imported inside functions
only: runs without tracking never load it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from training_pipeline.config import project_root

log = logging.getLogger(__name__)

ENV_URI = "MLFLOW_TRACKING_URI"
STORE_DIR = Path("outputs") / "mlflow"  # under the project root
EXPERIMENT_PREFIX = "scathat-"
PARENT_TAG = "mlflow.parentRunId"  # what the MLflow UI nests child runs by
STAGE_TAG = "pipeline.stage"


# -- the store ------------------------------------------------------------------------------------------
def tracking_uri(root: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the SQLite store under ``<root>/outputs/mlflow`` (root: the
    project root, ``PROJECT_ROOT`` or the working directory)."""
    env = os.environ.get(ENV_URI)
    if env:
        return env
    return f"sqlite:///{(root or project_root()).resolve() / STORE_DIR / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative paths from the working directory), else None."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :].split("?", 1)[0]) if uri.startswith(prefix) else None


def artifact_location(root: Path | None = None) -> str | None:
    """Where new experiments keep their artifacts (a ``file://`` URI): beside a SQLite store, in its folder's
    ``artifacts/``; None for a tracking server or a file store, which choose themselves."""
    return _artifacts_for(tracking_uri(root))


def ensure_store(uri: str) -> str:
    """Create the folder of a SQLite store (SQLAlchemy creates the file, not its folder); returns ``uri``."""
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    return uri


def ensure_experiment(name: str, uri: str | None = None, artifacts: str | None = None) -> str:
    """The id of experiment ``name`` in the store ``uri`` (default: ``tracking_uri()``), created with
    ``artifacts`` (default: ``artifact_location()`` of that store) if missing, restored if deleted."""
    from mlflow import MlflowClient

    uri = ensure_store(uri or tracking_uri())
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return client.create_experiment(name, artifact_location=artifacts or _artifacts_for(uri))
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


def _artifacts_for(uri: str) -> str | None:
    db = sqlite_path(uri)
    return (db.resolve().parent / "artifacts").as_uri() if db is not None else None


def experiment_for(model_target: str | None, default: str = "train") -> str:
    """``scathat-<model module>`` (``training_pipeline.models.bytecode_detector.BytecodeDetector`` ->
    ``scathat-bytecode_detector``): one experiment per kind of model, whose runs share their metrics."""
    parts = (model_target or "").split(".")
    return EXPERIMENT_PREFIX + (parts[-2] if len(parts) >= 2 else default)


def flat_params(obj: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> ``{"a/b/c": "value"}``, values as text cut to MLflow's 6000 characters."""
    out: dict[str, str] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flat_params(value, f"{name}/"))
        else:
            out[name] = str(value)[:6000]
    return out


# -- the Lightning logger (logger=mlflow) --------------------------------------------------------------------
def _build_logger_class() -> type:
    from lightning.pytorch.loggers import MLFlowLogger
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    default_uri = tracking_uri  # the parameters below shadow the module's functions

    class MLflowRunLogger(MLFlowLogger):
        """Lightning's ``MLFlowLogger`` with the project's defaults: the store of ``tracking_uri()``, the
        experiment named after the model, the run named after the run dir, the run's resolved config
        (``config_resolved.yaml``) as ``config/...`` params and an artifact, ``best/<monitor>`` at the end.
        ``run_id`` logs into an existing run (``train-all``'s child run of a stage)."""

        def __init__(
            self,
            run_dir: str,
            model_target: str | None = None,
            experiment_name: str | None = None,
            run_name: str | None = None,
            tracking_uri: str | None = None,
            artifact_location: str | None = None,
            run_id: str | None = None,
            tags: dict[str, Any] | None = None,
            **kwargs: Any,
        ) -> None:
            uri = ensure_store(tracking_uri or default_uri())
            self.run_dir = Path(run_dir)
            self._logged: dict[str, str] = {}
            self._best_callback: Any = None
            super().__init__(
                experiment_name=experiment_name or experiment_for(model_target),
                run_name=run_name or self.run_dir.name,
                tracking_uri=uri,
                tags={k: str(v) for k, v in (tags or {}).items()},
                artifact_location=artifact_location or _artifacts_for(uri),
                run_id=run_id,
                **kwargs,
            )

        @rank_zero_only
        def log_hyperparams(self, params: Any) -> None:
            """The params given (learnt ``*_state`` left out), plus on the first call the run's resolved
            config. A key already logged is not sent again (MLflow refuses a changed value)."""
            params = dict(vars(params) if not isinstance(params, Mapping) else params)
            params = {k: v for k, v in params.items() if not str(k).endswith("_state")}
            params = {
                k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in params.items()
            }
            flat = flat_params(params)
            config = self.run_dir / "config_resolved.yaml"
            if not self._logged and config.is_file():
                flat.update(flat_params(OmegaConf.to_container(OmegaConf.load(config)), "config/"))
                self.experiment.log_artifact(self.run_id, str(config))
            new = {k: v for k, v in flat.items() if k not in self._logged}
            changed = [k for k, v in flat.items() if k in self._logged and self._logged[k] != v]
            if changed:
                log.debug("MLflow params already logged with other values, kept: %s", changed[:5])
            if new:
                from mlflow.entities import Param

                items = [Param(k, v) for k, v in new.items()]
                for i in range(0, len(items), 100):  # MLflow's batch limit
                    self.experiment.log_batch(self.run_id, params=items[i : i + 100])
                self._logged.update(new)

        def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
            if getattr(checkpoint_callback, "monitor", None):  # the best checkpoint's, not last.ckpt's
                self._best_callback = checkpoint_callback
            super().after_save_checkpoint(checkpoint_callback)

        @rank_zero_only
        def finalize(self, status: str = "success") -> None:
            cb = self._best_callback
            if self._initialized and cb is not None and cb.monitor and cb.best_model_score is not None:
                self.log_metrics({f"best/{cb.monitor}": float(cb.best_model_score)})
            super().finalize(status)

    MLflowRunLogger.__module__ = __name__
    MLflowRunLogger.__qualname__ = "MLflowRunLogger"
    return MLflowRunLogger


def __getattr__(name: str) -> Any:
    """``MLflowRunLogger`` is built on first use, so importing this module loads neither Lightning nor
    MLflow (the registry and the serving code use the store helpers above)."""
    if name == "MLflowRunLogger":
        cls = _build_logger_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- train-all: a parent run, a child run per trained stage --------------------------------------------------
class PipelineTracking:
    """One ``train-all`` invocation as a parent MLflow run; every stage it trains logs into a child run
    (tag ``mlflow.parentRunId``) through the stage's ``MLflowRunLogger``. Skipped stages (resumed, manifest
    up to date) get no child run: their metrics are on the parent (``<stage>/test/...``) and the parent's
    ``pipeline.skipped`` tag names them, so a rerun never duplicates a stage's training run."""

    def __init__(self, cfg: DictConfig, pipeline_dir: Path) -> None:
        tracking = cfg.get("tracking") or {}
        self.cfg = cfg
        self.dir = pipeline_dir
        self.uri = ensure_store(tracking.get("uri") or tracking_uri(Path(cfg.paths.root_dir)))
        self.experiment = str(tracking.get("experiment") or f"{EXPERIMENT_PREFIX}pipeline")
        self.run_id: str | None = None
        self._client: Any = None

    @classmethod
    def from_config(cls, cfg: DictConfig, pipeline_dir: Path) -> PipelineTracking | None:
        tracking = cfg.get("tracking") or {}
        return cls(cfg, pipeline_dir) if tracking.get("enabled") else None

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(self.uri)
        return self._client

    def start(self) -> str:
        """Create the parent run (tags: pipeline name and dir, git commit; params: the pipeline config)."""
        from training_pipeline.utils.run import git_state

        exp_id = ensure_experiment(self.experiment, self.uri)
        git = git_state()
        tags = {
            "mlflow.runName": str(self.cfg.name),
            "pipeline.name": str(self.cfg.name),
            "pipeline.dir": str(self.dir),
            "mlflow.source.git.commit": git.get("commit") or "",
            "git.dirty": str(git.get("dirty")),
        }
        run = self.client.create_run(exp_id, tags={k: v for k, v in tags.items() if v})
        self.run_id = run.info.run_id
        container = OmegaConf.to_container(self.cfg, resolve=True)
        container.pop("paths", None)
        self._log(params=flat_params(container))
        return self.run_id

    def wrap(self, train: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
        """``train`` logging into a new child run of the stage whose dir is ``cfg.paths.output_dir``."""

        def train_in_child(cfg: DictConfig) -> Any:
            stage_dir = Path(cfg.paths.output_dir).resolve()
            try:
                stage = stage_dir.relative_to(self.dir / "stages").as_posix()
            except ValueError:
                stage = stage_dir.name
            exp_id = ensure_experiment(self.experiment, self.uri)
            tags = {
                PARENT_TAG: self.run_id,
                STAGE_TAG: stage,
                "mlflow.runName": stage,
                "run_dir": str(stage_dir),
            }
            child = self.client.create_run(exp_id, tags=tags).info.run_id
            with open_dict(cfg):
                if not cfg.get("logger"):
                    cfg.logger = {}
                cfg.logger.mlflow = {
                    "_target_": f"{__name__}.MLflowRunLogger",
                    "run_dir": str(stage_dir),
                    "tracking_uri": self.uri,
                    "run_id": child,
                }
            try:
                result = train(cfg)
            except BaseException:
                self.client.set_terminated(child, "FAILED")
                raise
            self.client.set_terminated(child, "FINISHED")
            return result

        return train_in_child

    def finish(self, stages: Mapping[str, Any], files: list[Path]) -> None:
        """Every stage's test metrics on the parent, which stages trained or were skipped, the files."""
        metrics = {
            f"{name}/{k}": float(v) for name, r in stages.items() for k, v in (r.metrics or {}).items()
        }
        versions = {r.data_version for name, r in stages.items() if name != "aggregator" and r.data_version}
        tags = {
            "pipeline.trained": ",".join(n for n, r in stages.items() if r.status == "trained"),
            "pipeline.skipped": ",".join(n for n, r in stages.items() if r.status == "skipped"),
        }
        if len(versions) == 1:
            tags["data_version"] = versions.pop()
        self._log(metrics=metrics, tags=tags)
        for path in files:
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, "FINISHED")

    def fail(self) -> None:
        if self.run_id:
            self.client.set_terminated(self.run_id, "FAILED")

    def _log(
        self,
        params: Mapping[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        import time

        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        items: list[Any] = [Param(k, v) for k, v in (params or {}).items()]
        items += [Metric(k, v, now, 0) for k, v in (metrics or {}).items()]
        items += [RunTag(k, v) for k, v in (tags or {}).items()]
        for i in range(0, len(items), 100):  # MLflow's batch limit (params, metrics and tags together: 1000)
            chunk = items[i : i + 100]
            self.client.log_batch(
                self.run_id,
                params=[x for x in chunk if isinstance(x, Param)],
                metrics=[x for x in chunk if isinstance(x, Metric)],
                tags=[x for x in chunk if isinstance(x, RunTag)],
            )
