"""Prometheus metrics of one app (its own ``CollectorRegistry``, so two apps in a process do not collide)."""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

RISK_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
DRIFT_STATUS = {"ok": 0, "warning": 1, "alert": 2}
log = logging.getLogger(__name__)


class ServeMetrics:
    """Requests by endpoint and status, latency, errors by kind, risk per model, loaded model versions, and
    the latest drift report's PSI, status and alert counts."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "scathat_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "scathat_request_latency_seconds", "HTTP request latency by endpoint", ["endpoint"], registry=r
        )
        self.errors = Counter("scathat_errors", "Failed requests by kind of error", ["kind"], registry=r)
        self.risk = Histogram(
            "scathat_risk_score",
            "Risk scores by arm and model",
            ["arm", "model"],
            buckets=RISK_BUCKETS,
            registry=r,
        )
        self.model_version = Gauge(
            "scathat_model_version",
            "The loaded model version per arm (NaN: not numbered)",
            ["arm", "model"],
            registry=r,
        )
        self.reloads = Counter("scathat_model_reloads", "Model reloads by outcome", ["outcome"], registry=r)
        # the latest drift report (monitoring/alerts.py writes it; refresh_drift reads it on each scrape)
        self.drift_psi = Gauge(
            "scathat_drift_psi",
            "PSI per feature and prediction in the latest drift report",
            ["section", "feature"],
            registry=r,
        )
        self.drift_status = Gauge(
            "scathat_drift_status",
            "Latest drift report status (0 ok, 1 warning, 2 alert) per monitored package",
            ["package"],
            registry=r,
        )
        self.drift_alerts = Gauge(
            "scathat_alerts_total", "Alerts raised by the latest drift report", ["severity"], registry=r
        )
        self.drift_quality = Gauge(
            "scathat_drift_quality", "Input quality in the latest drift report", ["metric"], registry=r
        )
        self.drift_time = Gauge(
            "scathat_drift_report_timestamp_seconds",
            "When the latest drift report was written (file mtime, Unix seconds)",
            ["package"],
            registry=r,
        )
        self._drift_seen: tuple | None = None
        self._drift_lock = threading.Lock()

    def set_models(self, described: dict[str, dict]) -> None:
        """The loaded versions: the old series cleared so a reload leaves only the current ones."""
        self.model_version.clear()
        for arm, ids in described.items():
            try:
                version = float(ids.get("version"))
            except (TypeError, ValueError):
                version = float("nan")
            self.model_version.labels(
                arm, str(ids.get("package_id") or ids.get("name") or ids.get("path"))
            ).set(version)

    def refresh_drift(self, path: str | Path | None) -> None:
        """The drift gauges from the latest drift report at ``path``, parsed again only when its mtime or
        size changed; a missing file clears them, an unreadable one too (one warning)."""
        with self._drift_lock:
            try:
                stat = os.stat(path) if path else None
            except OSError:
                stat = None
            seen = (str(path), stat.st_mtime_ns, stat.st_size) if stat else None
            if seen == self._drift_seen:
                return
            self._drift_seen = seen
            for gauge in (self.drift_psi, self.drift_status, self.drift_alerts, self.drift_quality):
                gauge.clear()
            self.drift_time.clear()
            if stat is None:
                return
            try:
                report = json.loads(Path(path).read_text(encoding="utf-8"))
                if not isinstance(report, dict):
                    raise ValueError("not a JSON object")
                self._set_drift(report, stat.st_mtime)
            except (OSError, ValueError, TypeError, AttributeError) as exc:
                for gauge in (self.drift_psi, self.drift_status, self.drift_alerts, self.drift_quality):
                    gauge.clear()
                self.drift_time.clear()
                log.warning("drift report %s unreadable, drift gauges cleared: %s", path, exc)

    def _set_drift(self, report: dict[str, Any], mtime: float) -> None:
        def number(v: Any) -> bool:
            return isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v)

        for section in ("features", "predictions"):
            for name, entry in (report.get(section) or {}).items():
                if isinstance(entry, dict) and number(entry.get("psi")):
                    self.drift_psi.labels(section, str(name)).set(entry["psi"])
        for name, value in (report.get("quality") or {}).items():
            if number(value):
                self.drift_quality.labels(str(name)).set(value)
        pkg = report.get("package") or {}
        package = str(pkg.get("package_id") or pkg.get("name") or "unknown")
        status = report.get("alert_status") or report.get("status")
        if status in DRIFT_STATUS:
            self.drift_status.labels(package).set(DRIFT_STATUS[status])
        counts = report.get("alert_counts") or {}
        alerts = report.get("alerts") or []
        for severity in ("warning", "alert"):
            n = counts.get(severity)
            if not number(n):
                n = sum(1 for a in alerts if isinstance(a, dict) and a.get("severity") == severity)
            self.drift_alerts.labels(severity).set(n)
        self.drift_time.labels(package).set(mtime)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
