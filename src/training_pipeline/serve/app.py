"""The scan service's FastAPI app: ``POST /v1/scan`` (JSON or multipart), health, readiness, version, metrics
and ``POST /v1/admin/reload``. Models come from an injected loader (default ``Scanner.from_model``); a scan
runs in a worker thread under ``limits.timeout_s``; every bad request is a 4xx ``{"error": "<one line>"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import math
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from omegaconf import DictConfig

from training_pipeline import __version__
from training_pipeline.deploy import audit
from training_pipeline.errors import ConfigError, UserError
from training_pipeline.monitoring.features import log_features
from training_pipeline.scan.inputs import ScanInput, read_texts
from training_pipeline.serve.auth import ApiKey, KeyStore, presented_key
from training_pipeline.serve.config import ServeConfig, as_settings
from training_pipeline.serve.inference_log import InferenceLog
from training_pipeline.serve.metrics import ServeMetrics
from training_pipeline.serve.routing import (
    CHALLENGER,
    CHAMPION,
    LoadedModels,
    ab_arm,
    input_hash,
    model_id,
    model_label,
)
from training_pipeline.utils.run import one_line

log = logging.getLogger(__name__)
Loader = Callable[[str], Any]
JSON_FIELDS = ("source", "bytecode", "transactions_csv", "address", "name", "solc")
FILE_FIELDS = {"source": "source", "bytecode": "bytecode", "transactions": "transactions_csv"}
VIEWS = ("source", "bytecode", "transactions_csv")
PROBE = ScanInput(name="readiness-probe", bytecode="0x6080604052348015600f57600080fd5b50600080fd00")


class ApiError(Exception):
    """A request the service refuses: HTTP status, error kind (the metrics label) and a one-line reason."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def default_loader(static_analysis: bool = False) -> Loader:
    """``Scanner.from_model(ref)`` (a model package or registry ref); a ``.ckpt`` path is one base-model
    checkpoint (``Scanner.from_checkpoint``), for trying a freshly trained model."""

    def load(ref: str) -> Any:
        from training_pipeline.scan.scanner import Scanner

        if ref.endswith(".ckpt"):
            return Scanner.from_checkpoint(ref, static_analysis)
        from_model = getattr(Scanner, "from_model", None)
        if from_model is not None:
            return from_model(ref, static_analysis=static_analysis)
        if Path(ref).is_dir():
            return Scanner.from_pipeline(ref, static_analysis)
        raise ConfigError(f"{ref}: model refs need Scanner.from_model (give a .ckpt or a train-all run dir)")

    return load


class ScanService:
    """The app's state: settings, loaded models (one object, swapped on reload), keys, log, metrics, pool."""

    def __init__(self, settings: ServeConfig, loader: Loader) -> None:
        self.settings, self.loader = settings, loader
        self.models: LoadedModels | None = None
        self.not_ready = "models not loaded yet"
        self.keys = KeyStore.from_config(settings.auth.keys_file, settings.auth.env_var)
        enabled = settings.auth.enabled
        if enabled and not len(self.keys):
            raise ConfigError(
                f"auth.enabled is true but no API keys (auth.keys_file or ${settings.auth.env_var})"
            )
        self.auth = bool(len(self.keys)) if enabled is None else enabled
        cfg = settings.inference_log
        self.log = InferenceLog(cfg.path, cfg.max_bytes, cfg.backups) if cfg.enabled else None
        self.metrics = ServeMetrics()
        self.pool = ThreadPoolExecutor(settings.limits.workers, thread_name_prefix="scan")
        self._reload_lock = threading.Lock()

    # -- models --
    def load(self) -> LoadedModels:
        """Load the configured refs (champion, and challenger when routing uses one), verify them, and swap
        them in as one object; on failure the models serving now stay (a UserError names the cause)."""
        s = self.settings
        with self._reload_lock:
            try:
                refs = {CHAMPION: str(s.champion)}
                if s.routing.mode != "off" and s.challenger:
                    refs[CHALLENGER] = str(s.challenger)
                loaded = {}
                for arm, ref in refs.items():
                    try:
                        loaded[arm] = self.loader(ref)
                    except UserError as exc:
                        raise UserError(f"{arm} {ref}: {one_line(exc)}") from None
                    if s.verify:
                        verify(loaded[arm], f"{arm} {ref}")
                new = LoadedModels(loaded[CHAMPION], loaded.get(CHALLENGER), refs)
            except Exception as exc:
                self.metrics.reloads.labels("failed").inc()
                if self.models is None:
                    self.not_ready = f"models not loaded: {one_line(exc)}"
                raise
            self.models = new  # one assignment: a request holds the pair it started with
            self.metrics.reloads.labels("ok").inc()
            self.metrics.set_models(new.describe())
            return new

    # -- auth --
    def authorize(self, request: Request, permission: str) -> ApiKey | None:
        """The caller's key when it may do ``permission``; 401 unknown/missing key, 403 wrong role."""
        if not self.auth:
            return None
        key = self.keys.identify(presented_key(request.headers))
        if key is None:
            raise ApiError(
                401, "unauthorized", "missing or unknown API key (Authorization: Bearer or X-API-Key)"
            )
        if not key.allows(permission):
            raise ApiError(403, "forbidden", f"key {key.name!r} (role {key.role}) may not {permission}")
        return key


def verify(scanner: Any, what: str) -> None:
    """A loaded scanner scans a probe contract to a finite risk in 0..1 (models reading no bytecode pass)."""
    if not getattr(scanner, "models", None):
        raise UserError(f"{what}: the loader returned no scanner")
    try:
        (report,) = scanner.scan([PROBE])
    except UserError as exc:
        if "no input has a view" in str(exc):
            return
        raise UserError(f"{what}: probe scan failed ({one_line(exc)})") from None
    risk = report.get("risk")
    if risk is not None and not (isinstance(risk, float | int) and math.isfinite(risk) and 0 <= risk <= 1):
        raise UserError(f"{what}: probe scan gave risk {risk!r}, expected 0..1")


# -- request reading -----------------------------------------------------------------------------------------
async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it passes ``limit`` bytes; cached for ``request.form()``."""
    declared = request.headers.get("content-length")
    too_big = f"request body over {limit} bytes (limits.max_body_bytes)"
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", too_big)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", too_big)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Starlette's form() then reads the cached body
    return body


async def read_fields(request: Request, body: bytes) -> dict[str, str | None]:
    """The request's fields from JSON or a multipart upload (files source, bytecode, transactions)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fields: dict[str, str | None] = dict.fromkeys(JSON_FIELDS)
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.form(
                max_files=len(FILE_FIELDS), max_fields=len(JSON_FIELDS) + len(FILE_FIELDS)
            )
        except Exception as exc:  # malformed multipart, too many parts
            raise ApiError(422, "bad_request", f"unreadable form upload ({one_line(exc)})") from None
        for name, value in form.multi_items():
            field = FILE_FIELDS.get(name, name)
            if field not in fields:
                raise ApiError(
                    422, "bad_request", f"unknown form field {name!r}; expected {', '.join(FILE_FIELDS)}"
                )
            if isinstance(value, str):
                fields[field] = value
                continue
            raw = await value.read()
            try:
                fields[field] = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ApiError(422, "bad_request", f"{name}: upload is not UTF-8 text") from None
            if field in ("source", "bytecode") and value.filename and not fields["name"]:
                fields["name"] = Path(value.filename).name
        return fields
    if not body.strip():
        raise ApiError(
            422, "no_view", "empty request: send JSON {source, bytecode, transactions_csv} or a form"
        )
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(422, "bad_request", f"body is not JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise ApiError(422, "bad_request", "body must be a JSON object")
    unknown = sorted(set(data) - set(JSON_FIELDS))
    if unknown:
        raise ApiError(
            422, "bad_request", f"unknown field(s) {', '.join(unknown)}; expected {', '.join(JSON_FIELDS)}"
        )
    for name, value in data.items():
        if value is not None and not isinstance(value, str):
            raise ApiError(422, "bad_request", f"{name}: expected a string, got {type(value).__name__}")
        fields[name] = value
    return fields


def check_limits(fields: dict[str, str | None], s: ServeConfig) -> None:
    """422 with no view; 413 past the size limits."""
    if all(fields[v] is None for v in VIEWS):
        raise ApiError(422, "no_view", "nothing to scan: give source, bytecode or transactions_csv")
    lim = s.limits
    source, bytecode, csv_text = fields["source"], fields["bytecode"], fields["transactions_csv"]
    if source is not None and len(source) > lim.max_source_chars:
        raise ApiError(
            413,
            "too_large",
            f"source: {len(source)} characters, over limits.max_source_chars={lim.max_source_chars}",
        )
    if bytecode is not None:
        n = len("".join(bytecode.split()).removeprefix("0x"))
        if n > lim.max_bytecode_hex_chars:
            raise ApiError(
                413,
                "too_large",
                f"bytecode: {n} hex characters, over limits.max_bytecode_hex_chars={lim.max_bytecode_hex_chars}",  # noqa: E501
            )
    if csv_text is not None:
        rows = sum(1 for row in csv.reader(io.StringIO(csv_text)) if row) - 1
        if rows > lim.max_csv_rows:
            raise ApiError(
                413,
                "too_large",
                f"transactions_csv: {rows} rows, over limits.max_csv_rows={lim.max_csv_rows}",
            )


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """What the inference log keeps of a report: probabilities per class (and per view), risk, level."""
    return {
        "probabilities": report.get("vulnerabilities"),
        "view_probabilities": {
            v: r["probs"] for v, r in (report.get("views") or {}).items() if r.get("present") and "probs" in r
        },
        "risk": report.get("risk"),
        "risk_level": report.get("risk_level"),
        "flagged": report.get("flagged"),
    }


def error_response(exc: ApiError, request_id: str | None = None) -> JSONResponse:
    body = {"error": exc.message} | ({"request_id": request_id} if request_id else {})
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(body, status_code=exc.status, headers=headers)


def _remove_when_done(futures: list[Future], folder: Path) -> None:
    """Remove the request's temp folder once every scan using it finished (a timed-out one may still run)."""
    pending = [f for f in futures if not f.done()]
    if not pending:
        shutil.rmtree(folder, ignore_errors=True)
        return
    left = [len(pending)]
    lock = threading.Lock()

    def done(_: Future) -> None:
        with lock:
            left[0] -= 1
            if left[0] == 0:
                shutil.rmtree(folder, ignore_errors=True)

    for f in pending:
        f.add_done_callback(done)


# -- the app -------------------------------------------------------------------------------------------------
def create_app(
    settings: ServeConfig | DictConfig | dict | None = None,
    loader: Loader | None = None,
    *,
    load: bool = True,
) -> FastAPI:
    """The scan service. ``loader(ref) -> Scanner`` loads a model ref (default ``Scanner.from_model``);
    ``load``: load the models now (errors raise, one line); else /readyz is 503 until an admin reload."""
    s = as_settings(settings)
    service = ScanService(s, loader or default_loader(s.static_analysis))
    if load:
        service.load()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        service.pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="Scathat scan service", version=__version__, lifespan=lifespan)
    app.state.service = service
    m = service.metrics

    @app.middleware("http")
    async def count(request: Request, call_next):
        start = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:
            log.exception("unhandled error on %s", request.url.path)
            m.errors.labels("internal").inc()
            response = JSONResponse({"error": "internal error (see the service log)"}, status_code=500)
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        m.requests.labels(endpoint, request.method, str(response.status_code)).inc()
        m.latency.labels(endpoint).observe(time.perf_counter() - start)
        return response

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        if service.models is None:
            return JSONResponse({"ready": False, "reason": service.not_ready}, status_code=503)
        return JSONResponse({"ready": True, "models": service.models.describe()})

    @app.get("/version")
    def version() -> dict[str, Any]:
        models = service.models
        return {
            "package": "training_pipeline",
            "version": __version__,
            "models": models.describe() if models else {},
            "loaded_at": models.loaded_at if models else None,
            "routing": {"mode": s.routing.mode, "challenger_share": s.routing.challenger_share},
        }

    @app.get("/metrics")
    def metrics() -> Response:
        m.refresh_drift(s.monitoring.latest_report)  # stat only; parsed again when the report changed
        return Response(m.exposition(), media_type=m.content_type)

    @app.post("/v1/admin/reload")
    async def reload(request: Request) -> JSONResponse:
        try:
            key = service.authorize(request, "admin")
        except ApiError as exc:
            m.errors.labels(exc.kind).inc()
            return error_response(exc)
        try:
            new = await asyncio.get_running_loop().run_in_executor(None, service.load)
        except Exception as exc:  # any loader failure: the models serving now stay
            if not isinstance(exc, UserError):
                log.exception("reload failed")
            m.errors.labels("reload").inc()
            serving = "still serving the previous models" if service.models else "no models loaded"
            return JSONResponse({"error": f"reload failed: {one_line(exc)}; {serving}"}, status_code=503)
        log.info("models reloaded by %s: %s", key.name if key else "-", new.describe())
        for arm, scanner in new.arms().items():
            info = scanner.models
            audit.append(
                "reload",
                model=info.get("name"),
                version=info.get("version"),
                package_id=info.get("package_id"),
                user=key.name if key else None,
                arm=arm,
                ref=new.refs.get(arm),
            )
        return JSONResponse({"reloaded": True, "models": new.describe(), "loaded_at": new.loaded_at})

    @app.post("/v1/scan")
    async def scan(request: Request, background: BackgroundTasks) -> JSONResponse:
        request_id = uuid.uuid4().hex
        start = time.perf_counter()
        record: dict[str, Any] = {
            "request_id": request_id,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        fields: dict[str, str | None] = {}
        try:
            service.authorize(request, "scan")
            body = await read_body(request, s.limits.max_body_bytes)
            fields = await read_fields(request, body)
            check_limits(fields, s)
            record["input_hash"] = input_hash({v: fields[v] for v in VIEWS}, fields["address"])
            record["views"] = [v for v in VIEWS if fields[v] is not None]
            if s.inference_log.include_source:
                record["inputs"] = {v: fields[v] for v in VIEWS if fields[v] is not None}
            models = service.models  # this request keeps this pair, whatever a reload does meanwhile
            if models is None:
                raise ApiError(503, "not_ready", service.not_ready)
            arm = CHAMPION
            if s.routing.mode == "ab" and models.challenger is not None:
                arm = ab_arm(record["input_hash"], s.routing.challenger_share)
            scanner = models.champion if arm == CHAMPION else models.challenger
            shadow = models.challenger if s.routing.mode == "shadow" else None
            record["arm"] = arm
            record["models"] = {arm: model_id(scanner.models)}
            result = await run_scan(fields, scanner, shadow, record, background, start)
        except ApiError as exc:
            m.errors.labels(exc.kind).inc()
            record |= {"error": exc.message, "status": exc.status}
            finish(record, start)
            return error_response(exc, request_id)
        except Exception as exc:  # a bug or a model failure: traceback to the log, one line to the caller
            log.exception("request %s failed", request_id)
            m.errors.labels("internal").inc()
            record |= {"error": f"internal: {one_line(exc)}", "status": 500}
            finish(record, start)
            return JSONResponse({"error": "internal error", "request_id": request_id}, status_code=500)
        report, models_info = result
        if report.get("risk") is not None:
            m.risk.labels(arm, model_label(scanner.models)).observe(report["risk"])
        record |= summary(report) | {"status": 200}
        record["latency_ms"] = round((time.perf_counter() - start) * 1000, 2)
        if shadow is None:
            finish(record, start)
        return JSONResponse({"models": models_info, "report": report, "request_id": request_id, "arm": arm})

    async def run_scan(fields, scanner, shadow, record, background: BackgroundTasks, start: float):
        """Read the input and scan it in the pool under the timeout; shadow: the challenger too, logged after
        the response is sent."""
        folder = Path(tempfile.mkdtemp(prefix="scathat-serve-"))
        deadline = start + s.limits.timeout_s
        futures: list[Future] = []

        def remaining() -> float:
            return max(deadline - time.perf_counter(), 0.001)

        def scan_with(model):
            return model.scan([item])[0]

        try:
            read = service.pool.submit(
                read_texts,
                fields["source"],
                fields["bytecode"],
                fields["transactions_csv"],
                address=fields["address"],
                name=fields["name"],
                solc=fields["solc"],
                workdir=folder,
            )
            futures.append(read)
            item = await wait(read, remaining(), folder)
            features = service.pool.submit(log_features, item)  # for drift monitoring; never raises
            futures.append(features)
            main = service.pool.submit(scan_with, scanner)
            futures.append(main)
            side = service.pool.submit(scan_with, shadow) if shadow is not None else None
            if side is not None:
                futures.append(side)
            report = await wait(main, remaining(), folder)
            record["features"] = await asyncio.wrap_future(features)
        finally:
            _remove_when_done(futures, folder)
        if side is not None:
            background.add_task(log_shadow, side, shadow, record, start)
        return report, scanner.models

    async def wait(future: Future, timeout: float, folder: Path):
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            raise ApiError(
                504, "timeout", f"scan timed out after {s.limits.timeout_s:g}s (limits.timeout_s)"
            ) from None
        except UserError as exc:  # DataError included: bad hex, Solidity that does not compile
            raise ApiError(422, "invalid_input", _clean(one_line(exc), folder)) from None

    async def log_shadow(side: Future, shadow, record: dict[str, Any], start: float) -> None:
        """After the response: wait for the challenger's answer (up to the timeout) and log both."""
        entry: dict[str, Any] = {"arm": CHALLENGER, "model": model_id(shadow.models)}
        record["models"][CHALLENGER] = entry["model"]
        try:
            left = max(start + s.limits.timeout_s - time.perf_counter(), 0.001)
            report = await asyncio.wait_for(asyncio.wrap_future(side), left)
            entry |= summary(report)
            if report.get("risk") is not None:
                m.risk.labels(CHALLENGER, model_label(shadow.models)).observe(report["risk"])
        except TimeoutError:
            entry["error"] = "timed out"
        except Exception as exc:  # the challenger's failure never reaches the caller
            entry["error"] = one_line(exc)
        entry["latency_ms"] = round((time.perf_counter() - start) * 1000, 2)
        record["shadow"] = entry
        finish(record, start)

    def finish(record: dict[str, Any], start: float) -> None:
        """Write the request's inference-log line (latency: the caller's, not the shadow's)."""
        record.setdefault("latency_ms", round((time.perf_counter() - start) * 1000, 2))
        record.setdefault("error", None)
        if service.log is not None:
            try:
                service.log.write(record)
            except OSError as exc:
                m.errors.labels("inference_log").inc()
                log.error("inference log %s: %s", service.log.path, exc)

    return app


def _clean(message: str, folder: Path) -> str:
    """A message without the request's temp folder in it."""
    return message.replace(str(folder) + "/", "").replace(str(folder), "")
