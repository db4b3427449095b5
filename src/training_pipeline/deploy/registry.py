"""The model registry: packages as MLflow registered-model versions, ``champion``/``challenger`` aliases,
rollback, and loading a registered package back with its integrity checked.

A registered model is named after the package (``scathat-pipeline``, ``scathat-<model>``). ``register``
logs the package directory as the artifacts (``package/``) of a run in experiment ``scathat-registry``
and creates a version whose source is that folder, tagged with the package id, data version, git commit
and headline metrics; the same package id registers once. No MLmodel flavour is needed: a version's source
is any artifact URI. ``promote(..., "champion")`` remembers the champion it replaces in the registered
model's ``champion_history`` tag (a JSON list of versions), which ``rollback`` pops. ``resolve`` turns a
reference (``models:/scathat-pipeline@champion``, ``models:/<name>/<version>``, a bare version of
``scathat-pipeline``) into a verified local package whose id must equal the version's ``package_id`` tag.
Every register, promote and rollback appends to the audit log (``audit.py``).

The store is ``tracking.tracking_uri()`` (``MLFLOW_TRACKING_URI``, else ``outputs/mlflow/mlflow.db``).
MLflow and ``package.py`` (which loads torch) are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from filelock import FileLock

from training_pipeline.config import project_root
from training_pipeline.deploy import audit
from training_pipeline.errors import UserError
from training_pipeline.utils.tracking import ensure_experiment, ensure_store, tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from training_pipeline.deploy.package import Package

EXPERIMENT = "scathat-registry"
ARTIFACT_PATH = "package"
DEFAULT_MODEL = "scathat-pipeline"  # package.PIPELINE_NAME (not imported here: package.py loads torch)
ALIASES = ("champion", "challenger")
HISTORY_TAG = "champion_history"
HISTORY_KEEP = 50
PACKAGE_ID_TAG = "package_id"
METRIC_TAG_PREFIX = "metric."
MAX_METRIC_TAGS = 12
REF_FORMS = "models:/<name>@<alias>, models:/<name>/<version> or a version number of scathat-pipeline"


# -- the store -----------------------------------------------------------------------------------------------
def quiet_mlflow() -> None:
    """Keep MLflow's store setup, alembic migrations and download progress bars off a CLI's output."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module=r"mlflow(\.|$)")


def client() -> MlflowClient:
    """An ``MlflowClient`` on the project's store (``MLFLOW_TRACKING_URI``, else ``outputs/mlflow``)."""
    from mlflow import MlflowClient

    quiet_mlflow()  # after the import: importing mlflow sets its logger's level
    return MlflowClient(ensure_store(tracking_uri()))


@contextmanager
def _locked() -> Iterator[None]:
    """One registry change at a time on this machine (register's dedup, the champion history)."""
    lock = audit.log_path().parent / ".registry.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock), timeout=audit.LOCK_TIMEOUT_S):
        yield


def _not_found(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


# -- register ------------------------------------------------------------------------------------------------
def headline_metrics(meta: Mapping[str, Any]) -> dict[str, float]:
    """A few numbers that say how good a package is, flat: a model's optimized metric and test metrics; a
    pipeline's row of the comparison for the method its guard chose on all views."""
    metrics = meta.get("metrics") or {}
    out: dict[str, float] = {}

    def put(key: str, value: Any) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool) and len(out) < MAX_METRIC_TAGS:
            out[key] = float(value)

    if meta.get("kind") == "pipeline":
        rows = [r for r in metrics.get("comparison") or [] if isinstance(r, Mapping)]
        guard = metrics.get("guard") or {}
        chosen = guard.get("chosen", "aggregator") if isinstance(guard, Mapping) else "aggregator"
        method = "aggregator" if chosen == "aggregator" else f"guarded ({chosen})"
        all_views = [r for r in rows if str(r.get("views", "")).startswith("all views")] or rows
        row = next((r for r in all_views if r.get("method") == method), all_views[0] if all_views else {})
        for key in ("auroc", "auprc", "f1", "brier", "ece"):
            put(key, row.get(key))
    else:
        if metrics.get("optimized_metric"):
            put(str(metrics["optimized_metric"]), metrics.get("value"))
        for key, value in sorted((metrics.get("test") or {}).items()):
            put(str(key), value)
    return out


def register(package: Package | str | Path, *, reason: str | None = None, user: str | None = None) -> int:
    """The registry version of ``package`` (a ``Package``, a package directory or ``.tar.gz``): a new one,
    or the existing version when this package id is already registered under its name."""
    return register_package(package, reason=reason, user=user)[0]


def register_package(
    package: Package | str | Path, *, reason: str | None = None, user: str | None = None
) -> tuple[int, bool]:
    """(version, created): ``register`` that also says whether the version is new."""
    from training_pipeline.deploy.package import Package, open_package

    pkg = package if isinstance(package, Package) else open_package(package)
    pkg = _reverified(pkg)
    c = client()
    with _locked():
        existing = _version_with_id(c, pkg.name, pkg.id)
        if existing is not None:
            return int(existing.version), False
        meta = pkg.meta
        metrics = headline_metrics(meta)
        common = {
            PACKAGE_ID_TAG: pkg.id,
            "kind": pkg.kind,
            "data_version": pkg.data_version or "",
            "git_commit": meta.get("git_commit") or "",
            "git_dirty": "" if meta.get("git_dirty") is None else str(meta["git_dirty"]).lower(),
            "created_at": meta.get("created_at") or "",
        }
        exp_id = ensure_experiment(EXPERIMENT, c.tracking_uri)
        run = c.create_run(
            exp_id,
            tags={"mlflow.runName": f"{pkg.name} {pkg.id[:12]}", "package_name": pkg.name, **common},
        )
        run_id = run.info.run_id
        try:
            c.log_artifacts(run_id, str(pkg.path), ARTIFACT_PATH)
            _log_metrics(c, run_id, metrics)
        except BaseException:
            c.set_terminated(run_id, "FAILED")
            raise
        c.set_terminated(run_id, "FINISHED")
        try:
            c.create_registered_model(pkg.name, description=f"scathat {pkg.kind} packages")
        except Exception as exc:  # noqa: BLE001 - MlflowException; exists already is fine
            if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                raise
        tags = common | {f"{METRIC_TAG_PREFIX}{k}": f"{v:.6g}" for k, v in metrics.items()}
        source = f"{run.info.artifact_uri.rstrip('/')}/{ARTIFACT_PATH}"
        mv = c.create_model_version(pkg.name, source, run_id, tags={k: v for k, v in tags.items() if v})
        version = int(mv.version)
        audit.append(
            "register",
            model=pkg.name,
            version=version,
            package_id=pkg.id,
            reason=reason,
            user=user,
            source=source,
        )
    return version, True


def _reverified(pkg: Package) -> Package:
    """The package checked again just before it is uploaded (it may have changed since it was opened)."""
    from training_pipeline.deploy.package import verify_package

    fresh = verify_package(pkg.path)
    if fresh.id != pkg.id:
        raise UserError(
            f"{pkg.path}: package changed since it was opened (id {pkg.id[:12]} → {fresh.id[:12]})"
        )
    return fresh


def _log_metrics(c: MlflowClient, run_id: str, metrics: Mapping[str, float]) -> None:
    if not metrics:
        return
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    safe = {re.sub(r"[^\w\-./ ]", "_", k): v for k, v in metrics.items()}
    c.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in safe.items()])


def _version_with_id(c: MlflowClient, name: str, package_id: str) -> Any:
    found = c.search_model_versions(f"name = '{_quote(name)}' and tags.{PACKAGE_ID_TAG} = '{package_id}'")
    return min(found, key=lambda mv: int(mv.version)) if found else None


def _quote(text: str) -> str:
    return text.replace("'", "''")


# -- reading the registry ------------------------------------------------------------------------------------
def _registered(c: MlflowClient, name: str) -> Any:
    try:
        return c.get_registered_model(name)
    except Exception as exc:  # noqa: BLE001 - MlflowException
        if not _not_found(exc):
            raise
    names = [m.name for m in c.search_registered_models()]
    have = ", ".join(sorted(names)) or "none yet"
    raise UserError(f"{name}: no such registered model (registered: {have})") from None


def _version(c: MlflowClient, name: str, version: int | str) -> Any:
    _registered(c, name)  # an unknown model is named as such, not as an unknown version
    if not str(version).isdigit():
        raise UserError(f"{name}: version {version!r} is not a number")
    try:
        return c.get_model_version(name, str(int(version)))
    except Exception as exc:  # noqa: BLE001 - MlflowException
        if not _not_found(exc):
            raise
    have = ", ".join(str(v) for v in _version_numbers(c, name)) or "none"
    raise UserError(f"{name}: no version {version} (versions: {have})") from None


def _by_alias(c: MlflowClient, name: str, alias: str) -> Any:
    model = _registered(c, name)
    if alias not in model.aliases:
        have = ", ".join(f"{a} → {v}" for a, v in sorted(model.aliases.items())) or "none set"
        raise UserError(f"{name}: no alias {alias!r} (aliases: {have})")
    return c.get_model_version(name, str(model.aliases[alias]))


def _version_numbers(c: MlflowClient, name: str) -> list[int]:
    return sorted(int(mv.version) for mv in c.search_model_versions(f"name = '{_quote(name)}'"))


def _info(mv: Any, aliases: Mapping[str, Any]) -> dict[str, Any]:
    tags = dict(mv.tags or {})
    return {
        "name": mv.name,
        "version": int(mv.version),
        "aliases": sorted(a for a, v in aliases.items() if str(v) == str(mv.version)),
        "package_id": tags.get(PACKAGE_ID_TAG),
        "kind": tags.get("kind"),
        "data_version": tags.get("data_version"),
        "git_commit": tags.get("git_commit"),
        "metrics": {
            k[len(METRIC_TAG_PREFIX) :]: float(v) for k, v in tags.items() if k.startswith(METRIC_TAG_PREFIX)
        },
        "registered_at": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(
            timespec="seconds"
        ),
        "run_id": mv.run_id,
        "source": mv.source,
        "uri": f"models:/{mv.name}/{mv.version}",
    }


def list_versions(name: str | None = None) -> list[dict[str, Any]]:
    """Every version (of ``name``, else of every registered model), oldest first, with its aliases."""
    c = client()
    models = [_registered(c, name)] if name else list(c.search_registered_models())
    out = []
    for model in sorted(models, key=lambda m: m.name):
        versions = c.search_model_versions(f"name = '{_quote(model.name)}'")
        out += [_info(mv, model.aliases) for mv in sorted(versions, key=lambda mv: int(mv.version))]
    return out


def show(name: str, version: int | str | None = None, alias: str | None = None) -> dict[str, Any]:
    """One version (``version``, else ``alias``, else the champion, else the latest) with all its tags and the
    registered model's aliases and champion history."""
    c = client()
    model = _registered(c, name)
    if version is not None:
        mv = _version(c, name, version)
    elif alias is not None:
        mv = _by_alias(c, name, alias)
    elif "champion" in model.aliases:
        mv = _by_alias(c, name, "champion")
    else:
        numbers = _version_numbers(c, name)
        if not numbers:
            raise UserError(f"{name}: no versions registered")
        mv = c.get_model_version(name, str(numbers[-1]))
    info = _info(mv, model.aliases)
    info["tags"] = dict(mv.tags or {})
    info["model_aliases"] = {a: int(v) for a, v in model.aliases.items()}
    info["champion_history"] = _history(model)
    return info


# -- aliases -------------------------------------------------------------------------------------------------
def _history(model: Any) -> list[int]:
    try:
        value = json.loads((model.tags or {}).get(HISTORY_TAG, "[]"))
        return [int(v) for v in value]
    except (ValueError, TypeError):
        return []


def promote(
    name: str,
    version: int | str,
    alias: str = "champion",
    reason: str | None = None,
    *,
    user: str | None = None,
) -> dict[str, Any]:
    """Point ``alias`` (champion or challenger) at ``version``. A new champion pushes the one it replaces
    onto the champion history (for ``rollback``) and takes the challenger alias off itself."""
    if alias not in ALIASES:
        raise UserError(f"alias {alias!r}: use one of {', '.join(ALIASES)}")
    c = client()
    with _locked():
        mv = _version(c, name, version)
        model = _registered(c, name)
        previous = model.aliases.get(alias)
        details: dict[str, Any] = {"alias": alias, "previous": None if previous is None else int(previous)}
        c.set_registered_model_alias(name, alias, mv.version)
        if alias == "champion":
            if previous is not None and str(previous) != str(mv.version):
                history = [*_history(model), int(previous)][-HISTORY_KEEP:]
                c.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
            if str(model.aliases.get("challenger")) == str(mv.version):
                c.delete_registered_model_alias(name, "challenger")
                details["challenger_cleared"] = True
        audit.append(
            "promote",
            model=name,
            version=int(mv.version),
            package_id=(mv.tags or {}).get(PACKAGE_ID_TAG),
            reason=reason,
            user=user,
            **details,
        )
    return _info(c.get_model_version(name, mv.version), c.get_registered_model(name).aliases)


def rollback(
    name: str = DEFAULT_MODEL, reason: str | None = None, *, user: str | None = None
) -> dict[str, Any]:
    """Point ``champion`` back at the champion before it (from the champion history, skipping versions
    deleted since); a UserError when there is none."""
    c = client()
    with _locked():
        model = _registered(c, name)
        current = model.aliases.get("champion")
        history = _history(model)
        existing = set(_version_numbers(c, name))
        while history and (history[-1] not in existing or str(history[-1]) == str(current)):
            history.pop()
        if not history:
            now = f"champion is version {current}" if current is not None else "no champion is set"
            raise UserError(
                f"{name}: no previous champion to roll back to ({now}); promote a version instead"
            )
        target = history.pop()
        c.set_registered_model_alias(name, "champion", str(target))
        c.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
        mv = c.get_model_version(name, str(target))
        audit.append(
            "rollback",
            model=name,
            version=target,
            package_id=(mv.tags or {}).get(PACKAGE_ID_TAG),
            reason=reason,
            user=user,
            alias="champion",
            previous=None if current is None else int(current),
        )
    return _info(mv, c.get_registered_model(name).aliases)


# -- resolve -------------------------------------------------------------------------------------------------
def parse_ref(ref: str) -> tuple[str, str | None, int | None]:
    """(name, alias, version) of ``models:/<name>@<alias>``, ``models:/<name>/<version>`` or ``<version>``."""
    ref = str(ref).strip()
    if ref.isdigit():
        return DEFAULT_MODEL, None, int(ref)
    match = re.fullmatch(r"models:/([^/@]+)(?:@([\w\-]+)|/(\d+))", ref)
    if not match:
        raise UserError(f"{ref!r}: not a model reference (use {REF_FORMS})")
    name, alias, version = match.groups()
    return name, alias, int(version) if version else None


def cache_root() -> Path:
    """Where packages fetched from a remote artifact store are kept: ``outputs/packages/.registry``."""
    return project_root() / "outputs" / "packages" / ".registry"


def _local_path(source: str) -> Path | None:
    parsed = urlparse(source)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(source)
    return None


def resolve(ref: str, cache_dir: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """(local package path, info with name, version, alias, package_id, uri) of a registered package, its
    files verified against its manifest and its id against the version's ``package_id`` tag."""
    from training_pipeline.deploy.package import PackageError, verify_package

    name, alias, version = parse_ref(ref)
    c = client()
    mv = _by_alias(c, name, alias) if alias else _version(c, name, version)
    expected = (mv.tags or {}).get(PACKAGE_ID_TAG)
    label = f"{name} version {mv.version}"
    if not expected:
        raise UserError(f"{label}: has no {PACKAGE_ID_TAG} tag (not registered by this registry)")
    local = _local_path(mv.source)
    if local is None:
        local = _download(mv.source, (cache_dir or cache_root()) / expected, c.tracking_uri)
    elif not local.is_dir():
        raise UserError(f"{label}: its stored package {local} is missing")
    try:
        pkg = verify_package(local)
    except PackageError as exc:
        raise UserError(f"{label}: the stored package was altered ({exc})") from None
    if pkg.id != expected:
        raise UserError(
            f"{label}: the stored package was altered "
            f"(its id {pkg.id[:12]} is not the registered {expected[:12]})"
        )
    model = c.get_registered_model(name)
    info = {
        "name": name,
        "version": int(mv.version),
        "alias": alias,
        "aliases": sorted(a for a, v in model.aliases.items() if str(v) == str(mv.version)),
        "package_id": pkg.id,
        "uri": f"models:/{name}/{mv.version}",
        "ref": ref,
        "path": str(pkg.path),
    }
    return pkg.path, info


def _download(source: str, target: Path, uri: str) -> Path:
    """``source``'s files in ``target`` (kept between calls; fetched again when a verify fails later)."""
    from training_pipeline.deploy.package import PackageError, verify_package

    if target.is_dir():
        try:
            verify_package(target)
            return target
        except PackageError:
            shutil.rmtree(target)
    import mlflow.artifacts

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
    try:
        fetched = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(tmp), tracking_uri=uri)
        )
        fetched.replace(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
