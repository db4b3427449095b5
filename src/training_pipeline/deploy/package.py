"""Model packages: one self-contained, content-addressed directory per trained model or fused pipeline.

A package holds no pickle: weights are safetensors, everything else JSON. ``MANIFEST.json`` lists the sha256
of every other file, and the package id is the sha256 of the manifest itself, so one changed byte anywhere
changes the id or fails verification. Layout::

    MANIFEST.json              {"format": ..., "files": {relative path: sha256}}
    package.json               name, kind (model | pipeline), version, metrics it was accepted with, data
                               version, git commit, package versions, input schema (and, for a pipeline,
                               the views, the aggregator inputs and the guard)
    <component>/model.json     the model class (from a fixed allowlist) and the hyperparameters that rebuild
                               its network; label maps, thresholds, calibration and risk levels in words;
                               state the checkpoint carried outside the hyperparameters (the BPE tokenizer)
    <component>/weights.safetensors
    <component>/featurizer.json  the data config its featurizer is built from (opcode truncation, windows,
                                 tokenizer settings, transaction normalizer settings)

A model package has one component, ``model/``; a pipeline package has ``views/<view>/`` (with
``folds/<k>/`` for the cross-fitted models when its aggregator reads their mean) and ``aggregator/``.

Loading (``load_component``) verifies the whole package first (``verify_package``): a listed file that is
missing or differs, or a file the manifest does not list, is a ``PackageError`` naming it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule
from omegaconf import DictConfig, ListConfig, OmegaConf
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from training_pipeline.config import project_root
from training_pipeline.errors import DataError, UserError
from training_pipeline.evaluation.profile import (
    PROFILE_FILE,
    model_run_profile,
    pipeline_profile,
    profile_settings,
)
from training_pipeline.models.aggregator import Aggregator
from training_pipeline.models.behavior_model import BehaviorModel
from training_pipeline.models.bytecode_detector import BytecodeDetector
from training_pipeline.models.checkpoint import load_checkpoint
from training_pipeline.models.code_analyzer import CodeAnalyzer
from training_pipeline.pipeline.run_dirs import read_manifest
from training_pipeline.utils.files import file_sha256 as sha256_file
from training_pipeline.utils.run import git_state, package_versions

log = logging.getLogger(__name__)
FORMAT = "scathat-package/1"
MANIFEST = "MANIFEST.json"
META = "package.json"
WEIGHTS = "weights.safetensors"
MODEL_FILE = "model.json"
FEATURIZER_FILE = "featurizer.json"
NAME_PREFIX = "scathat-"
PIPELINE_NAME = f"{NAME_PREFIX}pipeline"

# The only classes a package may name: model.json never chooses arbitrary code to run.
MODEL_CLASSES: dict[str, type[LightningModule]] = {
    f"{cls.__module__}.{cls.__qualname__}": cls
    for cls in (BytecodeDetector, CodeAnalyzer, BehaviorModel, Aggregator)
}
# Hyperparameters that point outside the package (a pretraining checkpoint, a hub model): a packaged network
# is rebuilt from its stored encoder config and weights, never from these.
EXTERNAL_HPARAMS = ("encoder_ckpt", "pretrained_model_name_or_path")
INPUT_SCHEMA: dict[str, dict[str, str]] = {
    "bytecode": {
        "field": "bytecode",
        "type": "hex string",
        "what": "EVM runtime bytecode (metadata stripped)",
    },
    "source": {
        "field": "source",
        "type": "text",
        "what": "Solidity source, compiled with the solc its pragma asks",
    },
    "behavior": {
        "field": "transactions_csv",
        "type": "CSV text",
        "what": "explorer export of the transactions",
    },
    "static_analysis": {"field": "source", "type": "text", "what": "Slither's findings on the source"},
}
PACKAGED_VERSIONS = ("safetensors", "mlflow", "fastapi")


class PackageError(DataError):
    """A package that is incomplete, altered or not a package at all (the message names the file)."""


@dataclass(frozen=True)
class Package:
    """A verified package on disk."""

    path: Path
    id: str  # sha256 of MANIFEST.json
    meta: dict[str, Any]  # package.json

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    @property
    def metrics(self) -> dict[str, Any]:
        return self.meta.get("metrics", {})

    @property
    def data_version(self) -> str | None:
        return self.meta.get("data_version")


# -- hashing and verification --------------------------------------------------------------------------------


def write_manifest(root: Path) -> str:
    """Hash every file under ``root`` into its ``MANIFEST.json``; returns the package id."""
    files = {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    text = json.dumps({"format": FORMAT, "files": files}, indent=2, sort_keys=True) + "\n"
    (root / MANIFEST).write_text(text)
    return hashlib.sha256(text.encode()).hexdigest()


def verify_package(path: str | Path) -> Package:
    """The package at ``path`` after checking every file against its manifest; a ``PackageError`` naming the
    first file that is missing, altered or unlisted."""
    root = Path(path)
    if not root.is_dir():
        raise PackageError(f"{root}: no such package directory")
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise PackageError(f"{root}: not a model package (no {MANIFEST})")
    raw = manifest.read_bytes()
    try:
        listed = json.loads(raw)
        files = listed["files"]
        if listed.get("format") != FORMAT or not isinstance(files, dict):
            raise ValueError(f"format {listed.get('format')!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise PackageError(f"{manifest}: not a {FORMAT} manifest ({exc})") from None
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != MANIFEST}
    for rel in sorted(present - set(files)):
        raise PackageError(f"{root / rel}: file not in the package manifest (added or renamed)")
    for rel, expected in sorted(files.items()):
        file = root / rel
        if not file.is_file():
            raise PackageError(f"{file}: listed in the package manifest but missing")
        if sha256_file(file) != expected:
            raise PackageError(f"{file}: sha256 differs from the package manifest (altered or corrupted)")
    meta = _read_json(root / META)
    return Package(root, hashlib.sha256(raw).hexdigest(), meta)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(f"{path}: unreadable JSON ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise PackageError(f"{path}: expected a JSON object")
    return value


# -- components: one network with its featurizer config ------------------------------------------------------
def plain(value: Any) -> Any:
    """``value`` as JSON data (OmegaConf containers, tuples and tensors unwrapped)."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def _summary(module: LightningModule) -> dict[str, Any]:
    """Label maps, tuned thresholds, calibration and risk levels, readable without loading the weights (the
    weights file carries the same values as buffers)."""
    out: dict[str, Any] = {}
    for key in (
        "class_names",
        "family_names",
        "view_names",
        "risk_levels",
        "target",
        "threshold_eras",
        "era_max_flags",
    ):
        if key in module.hparams:
            out[key] = plain(module.hparams[key])
    buffers = dict(module.named_buffers())
    for key in ("thresholds", "era_thresholds", "temperature", "history_threshold", "tx_threshold"):
        if key in buffers:
            out[key] = plain(buffers[key])
    if isinstance(module, Aggregator):
        out["calibration"] = module.hparams.calibration
    return out


def write_component(
    module: LightningModule, featurizer_cfg: Mapping[str, Any] | None, directory: Path
) -> None:
    """``module`` as ``model.json`` + ``weights.safetensors`` (+ ``featurizer.json``) in ``directory``."""
    target = f"{type(module).__module__}.{type(module).__qualname__}"
    if target not in MODEL_CLASSES:
        raise UserError(f"{target}: not a model a package can hold ({', '.join(MODEL_CLASSES)})")
    directory.mkdir(parents=True, exist_ok=True)
    checkpoint: dict[str, Any] = {"hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(checkpoint)  # moves state kept outside the hparams (the BPE) into the dict
    hparams = plain(checkpoint.pop("hyper_parameters"))
    for key in EXTERNAL_HPARAMS:
        hparams.pop(key, None)
    extras = plain(checkpoint)
    spec = {"class": target, "hparams": hparams, "checkpoint_extras": extras, "summary": _summary(module)}
    (directory / MODEL_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(directory / WEIGHTS), metadata={"class": target})
    if featurizer_cfg is not None:
        (directory / FEATURIZER_FILE).write_text(
            json.dumps(plain(featurizer_cfg), indent=2, sort_keys=True) + "\n"
        )


def load_component(directory: Path) -> tuple[Any, dict[str, Any] | None]:
    """(module in eval mode, featurizer config) from a component of an already verified package."""
    spec = _read_json(directory / MODEL_FILE)
    cls = MODEL_CLASSES.get(str(spec.get("class")))
    if cls is None:
        raise PackageError(
            f"{directory / MODEL_FILE}: class {spec.get('class')!r} is not a packaged model class"
        )
    try:
        state = load_file(str(directory / WEIGHTS))  # safetensors: tensors only, nothing is unpickled
    except (SafetensorError, OSError, ValueError) as exc:
        raise PackageError(f"{directory / WEIGHTS}: not a safetensors file ({one_reason(exc)})") from None
    try:
        module = cls(**spec["hparams"])
        module.on_load_checkpoint({"hyper_parameters": spec["hparams"], **spec.get("checkpoint_extras", {})})
        module.load_state_dict(state, strict=True)
    except (TypeError, KeyError, RuntimeError, UserError) as exc:
        raise PackageError(
            f"{directory / MODEL_FILE}: cannot rebuild the network ({one_reason(exc)})"
        ) from None
    featurizer = directory / FEATURIZER_FILE
    return module.eval(), (_read_json(featurizer) if featurizer.is_file() else None)


def one_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


# -- building packages from run dirs -------------------------------------------------------------------------
def packages_root() -> Path:
    """Where ``make package`` writes: ``<project root>/outputs/packages``."""
    return project_root() / "outputs" / "packages"


def _data_config(run_config: Path) -> dict[str, Any]:
    return OmegaConf.to_container(OmegaConf.load(run_config).data, resolve=True)


def _optional_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _view_of(module: LightningModule) -> str:
    for cls, view in ((BytecodeDetector, "bytecode"), (CodeAnalyzer, "source"), (BehaviorModel, "behavior")):
        if isinstance(module, cls):
            return view
    raise UserError(f"{type(module).__name__}: not a base model")


def _option_of(run_config: Path) -> str:
    target = OmegaConf.select(OmegaConf.load(run_config), "model._target_") or ""
    for cls, option in (
        (BytecodeDetector, "bytecode_detector"),
        (CodeAnalyzer, "code_analyzer"),
        (BehaviorModel, "behavior_model"),
        (Aggregator, "aggregator"),
    ):
        if target == f"{cls.__module__}.{cls.__qualname__}":
            return option
    raise UserError(f"{run_config}: model {target!r} cannot be packaged")


def _base_meta(name: str, kind: str, model: str, source: Path) -> dict[str, Any]:
    git = git_state()
    versions = package_versions()
    for extra in PACKAGED_VERSIONS:
        try:
            from importlib import metadata

            versions[extra] = metadata.version(extra)
        except Exception:  # noqa: BLE001 - an optional package that is not installed
            versions[extra] = None
    return {
        "name": name,
        "kind": kind,
        "model": model,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git["commit"],
        "git_dirty": git["dirty"],
        "packages": versions,
        "source_run": str(source),
    }


def _finish(staging: Path, out_dir: Path, name: str, archive: bool) -> Package:
    """Manifest, content-addressed directory name ``<name>-<id[:12]>`` (an identical package is kept),
    and optionally the ``.tar.gz``."""
    staging.chmod(0o755)  # mkdtemp makes it private; a package is for others to read
    package_id = write_manifest(staging)
    final = out_dir / f"{name}-{package_id[:12]}"
    if final.exists():
        shutil.rmtree(staging)
    else:
        staging.replace(final)
    pkg = verify_package(final)
    if archive:
        archive_package(pkg)
    return pkg


def archive_package(pkg: Package) -> Path:
    """``<package dir>.tar.gz`` (written to a temp name, then renamed: never half an archive)."""
    target = pkg.path.with_name(pkg.path.name + ".tar.gz")
    tmp = target.with_name(target.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(pkg.path, arcname=pkg.path.name)
    tmp.replace(target)
    return target


def extract_archive(archive: Path, into: Path | None = None) -> Path:
    """The package directory inside ``archive`` (extracted once under ``into``, default next to the
    packages), verified; tar's ``data`` filter refuses links, devices and paths outside the target."""
    digest = sha256_file(archive)[:16]
    into = into or packages_root() / ".extracted" / digest
    if not into.is_dir():
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=into.parent if into.parent.exists() else None))
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise PackageError(f"{archive}: not a package archive ({one_reason(exc)})") from None
        into.parent.mkdir(parents=True, exist_ok=True)
        tmp.replace(into)
    dirs = [d for d in into.iterdir() if d.is_dir()]
    if len(dirs) != 1:
        raise PackageError(f"{archive}: expected one package directory inside, found {len(dirs)}")
    return verify_package(dirs[0]).path


def assemble(
    meta: Mapping[str, Any],
    components: Mapping[str, tuple[LightningModule, Mapping[str, Any] | None]],
    out_dir: Path | None = None,
    archive: bool = True,
    profile: Mapping[str, Any] | None = None,
) -> Package:
    """A package named ``meta["name"]`` of ``components`` (relative dir → (module, featurizer config)) under
    ``out_dir`` (default ``outputs/packages``), built in a staging dir that is removed on any error;
    ``profile``: the reference profile for drift monitoring (``reference_profile.json``)."""
    out_dir = out_dir or packages_root()
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
    try:
        for rel, (module, featurizer) in components.items():
            write_component(module, featurizer, staging / rel)
        (staging / META).write_text(json.dumps(plain(meta), indent=2, sort_keys=True) + "\n")
        if profile is not None:
            (staging / PROFILE_FILE).write_text(json.dumps(plain(profile), sort_keys=True) + "\n")
        return _finish(staging, out_dir, meta["name"], archive)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def package_model_run(run_dir: Path, out_dir: Path | None = None, archive: bool = True) -> Package:
    """A package of one training run dir (``src/train.py``): its best checkpoint, data config and metrics."""
    config = run_dir / "config_resolved.yaml"
    metrics = _optional_json(run_dir / "metrics.json")
    ckpt = Path(metrics.get("best_checkpoint") or run_dir / "checkpoints" / "best.ckpt")
    if not ckpt.is_absolute():
        ckpt = run_dir / ckpt
    if not config.is_file() or not ckpt.is_file():
        raise UserError(
            f"{run_dir}: not a finished training run dir (needs config_resolved.yaml and a checkpoint)"
        )
    option = _option_of(config)
    if option == "aggregator":
        raise UserError(f"{run_dir}: an aggregator alone cannot scan; package its train-all run dir")
    module = load_checkpoint(MODEL_CLASSES[OmegaConf.load(config).model._target_], ckpt)
    provenance = _optional_json(run_dir / "provenance.json")
    view = _view_of(module)
    meta = _base_meta(f"{NAME_PREFIX}{option}", "model", option, run_dir) | {
        "view": view,
        "data_version": metrics.get("data_version") or provenance.get("data_version"),
        "metrics": {
            "optimized_metric": metrics.get("optimized_metric"),
            "value": metrics.get("value"),
            "test": metrics.get("test", {}),
        },
        "input_schema": {view: INPUT_SCHEMA[view]},
    }
    profile = reference_profile(
        run_dir, lambda **kw: model_run_profile(config, module, meta["metrics"], **kw)
    )
    return assemble(meta, {"model": (module, _data_config(config))}, out_dir, archive, profile)


def reference_profile(source: Path, build: Any) -> dict[str, Any] | None:
    """``build(bins=, sample_size=, seed=)`` (``evaluation.profile``): the run's data re-created from its
    resolved config and the model run on the validation split (CPU). Any failure (data moved or missing)
    is one warning and a package without a profile; the drift report then says so."""
    settings = profile_settings()
    if not settings.pop("enabled"):
        return None
    try:
        return build(**settings)
    except Exception as exc:  # noqa: BLE001 - a profile is optional; the package is not
        log.warning("%s: packaged without a reference profile (%s)", source, one_reason(exc))
        return None


def package_pipeline_run(root: Path, out_dir: Path | None = None, archive: bool = True) -> list[Package]:
    """One package per base model and one for the fused pipeline of a train-all run dir (with the fold
    models when its aggregator reads their mean)."""
    info = read_manifest(root)
    artifacts = info["artifacts"]
    inputs = artifacts.get("aggregator_inputs", "full")
    packages, components, views, versions = [], {}, {}, {}
    for view, art in artifacts["base_models"].items():
        stage_dir = (root / art["checkpoint"]).parents[1]
        packages.append(package_model_run(stage_dir, out_dir, archive))
        cls = MODEL_CLASSES[art["model_target"]]
        module = load_checkpoint(cls, root / art["checkpoint"])
        components[f"views/{view}"] = (module, _data_config(root / art["config"]))
        folds = (art.get("folds") or []) if inputs == "crossfit_mean" else []
        for fold in folds:
            member = load_checkpoint(cls, root / fold["checkpoint"])
            components[f"views/{view}/folds/{fold['fold']}"] = (member, _data_config(root / fold["config"]))
        views[view] = {"model": art["model"], "kind": art.get("kind"), "folds": len(folds)}
        versions[view] = _optional_json(stage_dir / "provenance.json").get("data_version")
    if artifacts.get("aggregator"):
        components["aggregator"] = (load_checkpoint(Aggregator, root / artifacts["aggregator"]), None)
    meta = _base_meta(PIPELINE_NAME, "pipeline", "pipeline", root) | {
        "views": views,
        "aggregator": bool(artifacts.get("aggregator")),
        "aggregator_inputs": inputs,
        "guard": (artifacts.get("guard") or {}).get("chosen", "aggregator"),
        "static_analysis": bool(artifacts.get("static_analysis")),
        "data_version": _combined_version(versions),
        "data_versions": versions,
        "metrics": {"comparison": info.get("comparison", []), "guard": artifacts.get("guard")},
        "models": {p.meta["model"]: p.id for p in packages},
        "input_schema": {v: INPUT_SCHEMA[v] for v in (*views, "static_analysis") if v in INPUT_SCHEMA},
    }
    profile = None
    if "aggregator" in components:
        configs = {view: root / str(art.get("config")) for view, art in artifacts["base_models"].items()}
        agg_config = root / str(artifacts.get("aggregator_config"))
        profile = reference_profile(
            root,
            lambda **kw: pipeline_profile(
                components["aggregator"][0],
                agg_config,
                configs,
                meta["metrics"],
                {view: components[f"views/{view}"][0] for view in configs},
                **kw,
            ),
        )
    return [*packages, assemble(meta, components, out_dir, archive, profile)]


def _combined_version(versions: Mapping[str, str | None]) -> str | None:
    """One data version for several: the shared one, else the sha256 of them all."""
    distinct = sorted({v for v in versions.values() if v})
    if len(distinct) <= 1:
        return distinct[0] if distinct else None
    return "sha256:" + hashlib.sha256("\n".join(distinct).encode()).hexdigest()


def package_run(
    run_dir: str | Path, out_dir: str | Path | None = None, archive: bool = True
) -> list[Package]:
    """Packages of a train-all run dir (one per model + the pipeline) or of one training run dir."""
    root = Path(run_dir)
    if not root.is_dir():
        raise UserError(f"{root}: no such run dir")
    out = Path(out_dir) if out_dir else None
    if (root / "pipeline.json").is_file():
        return package_pipeline_run(root, out, archive)
    return [package_model_run(root, out, archive)]


def open_package(path: str | Path) -> Package:
    """A package directory or ``.tar.gz``, verified."""
    path = Path(path)
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        return verify_package(extract_archive(path))
    return verify_package(path)
