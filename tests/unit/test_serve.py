"""The scan service over a tiny bytecode-detector checkpoint (cheap fake scanners where only routing is under
test): the CLI's report, A/B and shadow routing, bad requests, keys, reload, the inference log, metrics."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import yaml
from conftest import tiny_detector
from fastapi.testclient import TestClient

from training_pipeline.deploy import audit
from training_pipeline.errors import ConfigError, DataError, UserError
from training_pipeline.scan import Scanner, read_inputs
from training_pipeline.scan.inputs import read_texts
from training_pipeline.serve.__main__ import main as serve_main
from training_pipeline.serve.app import create_app
from training_pipeline.serve.auth import KeyStore, keys_from_env
from training_pipeline.serve.config import SERVE_YAML, load_settings
from training_pipeline.serve.inference_log import InferenceLog
from training_pipeline.serve.log_summary import read_log, summarize
from training_pipeline.serve.routing import ab_arm, input_hash

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HEX_FILE = FIXTURES / "evm" / "vault-0.8.26.hex"
HEX = HEX_FILE.read_text().strip()
KEYS = {
    "scanner": {"key": "scan-key-0123456789", "role": "scan"},
    "ops": {"key": "admin-key-9876543210", "role": "admin"},
}
SCAN = {"Authorization": f"Bearer {KEYS['scanner']['key']}"}
ADMIN = {"X-API-Key": KEYS["ops"]["key"]}
GOOD_SOURCE = (
    "pragma solidity ^0.8.0;\n"
    "contract Kept { uint256 secretMarker42; function f() public { secretMarker42 = 1; } }\n"
)
BROKEN_SOURCE = "pragma solidity ^0.8.0;\ncontract Broken {\n    function f( public {\n}\n"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny bytecode detector saved as a Lightning checkpoint (what a training run writes)."""
    model = tiny_detector()
    path = tmp_path_factory.mktemp("serve_model") / "tiny.ckpt"
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def scanner(checkpoint: Path) -> Scanner:
    return Scanner.from_checkpoint(checkpoint)


class FakeScanner:
    """A scanner of fixed answers: routing tests need thousands of requests, not a model."""

    def __init__(self, name: str, version: int, risk: float, delay: float = 0.0, gate=None) -> None:
        self.models = {"package_id": f"{name}-{version}", "name": name, "version": version}
        self.risk, self.delay, self.gate, self.calls = risk, delay, gate, 0

    def scan(self, items: list) -> list[dict[str, Any]]:
        self.calls += 1
        if self.gate is not None and items[0].name != "readiness-probe":
            self.gate.wait(10)
        time.sleep(self.delay)
        return [
            {
                "input": it.name,
                "risk": self.risk,
                "risk_level": "low",
                "vulnerabilities": {"reentrancy": self.risk},
            }
            for it in items
        ]


def settings(tmp_path: Path, *overrides: str, keys: bool = True):
    args = [f"inference_log.path={tmp_path / 'log' / 'inference.jsonl'}", *overrides]
    if keys:
        path = tmp_path / "keys.yaml"
        path.write_text(yaml.safe_dump(KEYS))
        args.append(f"auth.keys_file={path}")
    return load_settings(args)


def fakes(**scanners: FakeScanner):
    return lambda ref: scanners[ref]


def log_lines(tmp_path: Path) -> list[dict]:
    path = tmp_path / "log" / "inference.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def real_client(tmp_path: Path, checkpoint: Path, scanner: Scanner) -> TestClient:
    return TestClient(create_app(settings(tmp_path, f"champion={checkpoint}")))  # the default loader


def test_scan_gives_the_cli_report(real_client: TestClient, scanner: Scanner) -> None:
    response = real_client.post("/v1/scan", json={"bytecode": HEX}, headers=SCAN)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["arm"] == "champion" and re.fullmatch(r"[0-9a-f]{32}", body["request_id"])
    assert body["models"] == json.loads(json.dumps(scanner.models))
    (expected,) = scanner.scan([read_texts(bytecode=HEX)])
    assert body["report"] == json.loads(json.dumps(expected))
    (cli,) = scanner.scan(read_inputs([str(HEX_FILE)]))  # the CLI's report of the same contract
    assert (
        body["report"]["vulnerabilities"] == cli["vulnerabilities"] and body["report"]["risk"] == cli["risk"]
    )
    assert {k: v for k, v in body["report"].items() if k != "input"} == {
        k: v for k, v in json.loads(json.dumps(cli)).items() if k != "input"
    }
    upload = real_client.post("/v1/scan", files={"bytecode": ("vault.hex", HEX.encode())}, headers=SCAN)
    assert upload.status_code == 200, upload.text
    assert upload.json()["report"]["input"] == "vault.hex"
    assert upload.json()["report"]["vulnerabilities"] == cli["vulnerabilities"]


def test_ab_routing_is_a_stable_share_of_contracts(tmp_path: Path) -> None:
    champion, challenger = FakeScanner("m", 1, 0.1), FakeScanner("m", 2, 0.9)
    s = settings(
        tmp_path, "champion=a", "challenger=b", "routing.mode=ab", "routing.challenger_share=0.3", keys=False
    )
    client = TestClient(create_app(s, loader=fakes(a=champion, b=challenger)))
    arms = []
    for i in range(1000):
        body = client.post("/v1/scan", json={"bytecode": f"0x6080{i:06x}00"}).json()
        assert body["report"]["risk"] == (0.9 if body["arm"] == "challenger" else 0.1)
        arms.append(body["arm"])
    share = arms.count("challenger") / len(arms)
    assert 0.25 <= share <= 0.35, share
    again = [client.post("/v1/scan", json={"bytecode": f"0x6080{i:06x}00"}).json()["arm"] for i in range(50)]
    assert again == arms[:50]
    lines = log_lines(tmp_path)
    assert len(lines) == 1050 and {line["arm"] for line in lines} == {"champion", "challenger"}
    assert all(set(line["models"]) == {line["arm"]} for line in lines)
    watched = summarize(lines[:1000])  # what a canary rollout watches, per arm
    assert watched["challenger"]["share"] == pytest.approx(share, abs=1e-3)
    assert watched["challenger"]["models"] == {"m/2": arms.count("challenger")}
    assert watched["challenger"]["mean_risk"] == 0.9 and watched["champion"]["mean_risk"] == 0.1
    assert ab_arm(input_hash({"bytecode": "0xAB"}), 0.3) == ab_arm(input_hash({"bytecode": "ab"}), 0.3)
    assert ab_arm("f" * 64, 0.0) == "champion" and ab_arm("0" * 64, 1.0) == "challenger"


def test_shadow_returns_the_champion_and_logs_both(tmp_path: Path) -> None:
    champion, challenger = FakeScanner("m", 1, 0.1), FakeScanner("m", 2, 0.9)
    s = settings(tmp_path, "champion=a", "challenger=b", "routing.mode=shadow", keys=False)
    client = TestClient(create_app(s, loader=fakes(a=champion, b=challenger)))
    for i in range(5):
        body = client.post("/v1/scan", json={"bytecode": f"0x60{i:02x}"}).json()
        assert body["arm"] == "champion" and body["report"]["risk"] == 0.1
        assert body["models"]["version"] == 1
    lines = log_lines(tmp_path)
    assert len(lines) == 5
    for line in lines:
        assert (
            line["arm"] == "champion" and line["risk"] == 0.1 and line["probabilities"] == {"reentrancy": 0.1}
        )
        assert line["shadow"]["risk"] == 0.9 and line["shadow"]["probabilities"] == {"reentrancy": 0.9}
        assert line["models"]["champion"]["version"] == 1 and line["models"]["challenger"]["version"] == 2
        assert line["error"] is None and line["latency_ms"] >= 0
    assert challenger.calls == 5 + 1  # every request, plus the readiness probe
    watched = summarize(read_log(tmp_path / "log" / "inference.jsonl"))
    assert (
        watched["challenger (shadow)"]["requests"] == 5 and watched["challenger (shadow)"]["mean_risk"] == 0.9
    )
    assert watched["champion"]["share"] == 1.0 and watched["champion"]["error_rate"] == 0.0


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        ({}, SCAN, 422, "nothing to scan"),
        ({"bytecode": "0x60zz80"}, SCAN, 422, "invalid bytecode hex"),
        ({"bytecode": "0x" + "60" * 3000}, SCAN, 413, "limits.max_body_bytes"),
        ({"source": "x" * 2100}, SCAN, 413, "limits.max_source_chars"),
        ({"source": BROKEN_SOURCE}, SCAN, 422, "does not compile with solc"),
        ({"source": "contract A {}"}, SCAN, 422, "no 'pragma solidity'"),
        ({"transactions_csv": "foo,bar\n1,2\n"}, SCAN, 422, "missing column"),
        ({"transactions_csv": "to\n" + "0xab\n" * 30}, SCAN, 413, "limits.max_csv_rows"),
        ({"bytecode": HEX, "bytcode": "0x00"}, SCAN, 422, "unknown field(s) bytcode"),
        ({"bytecode": 42}, SCAN, 422, "expected a string"),
        ({"bytecode": HEX}, {"Authorization": "Bearer nope"}, 401, "unknown API key"),
        ({"bytecode": HEX}, {}, 401, "missing or unknown API key"),
    ],
)
def test_a_bad_request_is_a_4xx_and_the_next_good_one_succeeds(
    tmp_path: Path, scanner: Scanner, body: dict, headers: dict, status: int, message: str
) -> None:
    s = settings(
        tmp_path,
        "champion=tiny",
        "limits.max_body_bytes=5000",
        "limits.max_source_chars=2000",
        "limits.max_csv_rows=20",
    )
    client = TestClient(create_app(s, loader=lambda ref: scanner))
    response = client.post("/v1/scan", json=body, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error and "\n" not in error, error
    assert KEYS["scanner"]["key"] not in error
    good = client.post("/v1/scan", json={"bytecode": HEX}, headers=SCAN)
    assert good.status_code == 200 and good.json()["report"]["risk"] is not None
    (line, _) = log_lines(tmp_path)
    assert line["status"] == status and message in line["error"]


def test_roles_timeouts_and_views_the_model_cannot_read(tmp_path: Path, scanner: Scanner) -> None:
    s = settings(tmp_path, "champion=tiny")
    client = TestClient(create_app(s, loader=lambda ref: scanner))
    forbidden = client.post("/v1/admin/reload", headers=SCAN)
    assert forbidden.status_code == 403 and "role scan" in forbidden.json()["error"]
    csv_only = client.post(
        "/v1/scan",
        json={"transactions_csv": (FIXTURES / "tx_csv" / "transactions.csv").read_text()},
        headers=SCAN,
    )  # a bytecode detector reads no transaction history
    assert csv_only.status_code == 422 and "no input has a view" in csv_only.json()["error"]
    assert client.post("/v1/scan", json={"bytecode": HEX}, headers=SCAN).status_code == 200
    slow = TestClient(
        create_app(
            settings(tmp_path / "slow", "champion=a", "limits.timeout_s=0.2", keys=False),
            loader=fakes(a=FakeScanner("m", 1, 0.1, delay=0.5)),
        )
    )
    timed_out = slow.post("/v1/scan", json={"bytecode": HEX})
    assert timed_out.status_code == 504 and "limits.timeout_s" in timed_out.json()["error"]


def test_admin_reload_swaps_models_and_keeps_in_flight_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCATHAT_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    gate = threading.Event()
    loaded = [FakeScanner("m", 1, 0.1, gate=gate), FakeScanner("m", 2, 0.2)]
    versions = iter(loaded)
    app = create_app(settings(tmp_path, "champion=x"), loader=lambda ref: next(versions, None), load=False)
    client = TestClient(app)
    assert client.get("/readyz").status_code == 503
    assert client.post("/v1/scan", json={"bytecode": HEX}, headers=SCAN).status_code == 503
    assert client.post("/v1/admin/reload", headers=ADMIN).json()["models"]["champion"]["version"] == 1
    assert client.get("/readyz").status_code == 200

    in_flight: dict = {}
    thread = threading.Thread(
        target=lambda: in_flight.update(client.post("/v1/scan", json={"bytecode": HEX}, headers=SCAN).json())
    )
    thread.start()
    time.sleep(0.3)  # the request holds version 1 and waits at the gate
    reload = client.post("/v1/admin/reload", headers=ADMIN)
    assert reload.status_code == 200 and reload.json()["models"]["champion"]["version"] == 2
    gate.set()
    thread.join(10)
    assert in_flight["models"]["version"] == 1 and in_flight["report"]["risk"] == 0.1
    after = client.post("/v1/scan", json={"bytecode": HEX}, headers=SCAN).json()
    assert after["models"]["version"] == 2 and after["report"]["risk"] == 0.2
    assert client.get("/version").json()["models"]["champion"]["version"] == 2
    failed = client.post("/v1/admin/reload", headers=ADMIN)  # the loader has nothing more
    assert failed.status_code == 503 and "no scanner" in failed.json()["error"]
    assert client.post("/v1/scan", json={"bytecode": HEX}, headers=SCAN).json()["models"]["version"] == 2
    reloads = [e for e in audit.read(tmp_path / "audit.jsonl") if e["action"] == "reload"]
    assert [e["version"] for e in reloads] == [1, 2]  # the failed reload changed nothing, so no line
    assert reloads[-1]["user"] == "ops" and audit.verify(tmp_path / "audit.jsonl")[0]


def test_a_failing_loader_keeps_serving_and_names_the_cause(tmp_path: Path) -> None:
    calls = []

    def loader(ref: str):
        calls.append(ref)
        if len(calls) > 2:  # the first load and its probe pass, the reload fails
            raise DataError(f"{ref}: sha256 mismatch in weights.safetensors")
        return FakeScanner("m", 1, 0.1)

    client = TestClient(create_app(settings(tmp_path, "champion=models:/m@champion"), loader=loader))
    assert client.post("/v1/admin/reload", headers=ADMIN).status_code == 200
    failed = client.post("/v1/admin/reload", headers=ADMIN)
    assert failed.status_code == 503 and "sha256 mismatch" in failed.json()["error"]
    assert "still serving" in failed.json()["error"] and client.get("/readyz").status_code == 200
    with pytest.raises(UserError, match="champion models:/m@champion: .*sha256 mismatch"):
        create_app(settings(tmp_path, "champion=models:/m@champion"), loader=loader)


def test_inference_log_rotates_and_holds_no_source_by_default(tmp_path: Path) -> None:
    s = settings(
        tmp_path, "champion=a", "inference_log.max_bytes=3000", "inference_log.backups=2", keys=False
    )
    client = TestClient(create_app(s, loader=fakes(a=FakeScanner("m", 1, 0.1))))
    assert client.post("/v1/scan", json={"source": GOOD_SOURCE}).status_code == 200
    for i in range(40):
        assert client.post("/v1/scan", json={"bytecode": f"0x60{i:04x}"}).status_code == 200
    folder = tmp_path / "log"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["inference.jsonl", "inference.jsonl.1", "inference.jsonl.2"]
    lines = []
    for path in folder.iterdir():
        assert path.stat().st_size <= 3000
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    assert 0 < len(lines) < 41  # the oldest lines rotated away
    for line in lines:
        assert {
            "request_id",
            "time",
            "input_hash",
            "views",
            "models",
            "risk",
            "risk_level",
            "latency_ms",
        } <= set(line)
        assert line["time"].endswith("+00:00") and "inputs" not in line
    client = TestClient(
        create_app(
            settings(tmp_path / "src", "champion=a", keys=False), loader=fakes(a=FakeScanner("m", 1, 0.1))
        )
    )
    client.post("/v1/scan", json={"source": GOOD_SOURCE})
    (line,) = log_lines(tmp_path / "src")
    assert line["views"] == ["source"] and "secretMarker42" not in json.dumps(line)
    kept = settings(tmp_path / "kept", "champion=a", "inference_log.include_source=true", keys=False)
    TestClient(create_app(kept, loader=fakes(a=FakeScanner("m", 1, 0.1)))).post(
        "/v1/scan", json={"source": GOOD_SOURCE}
    )
    (line,) = log_lines(tmp_path / "kept")
    assert line["inputs"]["source"] == GOOD_SOURCE


def test_inference_log_is_thread_safe(tmp_path: Path) -> None:
    log = InferenceLog(tmp_path / "x.jsonl", max_bytes=10_000_000)
    threads = [
        threading.Thread(
            target=lambda t=t: [log.write({"t": t, "i": i, "pad": "x" * 200}) for i in range(200)]
        )
        for t in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = [json.loads(line) for line in (tmp_path / "x.jsonl").read_text().splitlines()]
    assert len(rows) == 1600 and len({(r["t"], r["i"]) for r in rows}) == 1600


def test_metrics_health_and_version(real_client: TestClient) -> None:
    assert real_client.get("/healthz").json() == {"status": "alive"}
    assert real_client.get("/readyz").status_code == 200
    version = real_client.get("/version").json()
    assert version["package"] == "training_pipeline" and version["version"]
    assert version["models"]["champion"]["path"]
    real_client.post("/v1/scan", json={"bytecode": HEX}, headers=SCAN)
    real_client.post("/v1/scan", json={"bytecode": HEX}, headers=SCAN)
    real_client.post("/v1/scan", json={}, headers=SCAN)
    real_client.post("/v1/scan", json={"bytecode": HEX})
    text = real_client.get("/metrics").text
    assert 'scathat_requests_total{endpoint="/v1/scan",method="POST",status="200"} 2.0' in text
    assert 'scathat_requests_total{endpoint="/v1/scan",method="POST",status="422"} 1.0' in text
    assert 'scathat_errors_total{kind="no_view"} 1.0' in text
    assert 'scathat_errors_total{kind="unauthorized"} 1.0' in text
    assert re.search(r'scathat_risk_score_count\{arm="champion",model="[^"]+"\} 2\.0', text)
    assert 'scathat_request_latency_seconds_count{endpoint="/v1/scan"} 4.0' in text
    assert "scathat_model_version{" in text


def test_keys_and_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    keys = keys_from_env("ci:abc:def:scan, ops:s3cret:admin")
    assert [(k.name, k.role) for k in keys] == [("ci", "scan"), ("ops", "admin")]
    store = KeyStore(keys)
    assert store.identify("abc:def").name == "ci" and store.identify("s3cret").name == "ops"
    assert store.identify("s3cre") is None and store.identify(None) is None
    with pytest.raises(ConfigError, match="role 'root'"):
        keys_from_env("x:y:root")
    with pytest.raises(ConfigError, match="not name:key:role"):
        keys_from_env("legacy:plain")
    monkeypatch.setenv("SCATHAT_API_KEYS", "env:env-key-1:scan")
    client = TestClient(
        create_app(settings(tmp_path, "champion=a", keys=False), loader=fakes(a=FakeScanner("m", 1, 0.1)))
    )
    assert client.post("/v1/scan", json={"bytecode": HEX}).status_code == 401
    assert (
        client.post("/v1/scan", json={"bytecode": HEX}, headers={"X-API-Key": "env-key-1"}).status_code == 200
    )
    monkeypatch.delenv("SCATHAT_API_KEYS")
    with pytest.raises(ConfigError, match="no API keys"):
        create_app(settings(tmp_path, "champion=a", "auth.enabled=true", keys=False), loader=fakes())
    assert load_settings(path=SERVE_YAML).routing.mode == "off" and load_settings().port == 8000
    with pytest.raises(ConfigError, match="routing.mod"):
        load_settings(["routing.mod=ab"])
    with pytest.raises(ConfigError, match="challenger_share"):
        load_settings(["routing.challenger_share=1.5"])
    assert serve_main(["limits.timeout=3"]) == 2
    assert serve_main([f"champion={tmp_path / 'missing.ckpt'}", "verify=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)
    assert "limits.timeout" in err[0] and "missing.ckpt" in err[1]
