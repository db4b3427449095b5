"""Alerts from a drift report: rules from config (``conf/monitoring/alerts.yaml``) matched against the
report's values, and delivery to a JSONL file, the log, a ``latest.json`` the scan service's ``/metrics``
reads, and an optional webhook.

A rule ``{metric, threshold, op, severity}`` addresses report values with dots between levels and
shell-style wildcards inside one level: ``features.*.psi``, ``predictions.score/*.psi``,
``quality.missing_view/*``, ``quality.error_rate``. A value fires a rule when ``value <op> threshold``;
when several rules fire on the same value (a warning and an alert rule on ``features.x.psi``), one alert
with the higher severity is raised.

Webhook (stdlib ``urllib.request``, no extra dependency): one ``POST`` per drift run with alerts
(``delivery.webhook.send_when_empty``: also without), ``Content-Type: application/json``, body::

    {
      "source": "scathat",                      # delivery.webhook.source
      "time": "2025-01-01T00:00:00+00:00",      # when the alerts were raised (UTC)
      "package": {"name": ..., "version": ..., "package_id": ...},
      "status": "ok" | "warning" | "alert",     # the higher of the report's status and the alerts' severities
      "report_path": "/.../drift.json" | null,
      "counts": {"warning": 2, "alert": 1},
      "alerts": [Alert.to_dict(), ...]          # fields: see ``Alert``
    }

A 2xx answer is success. 5xx, 408, 429, connection errors and timeouts are retried ``retries`` times, waiting
``backoff_s * 2**i`` before retry ``i``; other 4xx answers are not retried. A webhook that still fails is
logged as one ERROR line and recorded in the alerts JSONL as ``{"kind": "webhook_failure", ...}``: it never
fails the drift report.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import operator
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from training_pipeline.config import CONF_DIR, project_root
from training_pipeline.errors import ConfigError, UserError
from training_pipeline.utils.run import one_line, write_json

log = logging.getLogger(__name__)

ALERTS_YAML = CONF_DIR / "monitoring" / "alerts.yaml"
SEVERITIES = {"warning": 1, "alert": 2}
STATUS_LEVELS = {"ok": 0, "warning": 1, "alert": 2}
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
# the drift report's top-level keys (monitoring/drift.py); a rule's first level must be one of them
REPORT_SECTIONS = (
    "package",
    "window",
    "n_reference",
    "n_current",
    "features",
    "predictions",
    "quality",
    "status",
    "drifted",
)
RETRY_STATUSES = (408, 429)


# -- config --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    metric: str
    threshold: float
    op: str = ">="
    severity: str = "warning"

    def fires(self, value: float) -> bool:
        return OPS[self.op](value, self.threshold)


@dataclass
class WebhookConfig:
    url: str | None = None
    send_when_empty: bool = False
    timeout_s: float = 5.0
    retries: int = 3
    backoff_s: float = 1.0
    token_env: str | None = None
    source: str = "scathat"


@dataclass
class DeliveryConfig:
    log: bool = True
    jsonl: str | None = "outputs/monitoring/alerts.jsonl"
    latest: str | None = "outputs/monitoring/latest.json"
    webhook: WebhookConfig = field(default_factory=WebhookConfig)


@dataclass
class AlertsConfig:
    rules: list[Rule] = field(default_factory=list)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)


def load_config(cfg: Any = None) -> AlertsConfig:
    """The alert settings: ``conf/monitoring/alerts.yaml`` merged with ``cfg``, which is None, an
    ``AlertsConfig``, a YAML file, or a mapping/DictConfig: either the alerts settings themselves (keys
    ``rules``, ``delivery``) or a larger config (the drift command's) with them under ``alerts`` (without an
    ``alerts`` key, the defaults). A wrong key or value is a one-line ``ConfigError`` naming it."""
    if isinstance(cfg, AlertsConfig):
        return cfg
    try:
        base = OmegaConf.load(ALERTS_YAML)
        if cfg is None:
            override: Any = {}
        elif isinstance(cfg, str | Path):
            if not Path(cfg).is_file():
                raise ConfigError(f"{cfg}: no such alerts config")
            override = OmegaConf.load(cfg)
        elif OmegaConf.is_config(cfg) or isinstance(cfg, Mapping):
            if "alerts" in cfg:
                override = cfg["alerts"] if cfg["alerts"] is not None else {}
            elif "rules" in cfg or "delivery" in cfg:
                override = cfg
            else:
                override = {}
        else:
            raise ConfigError(f"alerts config: expected a mapping or a YAML path, got {type(cfg).__name__}")
        if OmegaConf.is_config(override):
            override = OmegaConf.to_container(override, resolve=True)
        if not isinstance(override, Mapping):
            raise ConfigError("alerts config: expected a mapping with rules and delivery")
        if "rules" in override:  # a list replaces the default rules; merge would otherwise keep base's
            base.rules = []
        merged = OmegaConf.to_container(OmegaConf.merge(base, override), resolve=True)
    except ConfigError:
        raise
    except Exception as exc:  # YAML syntax, bad interpolation
        raise ConfigError(f"alerts config: {one_line(exc)}") from None
    return build_config(merged)


def build_config(data: Mapping[str, Any]) -> AlertsConfig:
    """An ``AlertsConfig`` from plain data, every key and value checked."""
    _known(data, AlertsConfig, "alerts config")
    rules_data = data.get("rules") or []
    if not isinstance(rules_data, list):
        raise ConfigError("alerts config: rules must be a list of {metric, threshold, op, severity}")
    rules = [_rule(r, i) for i, r in enumerate(rules_data)]
    delivery = dict(data.get("delivery") or {})
    _known(delivery, DeliveryConfig, "alerts config: delivery")
    hook = dict(delivery.pop("webhook", None) or {})
    _known(hook, WebhookConfig, "alerts config: delivery.webhook")
    webhook = WebhookConfig(**hook)
    _check_webhook(webhook)
    if not isinstance(delivery.get("log", True), bool):
        raise ConfigError(f"alerts config: delivery.log={delivery['log']!r}: expected true or false")
    for name in ("jsonl", "latest"):
        if delivery.get(name) is not None and not isinstance(delivery[name], str):
            raise ConfigError(f"alerts config: delivery.{name}={delivery[name]!r}: expected a path or null")
    return AlertsConfig(rules=rules, delivery=DeliveryConfig(**delivery, webhook=webhook))


def _known(data: Any, schema: type, where: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = [f.name for f in fields(schema)]
    unknown = [str(k) for k in data if k not in names]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (expected {', '.join(names)})")


def _rule(data: Any, i: int) -> Rule:
    where = f"alerts config: rules[{i}]"
    _known(data, Rule, where)
    for key in ("metric", "threshold"):
        if data.get(key) is None:
            raise ConfigError(f"{where}: missing key {key!r}")
    metric = data["metric"]
    if not isinstance(metric, str) or not metric.strip() or "" in metric.split("."):
        raise ConfigError(f"{where}: metric {metric!r} is not a dotted path like features.*.psi")
    head = metric.split(".")[0]
    if not any(fnmatchcase(s, head) for s in REPORT_SECTIONS):
        raise ConfigError(
            f"{where}: metric {metric!r} starts with {head!r}, not a report section "
            f"({', '.join(REPORT_SECTIONS)})"
        )
    threshold = data["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ConfigError(f"{where}: threshold {threshold!r} is not a number")
    op = data.get("op", ">=")
    if op not in OPS:
        raise ConfigError(f"{where}: op {op!r}; expected one of {' '.join(OPS)}")
    severity = data.get("severity", "warning")
    if severity not in SEVERITIES:
        raise ConfigError(f"{where}: severity {severity!r}; expected one of {', '.join(SEVERITIES)}")
    return Rule(metric=metric, threshold=float(threshold), op=op, severity=severity)


def _check_webhook(w: WebhookConfig) -> None:
    where = "alerts config: delivery.webhook"
    if w.url is not None:
        scheme = urllib.parse.urlsplit(str(w.url)).scheme
        if scheme not in ("http", "https"):
            raise ConfigError(f"{where}.url={w.url!r}: expected an http:// or https:// URL")
    if isinstance(w.retries, bool) or not isinstance(w.retries, int) or w.retries < 0:
        raise ConfigError(f"{where}.retries={w.retries!r}: expected a whole number >= 0")
    for name in ("timeout_s", "backoff_s"):
        value = getattr(w, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{where}.{name}={value!r}: expected a number >= 0")
    if w.timeout_s == 0:
        raise ConfigError(f"{where}.timeout_s=0: must be positive")


# -- matching ------------------------------------------------------------------------------------------------
@dataclass
class Alert:
    """One rule firing on one report value (JSON-able with ``to_dict``)."""

    severity: str  # warning | alert
    key: str  # the feature, class or quality metric: what the rule's wildcards matched (else the last level)
    section: str  # features | predictions | quality | ...
    path: str  # the value's full address in the report, e.g. features.opcode_count.psi
    value: float
    op: str
    threshold: float
    metric: str  # the rule's pattern, e.g. features.*.psi
    package: dict[str, Any]  # name, version, package_id of the monitored model package
    report_path: str | None
    time: str  # UTC, ISO 8601
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def values_at(report: Mapping[str, Any], metric: str) -> list[tuple[str, str, Any]]:
    """``(path, key, value)`` of every report value ``metric`` addresses; ``key`` joins the levels the
    wildcards matched (the last level when there are none)."""
    parts = metric.split(".")
    found: list[tuple[str, str, Any]] = []

    def walk(node: Any, i: int, path: list[str], wild: list[str]) -> None:
        if i == len(parts):
            found.append((".".join(path), ".".join(wild) or path[-1], node))
            return
        if not isinstance(node, Mapping):
            return
        part = parts[i]
        if any(c in part for c in "*?["):
            for k in node:
                if fnmatchcase(str(k), part):
                    walk(node[k], i + 1, [*path, str(k)], [*wild, str(k)])
        elif part in node:
            walk(node[part], i + 1, [*path, part], wild)

    walk(report, 0, [], [])
    return found


def package_of(report: Mapping[str, Any]) -> dict[str, Any]:
    pkg = report.get("package") or {}
    return {k: pkg.get(k) if isinstance(pkg, Mapping) else None for k in ("name", "version", "package_id")}


def _judged_stable(report: Mapping[str, Any], path: str) -> bool:
    """Whether the drift report judged the entry holding ``path`` stable (``status: ok``: the PSI under its
    threshold, the two-sample test not significant, or too few samples for a verdict). A rule on such an
    entry's PSI or p-value does not fire on its own: the report's verdict needs both."""
    node: Any = report
    for part in path.split(".")[:-1]:
        node = node.get(part) if isinstance(node, Mapping) else None
    return isinstance(node, Mapping) and node.get("status") == "ok"


def evaluate(
    report: Mapping[str, Any],
    rules: list[Rule],
    *,
    report_path: str | Path | None = None,
    now: str | None = None,
) -> list[Alert]:
    """The alerts ``rules`` raise on ``report``: one per value (the highest severity among the rules that
    fire on it), alerts before warnings, else in rule and report order. Non-numeric and NaN values never
    fire."""
    now = now or datetime.now(UTC).isoformat(timespec="seconds")
    package = package_of(report)
    best: dict[str, tuple[Rule, str, float]] = {}
    for rule in rules:
        for path, key, value in values_at(report, rule.metric):
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
                continue
            if not rule.fires(float(value)) or _judged_stable(report, path):
                continue
            held = best.get(path)
            if held is None or SEVERITIES[rule.severity] > SEVERITIES[held[0].severity]:
                best[path] = (rule, key, float(value))
    alerts = []
    for path, (rule, key, value) in best.items():
        alerts.append(
            Alert(
                severity=rule.severity,
                key=key,
                section=path.split(".")[0],
                path=path,
                value=value,
                op=rule.op,
                threshold=rule.threshold,
                metric=rule.metric,
                package=dict(package),
                report_path=str(report_path) if report_path else None,
                time=now,
                message=f"{path} = {value:.4g} {rule.op} {rule.threshold:g}",
            )
        )
    return sorted(alerts, key=lambda a: -SEVERITIES[a.severity])


# -- delivery ------------------------------------------------------------------------------------------------
@dataclass
class WebhookResult:
    ok: bool
    attempts: int
    status: int | None = None  # the last HTTP status, None when no answer came
    error: str | None = None


def post_webhook(
    url: str,
    body: Mapping[str, Any],
    *,
    timeout_s: float = 5.0,
    retries: int = 3,
    backoff_s: float = 1.0,
    headers: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> WebhookResult:
    """POST ``body`` as JSON; retry 5xx, 408, 429, connection errors and timeouts (never raises)."""
    data = json.dumps(body, default=str).encode()
    head = {"Content-Type": "application/json", "User-Agent": "scathat-alerts"} | dict(headers or {})
    status: int | None = None
    error = "not sent"
    for attempt in range(1, retries + 2):
        request = urllib.request.Request(url, data=data, headers=head, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                status = response.status
            return WebhookResult(ok=True, attempts=attempt, status=status)
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code} {exc.reason}"
            if exc.code < 500 and exc.code not in RETRY_STATUSES:
                return WebhookResult(ok=False, attempts=attempt, status=status, error=error)
        except (OSError, ValueError, http.client.HTTPException) as exc:  # refused, DNS, timeout, bad answer
            status = None
            reason = getattr(exc, "reason", None) or exc
            error = f"{type(reason).__name__}: {reason}" if not isinstance(reason, str) else reason
        if attempt <= retries:
            wait = backoff_s * 2 ** (attempt - 1)
            log.warning(
                "alert webhook %s: attempt %d/%d failed (%s); retrying in %gs",
                _safe_url(url),
                attempt,
                retries + 1,
                error,
                wait,
            )
            sleep(wait)
    return WebhookResult(ok=False, attempts=retries + 1, status=status, error=error)


def _safe_url(url: str) -> str:
    """The URL without credentials, query or fragment (tokens hide there), for logs and the JSONL."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def _local_path(path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


def counts_of(alerts: list[Alert]) -> dict[str, int]:
    return {s: sum(a.severity == s for a in alerts) for s in SEVERITIES}


def overall_status(alerts: list[Alert], report: Mapping[str, Any] | None = None) -> str:
    """The higher of the report's status and the alerts' severities."""
    level = STATUS_LEVELS.get(str((report or {}).get("status")), 0)
    for a in alerts:
        level = max(level, SEVERITIES[a.severity])
    return next(s for s, n in STATUS_LEVELS.items() if n == level)


def webhook_body(
    alerts: list[Alert],
    report: Mapping[str, Any] | None = None,
    *,
    source: str = "scathat",
    report_path: str | Path | None = None,
) -> dict[str, Any]:
    """The documented webhook JSON (module docstring)."""
    first = alerts[0] if alerts else None
    return {
        "source": source,
        "time": first.time if first else datetime.now(UTC).isoformat(timespec="seconds"),
        "package": package_of(report) if report is not None else (first.package if first else {}),
        "status": overall_status(alerts, report),
        "report_path": str(report_path) if report_path else (first.report_path if first else None),
        "counts": counts_of(alerts),
        "alerts": [a.to_dict() for a in alerts],
    }


def deliver(
    alerts: list[Alert],
    cfg: Any = None,
    *,
    report: Mapping[str, Any] | None = None,
    report_path: str | Path | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Log each alert, POST them to the webhook (if configured), append them to the alerts JSONL and write
    ``latest.json`` (``report`` plus its alerts; when ``report`` is given). A failing webhook is logged and
    recorded, never raised; a local file that cannot be written is a ``UserError`` naming it (after the
    other channels ran). Returns what was done: ``{"jsonl", "latest", "webhook"}``."""
    config = load_config(cfg)
    d = config.delivery
    report_path = report_path or (alerts[0].report_path if alerts else None)
    if d.log:
        for a in alerts:
            pkg = a.package
            log.log(
                logging.ERROR if a.severity == "alert" else logging.WARNING,
                "drift %s: %s (package %s v%s)",
                a.severity,
                a.message,
                pkg.get("name") or pkg.get("package_id") or "?",
                pkg.get("version") if pkg.get("version") is not None else "?",
            )
        if not alerts:
            log.info("drift: no alert rule fired")
    done: dict[str, Any] = {"jsonl": None, "latest": None, "webhook": "off"}
    failures: list[str] = []

    hook = d.webhook
    result: WebhookResult | None = None
    if hook.url and (alerts or hook.send_when_empty):
        body = webhook_body(alerts, report, source=hook.source, report_path=report_path)
        headers = {}
        token = os.environ.get(hook.token_env) if hook.token_env else None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        result = post_webhook(
            hook.url,
            body,
            timeout_s=hook.timeout_s,
            retries=hook.retries,
            backoff_s=hook.backoff_s,
            headers=headers,
            sleep=sleep,
        )
        done["webhook"] = asdict(result)
        if not result.ok:
            log.error(
                "alert webhook %s failed after %d attempt(s): %s; %d alert(s) recorded in %s",
                _safe_url(hook.url),
                result.attempts,
                result.error,
                len(alerts),
                d.jsonl or "no JSONL (delivery.jsonl is null)",
            )

    if d.jsonl:
        path = _local_path(d.jsonl)
        webhook_state = "off" if result is None else ("sent" if result.ok else "failed")
        lines = [{"kind": "alert", **a.to_dict(), "webhook": webhook_state} for a in alerts]
        if result is not None and not result.ok:
            lines.append(
                {
                    "kind": "webhook_failure",
                    "time": datetime.now(UTC).isoformat(timespec="seconds"),
                    "url": _safe_url(hook.url or ""),
                    "attempts": result.attempts,
                    "status": result.status,
                    "error": result.error,
                    "alerts": len(alerts),
                    "package": package_of(report) if report is not None else None,
                    "report_path": str(report_path) if report_path else None,
                }
            )
        if lines:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8") as fh:
                    fh.writelines(json.dumps(line, default=str) + "\n" for line in lines)
                done["jsonl"] = str(path)
            except OSError as exc:
                failures.append(f"{path}: {exc.strerror or one_line(exc)}")

    if d.latest and report is not None:
        path = _local_path(d.latest)
        latest = dict(report) | {
            "report_path": str(report_path) if report_path else report.get("report_path"),
            "alerts": [a.to_dict() for a in alerts],
            "alert_counts": counts_of(alerts),
            "alert_status": overall_status(alerts, report),
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        try:
            write_json(path, latest)
            done["latest"] = str(path)
        except OSError as exc:
            failures.append(f"{path}: {exc.strerror or one_line(exc)}")

    if failures:
        raise UserError(f"alerts: cannot write {'; '.join(failures)}")
    return done


def fire(
    report: Mapping[str, Any],
    cfg: Any = None,
    *,
    report_path: str | Path | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Alert]:
    """Match the alert rules (``load_config(cfg)``) against a drift report and deliver the alerts
    (``deliver``). ``report_path``: where the report was written (default: the report's ``report_path``)."""
    config = load_config(cfg)
    report_path = report_path or report.get("report_path")
    alerts = evaluate(report, config.rules, report_path=report_path)
    deliver(alerts, config, report=report, report_path=report_path, sleep=sleep)
    return alerts
