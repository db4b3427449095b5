"""Prometheus metrics of one app (its own ``CollectorRegistry``, so two apps in a process do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

RISK_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


class ServeMetrics:
    """Requests by endpoint and status, latency, errors by kind, risk per model, loaded model versions."""

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

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
