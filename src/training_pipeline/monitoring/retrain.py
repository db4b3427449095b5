"""Gated retraining: train a challenger, score it and the registry's champion on one frozen evaluation set,
promote it only when it is better, and record every decision (``scripts/retrain.py``, ``make retrain``).

A retrain has a deterministic run dir ``<output_dir>/<id>/`` (``outputs/retrain``), ``id`` the hash of the
models, the ``--data-version`` asked for, the new data files' contents and the config overrides, so a rerun
after an interruption resumes: a single model's training run (``train/``) is reused once its ``status.json``
says completed (an interrupted one continues from ``checkpoints/last.ckpt``), a train-all run (``pipeline/``)
skips the stages whose manifests match, and the challenger's package (``state.json``) is reused.

New data (``--new-data``, interchange JSONL/parquet files) joins the model's data as the ``file`` source
(``data.sources=[..., file] data.path=<run dir>/new_data.jsonl``), so the datamodule cleans, groups clones and
splits by group as for any source; records that repeat an id or a clone key (``data.contracts.clone_keys``) of
the existing data or of an earlier new record are dropped first (counted in the report). The data version is
the datamodule's content hash of the merged sources; the corpus and the importers cache what they build by
config key, so ``--data-version latest`` rebuilds only what changed.

The frozen evaluation set is the champion's test split as it was when first frozen:
``<eval_set_dir>/<champion data version>.jsonl`` (interchange records), written by the first retrain against
that champion and reused, with its sha256 recorded, by every later one. Records of it that the challenger's
data puts in its training split (a new clone joining their group) are left out of both scores.

The gate (``conf/monitoring/retrain.yaml``): the challenger is promoted when its primary metric beats the
champion's by ``margin`` and no class's F1 drops by more than ``tolerance``. With ``--increment-version`` the
challenger is registered (a new registry version) and becomes the champion, or the challenger alias when the
gate refuses it; without, nothing in the registry changes. Every decision is appended to the audit log
(action ``retrain``) and, for a registered challenger, written as tags on its registry version; the run dir
gets ``decision.json``.

The behavior model (``--models behavior_model``) follows the same steps on transaction histories: its data is
the behavior datamodule's (simulated histories of the corpus, or explorer CSVs with ``--config-overrides
data=behavior_csv data.path=... data.labels_path=...``, whose files' contents then join the retrain id), its
frozen set ``<eval_set_dir>/<data version>.jsonl`` holds the champion's test histories (the simulator's
record layout: ``contract_id``, ``label``, the transaction columns), and a package is scored by its own
decision (``BehaviorModel.decide``: its tuned history threshold) as history-class macro-F1 and per-class F1.
``--new-data`` is not merged into histories: new explorer exports go into the ``data.path`` folder instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from training_pipeline import taxonomy
from training_pipeline.config import CONF_DIR, compose_task, override_value, project_root
from training_pipeline.errors import ConfigError, DataError, UserError
from training_pipeline.pipeline.runner import stage_overrides
from training_pipeline.utils.checks import config_dataclass
from training_pipeline.utils.files import file_sha256 as sha256_file
from training_pipeline.utils.run import one_line, set_status, write_json

log = logging.getLogger(__name__)

CONFIG_FILE = CONF_DIR / "monitoring" / "retrain.yaml"
MODELS = ("all", "code_analyzer", "bytecode_detector", "behavior_model", "aggregator")
CONTRACT_MODELS = ("bytecode_detector", "code_analyzer")  # the contract views a pipeline gets new data on
PIPELINE_MODELS = ("all", "aggregator")
TRIGGERS = ("manual", "schedule", "drift")
PRIMARY_METRICS = ("f1_macro", "f1_micro")
CONTRACT_SUFFIXES = (".jsonl", ".parquet")
ALERT_STATUSES = ("alert",)
TAG_PREFIX = "retrain."
EPS = 1e-9


# -- configuration ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetrainConfig:
    """``conf/monitoring/retrain.yaml``; a misspelled key is a one-line ConfigError."""

    primary_metric: str = "f1_macro"
    margin: float = 0.01
    tolerance: float = 0.05
    default_models: str = "bytecode_detector"
    output_dir: str | None = None
    eval_set_dir: str | None = None
    monitoring_dir: str | None = None
    common_overrides: Sequence[str] = ()
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.primary_metric not in PRIMARY_METRICS:
            raise ConfigError(
                f"retrain primary_metric={self.primary_metric!r}: "
                f"expected one of {', '.join(PRIMARY_METRICS)}"
            )
        for key in ("margin", "tolerance"):
            value = getattr(self, key)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ConfigError(f"retrain {key}={value!r}: expected a number")
        if self.tolerance < 0:
            raise ConfigError(f"retrain tolerance={self.tolerance}: expected a number >= 0")
        if self.default_models not in MODELS:
            raise ConfigError(f"retrain default_models={self.default_models!r}: expected one of {MODELS}")
        for name, block in self.models.items():
            if name not in MODELS:
                raise ConfigError(f"retrain models.{name}: unknown model; expected some of {MODELS}")
            unknown = set(block or {}) - {"experiment", "overrides"}
            if unknown:
                raise ConfigError(f"retrain models.{name}: unknown key(s) {sorted(unknown)}")

    def model_block(self, models: str) -> dict[str, Any]:
        block = dict(self.models.get(models) or {})
        return {
            "experiment": block.get("experiment") or models,
            "overrides": list(block.get("overrides") or []),
        }


def load_config(path: Path = CONFIG_FILE, **overrides: Any) -> RetrainConfig:
    """The retrain config, with the command line's ``margin``/``tolerance`` (not None) over the file's."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such retrain config")
    try:
        values = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as exc:  # noqa: BLE001 - a YAML or interpolation error: one line
        raise ConfigError(f"{path}: {one_line(exc)}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of retrain settings")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return config_dataclass(RetrainConfig, values, f"retrain config {path}")


@dataclass
class Request:
    """What one retrain was asked to do (the command line)."""

    trigger: str = "manual"
    models: str | None = None  # None: the config's default_models
    new_data: list[str] = field(default_factory=list)
    data_version: str = "latest"
    notify: bool = False
    increment_version: bool = False
    margin: float | None = None
    tolerance: float | None = None
    config_overrides: list[str] = field(default_factory=list)
    output_dir: str | None = None
    monitoring_dir: str | None = None


# -- the drift trigger ------------------------------------------------------------------------------------
def latest_drift_report(monitoring_dir: Path) -> Path | None:
    """``latest.json`` under ``monitoring_dir``, else the newest ``*/drift.json``; None when there is none."""
    latest = monitoring_dir / "latest.json"
    if latest.is_file():
        return latest
    reports = sorted(monitoring_dir.glob("*/drift.json"), key=lambda p: p.stat().st_mtime)
    return reports[-1] if reports else None


def drift_alerted(monitoring_dir: Path) -> tuple[bool, str]:
    """(whether the latest drift report alerted, why in words)."""
    report = latest_drift_report(monitoring_dir)
    if report is None:
        return False, f"no drift report under {monitoring_dir} (latest.json or */drift.json)"
    try:
        data = json.loads(report.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{report}: not a readable drift report ({type(exc).__name__})") from None
    status = data.get("status") if isinstance(data, dict) else None
    if status is None and isinstance(data, dict) and isinstance(data.get("alert"), bool):
        status = "alert" if data["alert"] else "ok"
    if status is None:
        raise DataError(f"{report}: drift report without a top-level 'status' (ok | warning | alert)")
    if status in ALERT_STATUSES:
        return True, f"drift report {report} has status {status!r}"
    return False, f"the latest drift report {report} has status {status!r}, not alert"


# -- new data ---------------------------------------------------------------------------------------------


def check_new_data(paths: Sequence[str], models: str) -> list[Path]:
    """The ``--new-data`` files, each checked to exist and to be a file this model's data reads."""
    if paths and models == "behavior_model":
        raise UserError(
            "--new-data: behavior_model does not merge files into its histories; retrain it on explorer "
            "exports with --config-overrides data=behavior_csv "
            "data.path=<CSV file or folder, new exports included> data.labels_path=<labels CSV>"
        )
    out = []
    for text in paths:
        path = Path(text)
        if not path.exists():
            raise DataError(f"{path}: no such file (--new-data)")
        if path.is_dir() or path.suffix not in CONTRACT_SUFFIXES:
            raise DataError(
                f"{path}: expected a {' or '.join(CONTRACT_SUFFIXES)} file of contract records (--new-data)"
            )
        out.append(path.resolve())
    return out


def merge_new_data(
    paths: Sequence[Path], existing: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The records of ``paths`` that are new: not an id, and not a clone (same normalized source, or the same
    bytecode lacking source) of an ``existing`` record or of an earlier new one; and the counts."""
    from training_pipeline.data.contracts import clone_keys
    from training_pipeline.data.records import read_records

    ids = {r["id"] for r in existing}
    keys = {k for r in existing for k in clone_keys(dict(r))}
    kept: list[dict[str, Any]] = []
    stats = {"files": {}, "read": 0, "duplicate_ids": 0, "duplicate_contracts": 0}
    for path in paths:
        records = read_records(path)
        stats["files"][str(path)] = {"sha256": sha256_file(path), "records": len(records)}
        stats["read"] += len(records)
        for r in records:
            if r["id"] in ids:
                stats["duplicate_ids"] += 1
                continue
            mine = clone_keys(r)
            if any(k in keys for k in mine):
                stats["duplicate_contracts"] += 1
                continue
            ids.add(r["id"])
            keys.update(mine)
            kept.append(r)
    stats["kept"] = len(kept)
    return kept, stats


# -- ids, dirs, the registry ------------------------------------------------------------------------------
def retrain_id(
    models: str,
    data_version: str,
    new_data: Sequence[Path],
    overrides: Sequence[str],
    inputs: Sequence[str] = (),
) -> str:
    """16 hex digits naming a retrain: the same request (same new data contents, and for explorer CSVs the
    same ``inputs``: their files' version) resumes the same run dir."""
    body: dict[str, Any] = {
        "models": models,
        "data_version": data_version,
        "new_data": sorted(sha256_file(p) for p in new_data),
        "overrides": list(overrides),
    }
    if inputs:
        body["inputs"] = list(inputs)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def registry_name(models: str) -> str:
    """The registered model a retrain's packages go to."""
    return "scathat-pipeline" if models in PIPELINE_MODELS else f"scathat-{models}"


def find_champion(name: str) -> tuple[Path, dict[str, Any]] | None:
    """(verified local package, registry info) of ``name``'s champion; None when it has none yet."""
    from training_pipeline.deploy import registry

    c = registry.client()
    try:
        model = c.get_registered_model(name)
    except Exception as exc:  # noqa: BLE001 - MlflowException: no such model yet
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    if "champion" not in model.aliases:
        return None
    return registry.resolve(f"models:/{name}@champion")


# -- data configs -----------------------------------------------------------------------------------------
def _instantiate_data(data_cfg: Any) -> Any:
    from hydra.utils import instantiate

    dm = instantiate(data_cfg, _convert_="all")
    dm.prepare_data()
    return dm


def split_records(data_cfg: Any) -> tuple[list[dict[str, Any]], list[str], str | None]:
    """(records, split names, data version) of a contract data config, loaded and split as for training
    (nothing featurized)."""
    dm = _instantiate_data(data_cfg)
    records, names = dm.load_records()
    return records, names, dm.data_version


def history_splits(data_cfg: Any) -> tuple[list[dict[str, Any]], list[str], str | None]:
    """(histories, split names, data version) of a behavior data config, split as for training (the
    datamodule's own ``setup``: folds, fixed splits of a labels file, leave-families-out)."""
    dm = _instantiate_data(data_cfg)
    dm.setup()
    names = [""] * len(dm.records)
    for split in ("train", "val", "test"):
        for i in dm.splits[split].index.tolist():
            names[int(i)] = split
    return dm.records, names, dm.data_version


def behavior_inputs(data_cfg: Any) -> list[str]:
    """The version of the explorer CSVs a behavior data config reads (empty for simulated histories, whose
    config names them): a changed export folder is another retrain, never a reused training run."""
    if not data_cfg.get("path"):
        return []
    from training_pipeline.data.tx_csv import files_version

    paths = [data_cfg.get(k) for k in ("path", "labels_path", "internal_path", "token_path")]
    for p in paths:
        if p is not None and not Path(str(p)).exists():
            raise DataError(f"{p}: no such file or folder (data.*path)")
    return [files_version(*paths)]


def with_new_data(data_cfg: DictConfig, path: Path) -> list[str]:
    """Overrides that add ``path`` to a contract data config as the ``file`` source."""
    sources = list(data_cfg.get("sources") or ["corpus"])
    if "file" in sources:
        raise UserError(
            f"--new-data: the model's data already reads a contract file ({data_cfg.get('path')}); "
            "retrain adds new data as that source"
        )
    return [f"data.sources={override_value([*sources, 'file'])}", f"data.path={override_value(str(path))}"]


def _source_data_cfg(meta: Mapping[str, Any]) -> DictConfig | None:
    """The data config of the run a package was built from (for a pipeline: its first contract view's full
    stage); None when that run dir is gone."""
    run = Path(str(meta.get("source_run") or ""))
    config = run / "config_resolved.yaml"
    if not config.is_file() and (run / "pipeline.json").is_file():
        bases = json.loads((run / "pipeline.json").read_text())["artifacts"]["base_models"]
        for art in bases.values():
            if art.get("model") in CONTRACT_MODELS:
                config = run / art["config"]
                break
    if not meta.get("source_run") or not config.is_file():
        return None
    return OmegaConf.load(config).data


# -- the frozen evaluation set ----------------------------------------------------------------------------
def version_key(data_version: str | None) -> str:
    return str(data_version or "unversioned").replace(":", "-").replace("/", "-")


def write_histories(histories: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Histories as JSONL, one a line (keys sorted, so the same histories give the same bytes and sha256)."""

    def plain(value: Any) -> Any:
        if hasattr(value, "tolist"):  # numpy arrays and scalars
            return value.tolist()
        if isinstance(value, set | tuple):
            return sorted(value) if isinstance(value, set) else list(value)
        raise TypeError(f"{type(value).__name__} is not JSON-able")

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("w", encoding="utf-8") as fh:
        for h in histories:
            fh.write(json.dumps(dict(h), sort_keys=True, default=plain) + "\n")
    tmp.replace(path)
    return path


def read_histories(path: Path) -> list[dict[str, Any]]:
    """The histories of a frozen set written by ``write_histories``; a malformed line is a DataError."""
    out = []
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                h = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{line_no}: not JSON ({exc.msg})") from None
            if not isinstance(h, dict) or not {"contract_id", "label", "method"} <= set(h):
                raise DataError(
                    f"{path}:{line_no}: not a transaction history (contract_id, label, method, ...)"
                )
            out.append(h)
    return out


def frozen_eval_set(
    eval_dir: Path,
    champion_meta: Mapping[str, Any] | None,
    base: tuple[list[dict[str, Any]], list[str], str | None],
    histories: bool = False,
) -> dict[str, Any]:
    """The frozen set of the champion's data version: read when it exists, else frozen now from the
    champion's test split (its run's data config; the current base data when that run dir is gone or there
    is no champion yet). ``histories``: transaction histories (the behavior model), else contract records."""
    from training_pipeline.data.records import read_records as read_contracts
    from training_pipeline.data.records import write_records as write_contracts

    read_records = read_histories if histories else read_contracts
    splitter = history_splits if histories else split_records

    def write_records(records: list[dict[str, Any]], path: Path, overwrite: bool) -> Path:
        return (
            write_histories(records, path)
            if histories
            else write_contracts(records, path, overwrite=overwrite)
        )

    version = (champion_meta or {}).get("data_version") or base[2]
    path = eval_dir / f"{version_key(version)}.jsonl"
    if path.is_file():
        return {"path": str(path), "sha256": sha256_file(path), "data_version": version, "frozen_now": False,
                "records": read_records(path), "origin": "reused"}  # fmt: skip
    origin = "the current base data's test split (no champion yet)"
    records, names = base[0], base[1]
    if champion_meta is not None:
        data_cfg = _source_data_cfg(champion_meta)
        if data_cfg is not None:
            records, names, _ = splitter(data_cfg)
            origin = f"the champion's test split ({champion_meta.get('source_run')})"
        else:
            origin = "the current base data's test split (the champion's run dir is gone)"
    test = [r for r, s in zip(records, names, strict=True) if s == "test" and not r.get("augmented_from")]
    if not test:
        raise DataError(f"no test records to freeze an evaluation set from ({origin})")
    write_records(test, path, overwrite=True)
    log.info("Froze the evaluation set %s: %d records from %s", path, len(test), origin)
    return {"path": str(path), "sha256": sha256_file(path), "data_version": version, "frozen_now": True,
            "records": read_records(path), "origin": origin}  # fmt: skip


# -- scoring a package ------------------------------------------------------------------------------------
def score_package(package: Path, records: Sequence[Mapping[str, Any]], metric: str) -> dict[str, Any]:
    """Per-class F1 of a package's flagged classes (the scan report's ``flagged``: per-class thresholds
    applied) on ``records``, unassessed entries masked; ``f1_macro`` over the classes with an assessed
    positive in ``records``, ``f1_micro`` over every class."""
    import torch

    from training_pipeline.data.contracts import label_mask
    from training_pipeline.deploy.package import open_package
    from training_pipeline.metrics.classification import f1_per_class, masked_targets
    from training_pipeline.scan.inputs import ScanInput
    from training_pipeline.scan.scanner import Scanner

    scanner = Scanner.from_package(open_package(package))
    items = [
        ScanInput(name=str(r["id"]), source_code=r.get("source_code"), bytecode=r.get("bytecode"))
        for r in records
    ]
    reports = scanner.scan(items)
    classes = list(taxonomy.VULNERABILITY_CLASSES)
    preds = torch.tensor(
        [taxonomy.multi_hot(rep.get("flagged") or []) for rep in reports], dtype=torch.float32
    )
    targets = torch.tensor([taxonomy.multi_hot(r["labels"]) for r in records], dtype=torch.float32)
    mask = torch.tensor([label_mask(dict(r)) for r in records], dtype=torch.float32)
    f1 = f1_per_class(preds, targets, mask)
    target, _ = masked_targets(targets, mask)
    present = [i for i in range(len(classes)) if bool((target[:, i] == 1).any())]
    assessed = mask > 0.5
    tp = float(((preds == 1) & (targets == 1) & assessed).sum())
    fp = float(((preds == 1) & (targets == 0) & assessed).sum())
    fn = float(((preds == 0) & (targets == 1) & assessed).sum())
    macro = float(f1[present].mean()) if present else 0.0
    return {
        "f1_macro": round(macro, 6),
        "f1_micro": round(2 * tp / max(2 * tp + fp + fn, 1.0), 6),
        "per_class_f1": {classes[i]: round(float(f1[i]), 6) for i in present},
        "primary": metric,
        "value": round(macro if metric == "f1_macro" else 2 * tp / max(2 * tp + fp + fn, 1.0), 6),
        "n_records": len(records),
        "flagged": int(preds.sum()),
    }


def score_behavior_package(
    package: Path, histories: Sequence[Mapping[str, Any]], metric: str
) -> dict[str, Any]:
    """History-class F1 of a behavior model package on ``histories``, from the model's own decision
    (``BehaviorModel.decide``: its tuned ``history_threshold`` on 1 - p(normal), then the likeliest anomaly
    type): ``f1_macro`` over the classes present in ``histories``, ``f1_micro`` (= accuracy for one label a
    history), per-class F1 of the present classes. One history per forward pass, as the scanner scores."""
    import torch

    from training_pipeline.deploy.package import open_package
    from training_pipeline.metrics.multiclass import evaluate_multiclass
    from training_pipeline.scan.models import load_package_models

    pkg = open_package(package)
    views, _ = load_package_models(pkg)
    view = next((v for v in views if v.spec.view == "behavior"), None)
    if view is None or pkg.kind != "model":
        raise DataError(f"{package}: not a behavior model package (model {pkg.meta.get('model')!r})")
    module, featurizer = view.module, view.featurizer
    names = list(module.class_names)
    unknown = sorted({str(h["label"]) for h in histories} - set(names))
    if unknown:
        raise DataError(f"{package}: the frozen set has history classes {unknown} the model does not know")
    preds = []
    with torch.no_grad():
        for h in histories:
            logits, _ = module(featurizer.batch([featurizer.encode(h)]))
            preds.append(int(module.decide(torch.softmax(logits.float(), 1))[0]))
    pred = torch.tensor(preds, dtype=torch.long)
    target = torch.tensor([names.index(str(h["label"])) for h in histories], dtype=torch.long)
    values = evaluate_multiclass("eval", pred, target, names)
    macro, micro = values["eval/f1_macro"], values["eval/accuracy"]
    normal = names.index("normal") if "normal" in names else -1
    return {
        "f1_macro": round(macro, 6),
        "f1_micro": round(micro, 6),
        "per_class_f1": {c: round(values[f"eval/f1/{c}"], 6) for c in names if f"eval/f1/{c}" in values},
        "primary": metric,
        "value": round(macro if metric == "f1_macro" else micro, 6),
        "n_records": len(histories),
        "flagged": int((pred != normal).sum()),  # histories decided anomalous
    }


def gate(
    champion: Mapping[str, Any] | None,
    challenger: Mapping[str, Any],
    metric: str,
    margin: float,
    tolerance: float,
) -> tuple[bool, str, dict[str, float]]:
    """(passed, reason, per-class F1 drops beyond ``tolerance``) of the champion/challenger comparison."""
    after = challenger["value"]
    if champion is None:
        return True, f"no champion yet: the challenger ({metric} {after:.4f}) becomes the first champion", {}
    before = champion["value"]
    delta = after - before
    drops = {
        c: round(f1 - challenger["per_class_f1"].get(c, 0.0), 6)
        for c, f1 in champion["per_class_f1"].items()
        if f1 - challenger["per_class_f1"].get(c, 0.0) > tolerance + EPS
    }
    parts = []
    better = delta >= margin - EPS
    head = f"{metric} {before:.4f} -> {after:.4f} ({delta:+.4f}"
    parts.append(f"{head} {'>=' if better else '<'} margin {margin:g})")
    if drops:
        worst = ", ".join(f"{c} -{d:.4f}" for c, d in sorted(drops.items(), key=lambda kv: -kv[1]))
        parts.append(f"per-class F1 dropped beyond tolerance {tolerance:g}: {worst}")
    else:
        parts.append(f"no class's F1 dropped more than {tolerance:g}")
    return better and not drops, "; ".join(parts), drops


# -- training the challenger ------------------------------------------------------------------------------
def _read_status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "status.json").read_text()).get("state")
    except (OSError, ValueError, AttributeError):
        return None


def train_single(overrides: Sequence[str], run_dir: Path) -> tuple[Path, str]:
    """A ``src/train.py`` run in ``run_dir/train`` (reused when completed; an interrupted one continues from
    its last checkpoint); returns (its dir, trained | reused | resumed)."""
    from training_pipeline.tasks import train

    train_dir = run_dir / "train"
    if _read_status(train_dir) == "completed" and (train_dir / "metrics.json").is_file():
        return train_dir, "reused"
    last = train_dir / "checkpoints" / "last.ckpt"
    resume = last.is_file()
    extra = [f"ckpt_path={override_value(str(last))}"] if resume else []
    if not resume and train_dir.exists():
        shutil.rmtree(train_dir)
    cfg = compose_task("train.yaml", [*overrides, *extra], train_dir, log_dir=run_dir / "logs")
    set_status(train_dir, "running")
    try:
        train(cfg)
    except BaseException as exc:
        set_status(train_dir, "failed", f"{type(exc).__name__}: {one_line(exc)}")
        raise
    set_status(train_dir, "completed")
    return train_dir, "resumed" if resume else "trained"


def package_challenger(run_dir: Path, trained: Path, models: str) -> Any:
    """The challenger's package (``run_dir/packages``), reused from ``state.json`` when it is still intact."""
    from training_pipeline.deploy.package import PackageError, package_run, verify_package

    state_file = run_dir / "state.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    if state.get("package") and state.get("trained_from") == str(trained):
        try:
            return verify_package(state["package"])
        except PackageError:
            log.warning("The challenger package %s changed: packaging again", state["package"])
    packages = package_run(trained, run_dir / "packages", archive=False)
    pkg = packages[-1]  # a train-all run: the fused pipeline comes last
    write_json(state_file, {"package": str(pkg.path), "package_id": pkg.id, "trained_from": str(trained)})
    return pkg


# -- the whole retrain ------------------------------------------------------------------------------------
def _print_table(decision: Mapping[str, Any]) -> None:
    champ, chal = decision.get("champion") or {}, decision["challenger"]
    metric = decision["primary_metric"]
    eval_set = decision["eval_set"]
    lines = [
        f"retrain {decision['id']} ({decision['models']} -> {decision['registered_model']}): frozen eval set "
        f"{Path(eval_set['path']).name} sha256 {eval_set['sha256'][:12]} "
        f"({eval_set['n_used']} {eval_set.get('unit', 'contracts')})",
        f"{'metric':<34}{'champion':>10}{'challenger':>12}",
    ]

    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, int | float) else "-"

    champ_scores = champ.get("scores") or {}
    lines.append(f"{metric:<34}{cell(champ_scores.get('value')):>10}{cell(chal['scores']['value']):>12}")
    classes = sorted(set(chal["scores"]["per_class_f1"]) | set(champ_scores.get("per_class_f1") or {}))
    for c in classes:
        lines.append(
            f"{'f1/' + c:<34}{cell((champ_scores.get('per_class_f1') or {}).get(c)):>10}"
            f"{cell(chal['scores']['per_class_f1'].get(c)):>12}"
        )
    lines.append(f"decision: {decision['decision']} ({decision['action']})")
    lines.append(f"reason: {decision['reason']}")
    print("\n".join(lines), flush=True)


def _notify(decision: Mapping[str, Any]) -> dict[str, Any]:
    """A log line, and a POST to the alerts webhook (``conf/monitoring/alerts.yaml`` delivery.webhook) when
    one is configured; a failed delivery never undoes the decision."""
    import os

    from training_pipeline.monitoring import alerts

    head = f"retrain {decision['id']} {decision['registered_model']}"
    text = f"{head}: {decision['decision']} - {decision['reason']}"
    log.warning("retrain notification: %s", text)
    print(f"notify: {text}", flush=True)
    hook = alerts.load_config().delivery.webhook
    if not hook.url:
        return {"sent": False, "why": "no webhook configured (alerts delivery.webhook.url): logged only"}
    token = os.environ.get(hook.token_env) if hook.token_env else None
    body = {
        "source": hook.source,
        "kind": "retrain",
        "text": text,
        **{
            k: decision.get(k) for k in ("id", "registered_model", "decision", "reason", "registered_version")
        },
    }
    result = alerts.post_webhook(
        hook.url,
        body,
        timeout_s=hook.timeout_s,
        retries=hook.retries,
        backoff_s=hook.backoff_s,
        headers={"Authorization": f"Bearer {token}"} if token else None,
    )
    if not result.ok:
        log.error("retrain webhook failed after %d attempts: %s", result.attempts, result.error)
    return {"sent": result.ok, "attempts": result.attempts, "status": result.status, "error": result.error}


def _register(decision: dict[str, Any], package: Any, champion_info: Mapping[str, Any] | None) -> None:
    """Register the challenger, promote it or set the challenger alias, tag its version."""
    from training_pipeline.deploy import registry

    name = decision["registered_model"]
    version, created = registry.register_package(package, reason=f"retrain {decision['id']}")
    decision["registered_version"] = version
    decision["registered_new"] = created
    if champion_info is not None and int(champion_info["version"]) == version:
        decision.update(
            decision="refused",
            action="the challenger is the current champion's package: registry unchanged",
            reason=f"the challenger is the current champion (version {version}, same package)",
            alias=None,
        )
    elif decision["passed"]:
        registry.promote(name, version, "champion", reason=f"retrain {decision['id']}: {decision['reason']}")
        decision.update(decision="promoted", alias="champion", action=f"version {version} is the champion")
    else:
        registry.promote(name, version, "challenger", reason=f"retrain {decision['id']}: refused")
        kept = f"version {champion_info['version']}" if champion_info else "none"
        decision.update(
            decision="refused",
            alias="challenger",
            action=f"version {version} registered as challenger; champion unchanged ({kept})",
        )
    champ = (decision.get("champion") or {}).get("scores") or {}
    tags = {
        "decision": decision["decision"],
        "reason": decision["reason"][:4900],
        "id": decision["id"],
        "primary_metric": decision["primary_metric"],
        "before": "" if not champ else f"{champ['value']:.6g}",
        "after": f"{decision['challenger']['scores']['value']:.6g}",
        "champion_version": "" if champion_info is None else str(champion_info["version"]),
        "eval_set_sha256": decision["eval_set"]["sha256"],
        "data_version": decision.get("data_version") or "",
    }
    c = registry.client()
    for key, value in tags.items():
        c.set_model_version_tag(name, str(version), TAG_PREFIX + key, value)


def retrain(request: Request) -> dict[str, Any] | None:
    """Run one retrain (see the module docstring); None when the trigger says there is nothing to do."""
    if request.trigger not in TRIGGERS:
        raise UserError(f"--trigger {request.trigger}: expected one of {', '.join(TRIGGERS)}")
    cfg = load_config(margin=request.margin, tolerance=request.tolerance)
    root = project_root()
    out_root = Path(request.output_dir or cfg.output_dir or root / "outputs" / "retrain").resolve()
    monitoring_dir = Path(request.monitoring_dir or cfg.monitoring_dir or root / "outputs" / "monitoring")
    trigger_note = f"trigger {request.trigger}"
    if request.trigger == "drift":
        alerted, why = drift_alerted(monitoring_dir)
        if not alerted:
            print(f"retrain: nothing to do: {why} (--trigger drift)", flush=True)
            return None
        trigger_note = why
    models = request.models or cfg.default_models
    if models not in MODELS:
        raise UserError(f"--models {models}: expected one of {', '.join(MODELS)}")
    behavior = models == "behavior_model"
    new_data = check_new_data(request.new_data, models)
    block = cfg.model_block(models)
    train_overrides = [
        f"experiment={block['experiment']}",
        *cfg.common_overrides,
        *block["overrides"],
        *request.config_overrides,
    ]
    inputs: list[str] = []
    if behavior:  # explorer CSVs: their contents name the retrain as --new-data's do
        import tempfile

        with tempfile.TemporaryDirectory(prefix="retrain-compose-") as tmp:
            inputs = behavior_inputs(compose_task("train.yaml", train_overrides, Path(tmp) / "train").data)
    rid = retrain_id(models, request.data_version, new_data, request.config_overrides, inputs)
    run_dir = out_root / rid
    run_dir.mkdir(parents=True, exist_ok=True)
    eval_dir = Path(cfg.eval_set_dir).resolve() if cfg.eval_set_dir else out_root / "eval_sets"
    name = registry_name(models)
    print(f"retrain {rid}: {models} -> {name} ({trigger_note}); run dir {run_dir}", flush=True)

    # the data: the base data, the new records merged in as the `file` source
    if models in PIPELINE_MODELS:
        pipe_cfg = compose_task(
            "pipeline.yaml",
            [f"name={rid}", *block["overrides"], *request.config_overrides],
            run_dir / "pipeline",
            log_dir=run_dir / "logs",
        )
        # a train-all run's data for the bytecode view, its outer test fold held out
        data_overrides = [*stage_overrides(pipe_cfg, "bytecode_detector"), f"data.fold={pipe_cfg.test_fold}"]
        base_cfg = compose_task("train.yaml", data_overrides, run_dir / "data", log_dir=run_dir / "logs")
    else:
        base_cfg = compose_task("train.yaml", train_overrides, run_dir / "train", log_dir=run_dir / "logs")
    base = history_splits(base_cfg.data) if behavior else split_records(base_cfg.data)
    new_records, merge_stats = ([], {}) if behavior else merge_new_data(new_data, base[0])
    extra: list[str] = []
    if new_records:
        from training_pipeline.data.records import write_records

        merged_path = write_records(new_records, run_dir / "new_data.jsonl", overwrite=True)
        extra = with_new_data(base_cfg.data, merged_path)
    elif new_data:
        log.warning("--new-data: every record repeats the existing data; the challenger trains on it alone")
    if extra:
        chal_data_cfg = compose_task(
            "train.yaml",
            [*(data_overrides if models in PIPELINE_MODELS else train_overrides), *extra],
            run_dir / "data",
            log_dir=run_dir / "logs",
        ).data
        chal = split_records(chal_data_cfg)
    else:
        chal = base
    data_version = chal[2]
    if request.data_version != "latest" and not _same_version(request.data_version, data_version):
        raise UserError(
            f"--data-version {request.data_version}: the data (with --new-data) is version {data_version}; "
            "use --data-version latest to train on it"
        )
    added = _added_report(base, chal, merge_stats, "contract_id" if behavior else "id")

    # the champion and the frozen evaluation set
    champion = find_champion(name)
    champion_meta = None
    if champion is not None:
        from training_pipeline.deploy.package import open_package

        champion_meta = open_package(champion[0]).meta
    frozen = frozen_eval_set(eval_dir, champion_meta, base, histories=behavior)
    key = "contract_id" if behavior else "id"
    train_ids = {r[key] for r, s in zip(chal[0], chal[1], strict=True) if s == "train"}
    eval_records = [r for r in frozen["records"] if r[key] not in train_ids]
    leaked = len(frozen["records"]) - len(eval_records)
    if not eval_records:
        raise DataError(
            f"{frozen['path']}: every record of the frozen set is in the challenger's training split"
        )

    # the challenger
    if models in PIPELINE_MODELS:
        from training_pipeline.pipeline.runner import run_pipeline

        if extra:
            with open_dict(pipe_cfg):
                for view in CONTRACT_MODELS:
                    if view in pipe_cfg.models and pipe_cfg.models[view].get("enabled", True):
                        pipe_cfg.models[view].overrides = [
                            *pipe_cfg.models[view].get("overrides", []),
                            *extra,
                        ]
        summary = run_pipeline(pipe_cfg)
        trained, how = run_dir / "pipeline", f"train-all: {len(summary['trained'])} stages trained, " \
            f"{len(summary['skipped'])} reused"  # fmt: skip
    else:
        trained, how = train_single([*train_overrides, *extra], run_dir)
    print(f"challenger: {how} ({trained})", flush=True)
    package = package_challenger(run_dir, trained, models)

    # score both on the frozen set, decide, record
    scorer = score_behavior_package if behavior else score_package
    chal_scores = scorer(package.path, eval_records, cfg.primary_metric)
    champ_scores = scorer(champion[0], eval_records, cfg.primary_metric) if champion else None
    passed, reason, drops = gate(champ_scores, chal_scores, cfg.primary_metric, cfg.margin, cfg.tolerance)
    decision: dict[str, Any] = {
        "id": rid,
        "models": models,
        "registered_model": name,
        "trigger": request.trigger,
        "trigger_note": trigger_note,
        "primary_metric": cfg.primary_metric,
        "margin": cfg.margin,
        "tolerance": cfg.tolerance,
        "passed": passed,
        "decision": "would promote" if passed else "refused",
        "action": "evaluated only (no --increment-version): registry unchanged",
        "reason": reason,
        "regressions": drops,
        "alias": None,
        "registered_version": None,
        "data_version": data_version,
        "data_version_requested": request.data_version,
        "added": added,
        "eval_set": {
            "path": frozen["path"],
            "sha256": frozen["sha256"],
            "data_version": frozen["data_version"],
            "frozen_now": frozen["frozen_now"],
            "origin": frozen["origin"],
            "n_records": len(frozen["records"]),
            "n_used": len(eval_records),
            "unit": "histories" if behavior else "contracts",
            "left_out_in_challenger_train": leaked,
        },
        "champion": None
        if champion is None
        else {
            "version": champion[1]["version"],
            "package_id": champion[1]["package_id"],
            "data_version": (champion_meta or {}).get("data_version"),
            "scores": champ_scores,
        },
        "challenger": {
            "package": str(package.path),
            "package_id": package.id,
            "trained_from": str(trained),
            "training": how,
            "scores": chal_scores,
        },
        "config_overrides": list(request.config_overrides),
    }
    if request.increment_version:
        _register(decision, package, None if champion is None else champion[1])
    from training_pipeline.deploy import audit

    audit.append(
        "retrain",
        model=name,
        version=decision["registered_version"],
        package_id=package.id,
        reason=decision["reason"],
        decision=decision["decision"],
        outcome=decision["action"],
        retrain_id=rid,
        trigger=request.trigger,
        primary_metric=cfg.primary_metric,
        before=None if champ_scores is None else champ_scores["value"],
        after=chal_scores["value"],
        champion_version=None if champion is None else champion[1]["version"],
        per_class_f1={
            "champion": None if champ_scores is None else champ_scores["per_class_f1"],
            "challenger": chal_scores["per_class_f1"],
        },  # fmt: skip
        eval_set_sha256=frozen["sha256"],
        data_version=data_version,
        added=added["per_split"],
    )
    if request.notify:
        decision["notification"] = _notify(decision)
    write_json(run_dir / "decision.json", decision)
    _print_table(decision)
    if added.get("read"):
        print(f"new data: {added_line(added)}", flush=True)
    print(f"decision: {run_dir / 'decision.json'}", flush=True)
    return decision


def added_line(added: dict[str, Any]) -> str:
    """What ``--new-data`` added, in one line: records read, kept after dedupe, and per split."""
    splits = ", ".join(f"{s} {n}" for s, n in sorted((added.get("per_split") or {}).items()))
    ids, clones = added.get("duplicate_ids", 0), added.get("duplicate_contracts", 0)
    dropped = f"{ids} repeated ids, {clones} clones dropped"
    return (
        f"{added.get('read', 0)} records read, {added.get('kept', 0)} kept ({dropped}); {splits}; "
        f"data version {str(added.get('data_version', ''))[:19]}"
    )


def _same_version(asked: str, actual: str | None) -> bool:
    if not actual:
        return False
    a, b = asked.removeprefix("sha256:"), actual.removeprefix("sha256:")
    return len(a) >= 8 and b.startswith(a)


def _added_report(
    base: tuple[list[dict[str, Any]], list[str], str | None],
    chal: tuple[list[dict[str, Any]], list[str], str | None],
    merge_stats: Mapping[str, Any],
    key: str = "id",
) -> dict[str, Any]:
    """What the new data added: its records per split after dedupe (and the base records a new clone moved
    to another split); ``key`` names a record (``contract_id`` for histories)."""
    per_split = {"train": 0, "val": 0, "test": 0}
    base_split = {r[key]: s for r, s in zip(base[0], base[1], strict=True)}
    moved = 0
    for r, s in zip(chal[0], chal[1], strict=True):
        if r.get("origin") == "file" and base_split.get(r[key]) is None:
            per_split[s] = per_split.get(s, 0) + 1
        elif r[key] in base_split and base_split[r[key]] != s:
            moved += 1
    return {
        **dict(merge_stats),
        "per_split": per_split,
        "total": sum(per_split.values()),
        "base_records_moved": moved,
        "base_version": base[2],
        "data_version": chal[2],
    }


# -- the command line -------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        print(f"error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(2)


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="retrain",
        description="Train a challenger, compare it with the registry's champion on a frozen evaluation set, "
        "promote it only when it is better (conf/monitoring/retrain.yaml).",
    )
    p.add_argument(
        "--trigger",
        choices=TRIGGERS,
        default="manual",
        help="drift: only when the latest drift report alerted",
    )
    p.add_argument("--models", choices=MODELS, default=None, help="default: the config's default_models")
    p.add_argument(
        "--new-data", nargs="+", default=[], metavar="PATH", help="contract records (.jsonl/.parquet)"
    )
    p.add_argument("--data-version", default="latest", help="latest, or the data version (hash) to insist on")
    p.add_argument("--notify", action="store_true", help="log the decision and send it to the alerts webhook")
    p.add_argument(
        "--increment-version", action="store_true", help="register the challenger (else evaluate only)"
    )
    p.add_argument("--margin", type=float, default=None, help="override the config's margin")
    p.add_argument("--tolerance", type=float, default=None, help="override the config's per-class tolerance")
    p.add_argument("--config-overrides", nargs="+", default=[], metavar="KEY=VALUE", help="Hydra overrides")
    p.add_argument("--output-dir", default=None, help="retrain run dirs (default outputs/retrain)")
    p.add_argument("--monitoring-dir", default=None, help="drift reports (default outputs/monitoring)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``scripts/retrain.py``: 0 on a decision (promoted, refused or evaluated) or nothing to do; 2 and one
    ``error:`` line on bad input."""
    from training_pipeline.utils.run import quiet_known_warnings, user_errors

    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quiet_known_warnings()
    request = Request(
        trigger=args.trigger,
        models=args.models,
        new_data=list(args.new_data),
        data_version=args.data_version,
        notify=args.notify,
        increment_version=args.increment_version,
        margin=args.margin,
        tolerance=args.tolerance,
        config_overrides=list(args.config_overrides),
        output_dir=args.output_dir,
        monitoring_dir=args.monitoring_dir,
    )
    try:
        retrain(request)
    except user_errors() as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr, flush=True)
        return 2
    return 0
