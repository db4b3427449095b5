"""Drift alerts: rules matched on a hand-written drift report (warning vs alert, p-value op, quality), the
alert JSON, delivery to the JSONL, a local webhook (received body, retries, dead endpoints that never
raise), and the scan service's /metrics drift gauges read from the latest report."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from training_pipeline.errors import ConfigError, UserError
from training_pipeline.monitoring.alerts import (
    ALERTS_YAML,
    Alert,
    deliver,
    evaluate,
    fire,
    load_config,
    values_at,
)
from training_pipeline.serve.app import create_app
from training_pipeline.serve.config import load_settings

PACKAGE = {"name": "scathat-pipeline", "version": 3, "package_id": "scathat-pipeline-3-abc123"}


def stat(psi: float, p_value: float = 0.5, kind: str = "continuous") -> dict[str, Any]:
    test = "ks" if kind == "continuous" else "chi2"
    status = "alert" if psi >= 0.25 else "warning" if psi >= 0.1 else "ok"
    return {"kind": kind, "psi": psi, "test": test, "statistic": 0.1, "p_value": p_value, "status": status}


def make_report(**quality: float) -> dict[str, Any]:
    return {
        "package": dict(PACKAGE),
        "window": {"start": "2025-01-01T00:00:00+00:00", "end": "2025-01-02T00:00:00+00:00"},
        "n_reference": 1000,
        "n_current": 400,
        "features": {
            "bytecode_length": stat(0.31),  # warning and alert rules both fire: one alert
            "opcode_entropy": stat(0.15),  # warning only
            "n_functions": stat(0.02, p_value=1e-5),  # judged stable (status ok): no rule fires
            "solc_minor": stat(0.01, kind="categorical"),  # nothing
            "broken": {"kind": "continuous", "psi": float("nan"), "p_value": None},  # never fires
        },
        "predictions": {
            "score/reentrancy": stat(0.12),
            "score/arithmetic": stat(0.0),
            "predicted_share/reentrancy": {"reference": 0.1, "current": 0.3, "psi": 0.4, "status": "alert"},
        },
        "quality": {"missing_view/source": 0.7, "missing_view/bytecode": 0.0, "error_rate": 0.0}
        | {"unparsable": 0}
        | quality,
        "status": "alert",
        "drifted": ["bytecode_length", "predicted_share/reentrancy"],
    }


def by_path(alerts: list[Alert]) -> dict[str, Alert]:
    return {a.path: a for a in alerts}


def cfg_for(tmp_path: Path, url: str | None = None, **webhook: Any) -> dict[str, Any]:
    return {
        "delivery": {
            "jsonl": str(tmp_path / "alerts.jsonl"),
            "latest": str(tmp_path / "latest.json"),
            "webhook": {"url": url, "backoff_s": 0.0, "timeout_s": 2.0} | webhook,
        }
    }


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- rules ---------------------------------------------------------------------------------------------------
def test_default_rules_on_a_hand_written_report() -> None:
    alerts = evaluate(make_report(error_rate=0.08), load_config().rules, report_path="r/drift.json")
    got = by_path(alerts)
    assert set(got) == {
        "features.bytecode_length.psi",
        "features.opcode_entropy.psi",
        "predictions.score/reentrancy.psi",
        "predictions.predicted_share/reentrancy.psi",
        "quality.error_rate",
    }  # a missing view (70% without source here) is normal traffic: no default rule
    # a warning (0.1) and an alert (0.25) rule both fire on 0.31: one alert, the higher severity
    top = got["features.bytecode_length.psi"]
    assert (top.severity, top.threshold, top.op, top.key, top.section) == (
        "alert",
        0.25,
        ">=",
        "bytecode_length",
        "features",
    )
    assert got["features.opcode_entropy.psi"].severity == "warning"
    assert got["features.opcode_entropy.psi"].threshold == 0.1
    assert "features.n_functions.p_value" not in got  # a tiny p-value on an entry the report judged stable
    assert got["predictions.score/reentrancy.psi"].key == "score/reentrancy"
    assert got["predictions.predicted_share/reentrancy.psi"].severity == "alert"
    err = got["quality.error_rate"]
    assert (err.key, err.value, err.op, err.severity) == ("error_rate", 0.08, ">", "alert")
    # alerts first
    severities = [a.severity for a in alerts]
    assert severities == sorted(severities, key=lambda s: s != "alert")
    # a smaller error rate is only a warning, a tiny one nothing
    rules = load_config().rules
    assert by_path(evaluate(make_report(error_rate=0.03), rules))["quality.error_rate"].severity == "warning"
    assert "quality.error_rate" not in by_path(evaluate(make_report(error_rate=0.0), rules))


def test_alert_json_names_the_feature_value_threshold_and_package() -> None:
    alerts = evaluate(make_report(), load_config().rules, report_path="outputs/monitoring/drift.json")
    alert = by_path(alerts)["features.bytecode_length.psi"]
    data = json.loads(json.dumps(alert.to_dict()))
    assert data["key"] == "bytecode_length" and data["value"] == 0.31 and data["threshold"] == 0.25
    assert data["op"] == ">=" and data["severity"] == "alert" and data["metric"] == "features.*.psi"
    assert data["package"] == PACKAGE and data["package"]["version"] == 3
    assert data["report_path"] == "outputs/monitoring/drift.json"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", data["time"])
    assert "0.31" in data["message"] and ">= 0.25" in data["message"]


def test_custom_rules_replace_the_defaults_and_patterns_address_levels() -> None:
    cfg = load_config({"rules": [{"metric": "quality.missing_view/*", "op": ">=", "threshold": 0.0}]})
    assert len(cfg.rules) == 1 and cfg.rules[0].severity == "warning"
    paths = {a.path for a in evaluate(make_report(), cfg.rules)}
    assert paths == {"quality.missing_view/source", "quality.missing_view/bytecode"}
    assert [k for _, k, _ in values_at(make_report(), "predictions.score/*.psi")] == [
        "score/reentrancy",
        "score/arithmetic",
    ]
    assert values_at(make_report(), "features.nope.psi") == []


@pytest.mark.parametrize("warning_first", [True, False])
def test_the_higher_severity_wins_whatever_the_rule_order(warning_first: bool) -> None:
    warning = {"metric": "features.*.psi", "threshold": 0.1, "severity": "warning"}
    alert = {"metric": "features.*.psi", "threshold": 0.25, "severity": "alert"}
    rules = load_config({"rules": [warning, alert] if warning_first else [alert, warning]}).rules
    got = by_path(evaluate(make_report(), rules))
    assert got["features.bytecode_length.psi"].severity == "alert"
    assert got["features.bytecode_length.psi"].threshold == 0.25
    assert got["features.opcode_entropy.psi"].severity == "warning"
    assert len([a for a in got if a.startswith("features.bytecode_length")]) == 1


@pytest.mark.parametrize(
    ("cfg", "needle"),
    [
        ({"rules": [{"metric": "features.*.psi", "treshold": 0.2}]}, "rules[0]: unknown key 'treshold'"),
        ({"rules": [{"metric": "features.*.psi", "threshold": 0.2, "op": "=>"}]}, "op '=>'"),
        ({"rules": [{"metric": "features.*.psi", "threshold": 0.2, "severity": "page"}]}, "severity 'page'"),
        ({"rules": [{"metric": "feature.*.psi", "threshold": 0.2}]}, "starts with 'feature'"),
        ({"rules": [{"metric": "features.*.psi", "threshold": "high"}]}, "threshold 'high'"),
        ({"rules": [{"metric": "features.*.psi"}]}, "missing key 'threshold'"),
        ({"delivery": {"webhook": {"urll": "http://x"}}}, "delivery.webhook: unknown key 'urll'"),
        ({"delivery": {"webhook": {"url": "file:///etc/passwd"}}}, "http:// or https://"),
        ({"delivery": {"webhook": {"retries": -1}}}, "retries=-1"),
        ({"alerts": {"rulez": []}}, "unknown key 'rulez'"),
    ],
)
def test_a_bad_alerts_config_is_one_line_naming_it(cfg: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_config_from_a_yaml_file_and_from_the_drift_commands_config(tmp_path: Path) -> None:
    assert load_config().rules and ALERTS_YAML.is_file()
    path = tmp_path / "alerts.yaml"
    hook = {"url": "http://127.0.0.1:9/hook", "retries": 1}
    path.write_text(yaml.safe_dump({"delivery": {"webhook": hook}}))
    cfg = load_config(path)
    assert cfg.delivery.webhook.url == "http://127.0.0.1:9/hook" and cfg.delivery.webhook.retries == 1
    assert len(cfg.rules) == len(load_config().rules)  # default rules kept
    drift_cfg = {"inference_log": "x.jsonl", "alerts": {"delivery": {"jsonl": None}}}
    assert load_config(drift_cfg).delivery.jsonl is None
    default_jsonl = load_config({"inference_log": "x.jsonl"}).delivery.jsonl
    assert default_jsonl.endswith("outputs/monitoring/alerts.jsonl")
    with pytest.raises(ConfigError, match="no such alerts config"):
        load_config(tmp_path / "missing.yaml")


# -- delivery ------------------------------------------------------------------------------------------------
class Hook:
    """A local webhook on 127.0.0.1 (free port, own thread) answering ``status``; keeps what it received."""

    def __init__(self, status: int = 200) -> None:
        self.status, self.bodies, self.headers = status, [], []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                size = int(self.headers.get("Content-Length") or 0)
                hook.bodies.append(json.loads(self.rfile.read(size)))
                hook.headers.append(dict(self.headers))
                self.send_response(hook.status)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/drift?token=s3cret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


@pytest.fixture
def failing_hook() -> Iterator[Hook]:
    h = Hook(status=500)
    yield h
    h.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_webhook_receives_the_documented_body_and_files_are_written(
    hook: Hook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SCATHAT_TEST_ALERT_TOKEN", "tok-123")
    cfg = cfg_for(tmp_path, hook.url, token_env="SCATHAT_TEST_ALERT_TOKEN")
    with caplog.at_level(logging.INFO, logger="training_pipeline.monitoring.alerts"):
        alerts = fire(make_report(), cfg, report_path=tmp_path / "drift.json")
    assert len(hook.bodies) == 1
    body = hook.bodies[0]
    assert set(body) == {"source", "time", "package", "status", "report_path", "counts", "alerts"}
    assert body["source"] == "scathat" and body["package"] == PACKAGE and body["status"] == "alert"
    assert body["report_path"] == str(tmp_path / "drift.json")
    assert body["counts"] == {
        "warning": sum(a.severity == "warning" for a in alerts),
        "alert": sum(a.severity == "alert" for a in alerts),
    }
    assert body["counts"]["alert"] == 2 and body["counts"]["warning"] == 2
    assert [a["path"] for a in body["alerts"]] == [a.path for a in alerts]
    assert hook.headers[0]["Authorization"] == "Bearer tok-123"
    assert hook.headers[0]["Content-Type"] == "application/json"
    # one log line per alert, ERROR for alerts and WARNING for warnings
    mine = [r for r in caplog.records if r.message.startswith("drift ")]
    assert [r.levelno for r in mine if "drift alert:" in r.message] == [logging.ERROR] * 2
    assert [r.levelno for r in mine if "drift warning:" in r.message] == [logging.WARNING] * 2
    assert all("scathat-pipeline v3" in r.message for r in mine)
    lines = jsonl(tmp_path / "alerts.jsonl")
    assert [line["kind"] for line in lines] == ["alert"] * 4
    assert all(line["webhook"] == "sent" for line in lines)
    latest = json.loads((tmp_path / "latest.json").read_text())
    assert latest["features"]["bytecode_length"]["psi"] == 0.31
    assert latest["alert_counts"] == {"warning": 2, "alert": 2} and len(latest["alerts"]) == 4
    # a second run appends
    fire(make_report(), cfg)
    assert len(jsonl(tmp_path / "alerts.jsonl")) == 8 and len(hook.bodies) == 2


def test_no_alerts_no_post_unless_asked(hook: Hook, tmp_path: Path) -> None:
    calm = make_report()
    calm["features"] = {"a": stat(0.0)}
    calm["predictions"] = {}
    calm["quality"] = {"error_rate": 0.0}
    calm["status"] = "ok"
    assert fire(calm, cfg_for(tmp_path, hook.url)) == []
    assert hook.bodies == [] and not (tmp_path / "alerts.jsonl").exists()
    assert json.loads((tmp_path / "latest.json").read_text())["alert_status"] == "ok"  # gauges see the calm
    fire(calm, cfg_for(tmp_path, hook.url, send_when_empty=True))
    assert hook.bodies[0]["alerts"] == [] and hook.bodies[0]["status"] == "ok"


def _dead_webhook_checks(
    url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, expect_status: int | None
) -> list[float]:
    sleeps: list[float] = []
    cfg = cfg_for(tmp_path, url, retries=2, backoff_s=0.5)
    with caplog.at_level(logging.WARNING, logger="training_pipeline.monitoring.alerts"):
        alerts = fire(make_report(), cfg, sleep=sleeps.append)  # does not raise
    assert len(alerts) == 4
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "webhook" in r.message]
    assert len(errors) == 1 and "failed after 3 attempt(s)" in errors[0].message
    assert "s3cret" not in caplog.text  # the URL's query (a token) never reaches the log
    lines = jsonl(tmp_path / "alerts.jsonl")
    assert all(line["webhook"] == "failed" for line in lines if line["kind"] == "alert")
    (failure,) = [line for line in lines if line["kind"] == "webhook_failure"]
    assert failure["attempts"] == 3 and failure["alerts"] == 4 and failure["status"] == expect_status
    assert failure["package"]["version"] == 3 and "s3cret" not in failure["url"]
    return sleeps


def test_a_webhook_on_a_closed_port_is_retried_then_logged_and_recorded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook?token=s3cret"
    sleeps = _dead_webhook_checks(url, tmp_path, caplog, expect_status=None)
    assert sleeps == [0.5, 1.0]  # two retries, exponential backoff


def test_a_webhook_answering_500_is_retried_then_logged_and_recorded(
    failing_hook: Hook, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sleeps = _dead_webhook_checks(failing_hook.url, tmp_path, caplog, expect_status=500)
    assert len(failing_hook.bodies) == 3 and sleeps == [0.5, 1.0]


def test_a_client_error_is_not_retried(tmp_path: Path) -> None:
    h = Hook(status=400)
    try:
        alerts = evaluate(make_report(), load_config().rules)
        done = deliver(alerts, cfg_for(tmp_path, h.url, retries=4), report=make_report())
    finally:
        h.close()
    assert len(h.bodies) == 1 and done["webhook"]["ok"] is False and done["webhook"]["status"] == 400


def test_an_unwritable_jsonl_is_one_user_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "alerts.jsonl").mkdir()  # a folder where the file should be
    with pytest.raises(UserError, match=r"alerts: cannot write .*alerts\.jsonl"):
        fire(make_report(), cfg_for(tmp_path))
    assert (tmp_path / "latest.json").is_file()  # the other channel still ran


# -- the scan service's drift gauges -------------------------------------------------------------------------
class FakeScanner:
    models = {"package_id": "fake-1", "name": "fake", "version": 1}

    def scan(self, items: list) -> list[dict[str, Any]]:
        return [{"risk": 0.1, "risk_level": "low", "vulnerabilities": {}} for _ in items]


def sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
            if found == labels:
                return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_expose_the_latest_drift_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCATHAT_API_KEYS", raising=False)
    latest = tmp_path / "monitoring" / "latest.json"
    settings = load_settings(
        [
            "champion=fake",
            "verify=false",
            f"inference_log.path={tmp_path / 'inference.jsonl'}",
            f"monitoring.latest_report={latest}",
        ]
    )
    client = TestClient(create_app(settings, lambda ref: FakeScanner()))
    text = client.get("/metrics").text
    assert sample(text, "scathat_drift_status", package=PACKAGE["package_id"]) is None  # no report yet

    fire(make_report(), {"delivery": {"jsonl": None, "latest": str(latest)}})
    text = client.get("/metrics").text
    assert sample(text, "scathat_drift_psi", section="features", feature="bytecode_length") == 0.31
    assert sample(text, "scathat_drift_psi", section="predictions", feature="score/reentrancy") == 0.12
    assert sample(text, "scathat_drift_psi", section="features", feature="broken") is None  # NaN skipped
    assert sample(text, "scathat_drift_status", package=PACKAGE["package_id"]) == 2.0
    assert sample(text, "scathat_alerts_total", severity="alert") == 2.0
    assert sample(text, "scathat_alerts_total", severity="warning") == 2.0
    assert sample(text, "scathat_drift_quality", metric="missing_view/source") == 0.7

    calm = make_report()
    calm["features"] = {"bytecode_length": stat(0.01)}
    calm["predictions"], calm["quality"], calm["status"] = {}, {}, "ok"
    fire(calm, {"delivery": {"jsonl": None, "latest": str(latest)}})
    st = latest.stat()
    os.utime(latest, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a new mtime even on coarse clocks
    text = client.get("/metrics").text
    assert sample(text, "scathat_drift_psi", section="features", feature="bytecode_length") == 0.01
    assert sample(text, "scathat_drift_psi", section="features", feature="opcode_entropy") is None
    assert sample(text, "scathat_drift_status", package=PACKAGE["package_id"]) == 0.0
    assert sample(text, "scathat_alerts_total", severity="alert") == 0.0

    latest.write_text("{not json")  # a broken report clears the gauges, /metrics still answers
    response = client.get("/metrics")
    assert response.status_code == 200
    assert sample(response.text, "scathat_drift_status", package=PACKAGE["package_id"]) is None
    latest.unlink()
    text = client.get("/metrics").text
    assert sample(text, "scathat_drift_psi", section="features", feature="bytecode_length") is None
