"""Drift monitoring: reference profiles in packages, PSI and two-sample tests of an inference log against
them, the HTML/JSON report, exit codes (0 ok, 1 warning, 2 alert, 4 bad input) and the features the service
logs."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_detector

from training_pipeline import taxonomy
from training_pipeline.deploy.package import PROFILE_FILE, assemble, reference_profile, verify_package
from training_pipeline.evaluation.profile import build_profile, compiler_era, record_features
from training_pipeline.monitoring.cli import main
from training_pipeline.monitoring.drift import DriftConfig, continuous_drift, load_config, psi
from training_pipeline.monitoring.features import contract_features
from training_pipeline.risk import RiskTarget
from training_pipeline.scan.inputs import ScanInput, read_transactions

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
VAULTS = sorted((FIXTURES / "evm").glob("vault-*.hex"))  # one contract compiled by solc 0.4 .. 0.8
CLASSES = list(taxonomy.VULNERABILITY_CLASSES)
FEATURIZER = {"batch_size": 2, "max_length": 512}


def contracts(n: int, seed: int, *, era: str | None = None, doubled: bool = False) -> list[dict]:
    """Records drawn from one distribution: a random compiler era's build of the fixture contract, cut to a
    random length, with a source of random length; ``era``/``doubled`` shift it."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        path = next(p for p in VAULTS if era in p.stem) if era else VAULTS[rng.integers(len(VAULTS))]
        code = bytes.fromhex(path.read_text().strip().removeprefix("0x"))
        code = code[: int(len(code) * rng.uniform(0.4, 1.0))]
        if doubled:
            code += code
        version = path.stem.split("-")[1]
        source = f"pragma solidity ^{version};\n" + "// line\n" * int(rng.integers(20, 200))
        out.append(
            {
                "id": f"c{seed}-{i}",
                "bytecode": "0x" + code.hex(),
                "source_code": source,
                "compiler_version": version,
            }
        )
    return out


def predictions(n: int, seed: int, shifted: str | None = None) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        probs = {c: float(rng.beta(1.5, 8)) for c in CLASSES}
        if shifted:
            probs[shifted] = float(rng.beta(8, 2))
        out.append({"probs": probs, "risk": RiskTarget().vulnerability_risk(probs)})
    return out


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory):
    """A model package with a reference profile of 600 contracts and 400 validation predictions."""
    feats = [record_features(r) for r in contracts(600, seed=0)]
    profile = build_profile(feats, predictions(400, seed=0), metrics={"val/f1_macro": 0.5})
    meta = {"name": "scathat-bytecode_detector", "kind": "model", "model": "bytecode_detector"}
    out = tmp_path_factory.mktemp("packages")
    return assemble(meta, {"model": (tiny_detector(), FEATURIZER)}, out, archive=False, profile=profile)


def write_log(path: Path, records: list[dict], preds: list[dict], package_id: str, errors: int = 0) -> Path:
    """An inference log as the service writes it: one line per request over the last two days."""
    now = datetime.now(UTC)
    lines = []
    for i, (rec, pred) in enumerate(zip(records, preds, strict=True)):
        item = ScanInput(name=rec["id"], source_code=rec["source_code"], bytecode=rec["bytecode"])
        item.compiler = rec["compiler_version"]
        lines.append(
            {
                "request_id": f"r{i}",
                "time": (now - timedelta(hours=48 * (1 - i / len(records)))).isoformat(),
                "views": ["source", "bytecode"],
                "arm": "champion",
                "models": {"champion": {"package_id": package_id, "name": "m", "version": 1}},
                "features": contract_features(item),
                "probabilities": pred["probs"],
                "risk": pred["risk"],
                "status": 200,
                "error": None,
            }
        )
    lines += [
        {
            "request_id": f"e{i}",
            "time": now.isoformat(),
            "views": ["bytecode"],
            "status": 422,
            "error": "bad hex",
        }
        for i in range(errors)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + "{torn line")
    return path


def alerts_config(tmp_path: Path) -> Path:
    """Alert rules on the features and predictions only, delivered under tmp_path (never outputs/)."""
    path = tmp_path / "alerts.yaml"
    rules = [
        {"metric": "features.*.psi", "op": ">=", "threshold": 0.25, "severity": "alert"},
        {"metric": "predictions.score/*.psi", "op": ">=", "threshold": 0.25, "severity": "alert"},
    ]
    delivery = {"jsonl": str(tmp_path / "alerts.jsonl"), "latest": str(tmp_path / "latest.json")}
    path.write_text(json.dumps({"rules": rules, "delivery": delivery}))
    return path


def drift(tmp_path: Path, package, current: Path, *extra: str) -> tuple[int, dict]:
    out = tmp_path / "report"
    code = main(
        [
            "drift",
            "--package",
            str(package.path),
            "--current",
            str(current),
            "--out",
            str(out),
            *extra,
        ]
    )
    return code, json.loads((out / "drift.json").read_text()) if (out / "drift.json").exists() else {}


def test_a_log_from_the_reference_distribution_does_not_drift(tmp_path: Path, package, capsys) -> None:
    log = write_log(
        tmp_path / "inference.jsonl", contracts(300, seed=1), predictions(300, seed=1), package.id
    )
    code, report = drift(tmp_path, package, log, "--alerts-config", str(alerts_config(tmp_path)))
    assert code == 0, report["drifted"]
    assert report["status"] == "ok" and report["drifted"] == []
    assert report["package"] == {"name": package.name, "version": None, "package_id": package.id}
    assert report["n_reference"] == 600 and report["n_current"] == 300
    assert {"bytecode_length", "compiler_era", "source_lines", "post_shanghai_share"} <= set(
        report["features"]
    )
    length = report["features"]["bytecode_length"]
    assert length["kind"] == "continuous" and length["test"] == "ks" and length["psi"] < 0.1
    era = report["features"]["compiler_era"]
    assert era["kind"] == "categorical" and era["test"] == "chi2" and era["p_value"] > 0.001
    assert {f"score/{c}" for c in CLASSES} <= set(report["predictions"])
    assert set(report["predictions"]["predicted_share/reentrancy"]) >= {
        "reference",
        "current",
        "psi",
        "status",
    }
    assert report["quality"]["missing_view/transactions_csv"] == 1.0
    assert report["quality"]["unreadable_log_lines"] == 1  # the torn last line
    assert (tmp_path / "report" / "report.html").read_text().startswith("<!doctype html>")
    assert not (tmp_path / "alerts.jsonl").exists()  # no rule fired
    assert json.loads((tmp_path / "latest.json").read_text())["status"] == "ok"
    assert "drift ok" in capsys.readouterr().out


def test_shifted_inputs_and_scores_alert_and_are_named(tmp_path: Path, package) -> None:
    records = contracts(200, seed=2, era="0.8", doubled=True)
    log = write_log(
        tmp_path / "inference.jsonl",
        records,
        predictions(200, seed=2, shifted="reentrancy"),
        package.id,
        errors=3,
    )
    code, report = drift(tmp_path, package, log, "--alerts-config", str(alerts_config(tmp_path)))
    assert code == 2 and report["status"] == "alert"
    for name in ("bytecode_length", "compiler_era", "post_shanghai_share"):
        assert report["features"][name]["status"] == "alert", name
        assert name in report["drifted"]
    assert report["predictions"]["score/reentrancy"]["status"] == "alert"
    assert report["predictions"]["predicted_share/reentrancy"]["current"] > 0.9
    assert "score/arithmetic" not in report["drifted"]  # the unshifted classes stay quiet
    assert report["quality"]["unparsable"] == 3 and report["quality"]["error_rate"] == pytest.approx(
        3 / 203, abs=1e-4
    )
    html = (tmp_path / "report" / "report.html").read_text()
    assert "bytecode_length: PSI" not in html and "data:image/png;base64," in html  # plots, not text
    fired = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert {"features.bytecode_length.psi", "predictions.score/reentrancy.psi"} <= {a["path"] for a in fired}


def test_the_window_keeps_only_recent_requests(tmp_path: Path, package) -> None:
    log = write_log(
        tmp_path / "inference.jsonl", contracts(120, seed=3), predictions(120, seed=3), package.id
    )
    code, report = drift(tmp_path, package, log, "--window", "12h", "--no-alerts")
    assert report["window"]["length"] == "12:00:00"
    assert 25 <= report["n_current"] <= 35  # the last quarter of 48 hours
    assert code == 0, report["drifted"]  # 30 requests: PSI is noisy, the tests keep it from alerting


def test_a_contract_file_is_compared_on_inputs_only(tmp_path: Path, package) -> None:
    path = tmp_path / "contracts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in contracts(80, seed=4, era="0.4")))
    code, report = drift(tmp_path, package, path, "--no-alerts")
    assert code == 2 and "compiler_era" in report["drifted"]
    assert report["current_kind"] == "contracts" and report["n_current"] == 80
    assert report["predictions"]["score/reentrancy"]["note"].startswith("0 current values")
    assert any("no model outputs" in n for n in report["notes"])


@pytest.mark.parametrize(
    "case", ["missing_current", "not_a_package", "no_profile", "bad_setting", "bad_window", "bad_flag"]
)
def test_bad_input_is_one_error_line_and_exit_4(tmp_path: Path, package, capsys, case: str) -> None:
    log = write_log(tmp_path / "inference.jsonl", contracts(5, seed=5), predictions(5, seed=5), package.id)
    pkg, current, extra = str(package.path), str(log), []
    if case == "missing_current":
        current = str(tmp_path / "nope.jsonl")
    elif case == "not_a_package":
        (tmp_path / "empty").mkdir()
        pkg = str(tmp_path / "empty")
    elif case == "no_profile":
        meta = {"name": "scathat-bytecode_detector", "kind": "model", "model": "bytecode_detector"}
        pkg = str(
            assemble(meta, {"model": (tiny_detector(), FEATURIZER)}, tmp_path / "p", archive=False).path
        )
    elif case == "bad_setting":
        extra = ["--set", "psi.alrt=0.3"]
    elif case == "bad_flag":
        extra = ["--windw", "7d"]
    else:
        extra = ["--window", "seven days"]
    code = main(
        ["drift", "--package", pkg, "--current", current, "--out", str(tmp_path / "r"), "--no-alerts", *extra]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 4
    assert len(err) == 1 and err[0].startswith("error: ")
    expected = {
        "missing_current": "nope.jsonl",
        "not_a_package": "not a model package",
        "no_profile": "no reference profile in package",
        "bad_setting": "alrt",
        "bad_window": "seven days",
        "bad_flag": "--windw",
    }[case]
    assert expected in err[0]
    assert not (tmp_path / "r" / "drift.json").exists()


def test_the_profile_is_part_of_the_verified_package(package) -> None:
    pkg = verify_package(package.path)
    manifest = json.loads((pkg.path / "MANIFEST.json").read_text())
    assert PROFILE_FILE in manifest["files"]
    profile = json.loads((pkg.path / PROFILE_FILE).read_text())
    length = profile["features"]["bytecode_length"]
    assert length["binning"] == "quantile" and len(length["counts"]) == len(length["edges"]) + 1
    assert sum(length["counts"]) == 600 and len(length["sample"]) == 600
    assert profile["features"]["compiler_era"]["counts"].keys() == {"0.4", "0.5", "0.6", "0.7", "0.8"}
    assert abs(sum(profile["predicted_share"].values()) - 1) < 1e-9
    assert profile["metrics"] == {"val/f1_macro": 0.5}


def test_a_failing_profile_build_is_one_warning_and_no_profile(tmp_path: Path, caplog) -> None:
    def broken(**_):
        raise FileNotFoundError("data/corpus: no such folder")

    with caplog.at_level(logging.WARNING):
        assert reference_profile(tmp_path, broken) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path}: packaged without a reference profile (FileNotFoundError: data/corpus: no such folder)"
    ]


def test_features_of_inputs() -> None:
    code = VAULTS[-1].read_text()  # solc 0.8.26: PUSH0
    feats = contract_features(ScanInput(name="x", bytecode=code, source_code="pragma solidity >=0.8.2;\n"))
    assert feats["compiler_era"] == "0.8" and feats["source_lines"] == 2
    assert 0 < feats["post_shanghai_share"] < 0.2
    assert abs(sum(v for k, v in feats.items() if k.startswith("opcode_share/")) - 1) < 1e-4
    old = contract_features({"bytecode": VAULTS[0].read_text()})
    assert old["post_shanghai_share"] == 0 and "compiler_era" not in old and "source_lines" not in old
    assert compiler_era("v0.5.17+commit.d19bba13") == "0.5"
    tx = contract_features(read_transactions(FIXTURES / "tx_csv" / "transactions.csv"))
    assert tx["tx_count"] >= 1 and 0 <= tx["tx_failed_share"] <= 1 and "tx_mean_log_value" in tx
    assert "bytecode_length" not in tx


def test_psi_and_ks_on_stated_bins() -> None:
    assert psi([10, 10, 10], [10, 10, 10]) == 0
    assert psi([50, 50], [90, 10]) == pytest.approx(0.4 * np.log(1.8) - 0.4 * np.log(0.2), rel=1e-6)
    cfg = load_config()
    assert isinstance(cfg, DriftConfig) and cfg.psi.warning == 0.1 and cfg.psi.alert == 0.25
    ref = build_profile([{"bytecode_length": float(x)} for x in range(1000)])["features"]["bytecode_length"]
    same = continuous_drift(ref, [float(x) + 0.5 for x in range(0, 1000, 7)], cfg)
    moved = continuous_drift(ref, [float(x) + 400 for x in range(0, 1000, 7)], cfg)
    assert same["status"] == "ok" and moved["status"] == "alert" and moved["p_value"] < 1e-6


class _Scanner:
    models = {"package_id": "p-1", "name": "m", "version": 1}

    def scan(self, items: list) -> list[dict]:
        return [
            {"input": it.name, "risk": 0.2, "risk_level": "low", "vulnerabilities": {"reentrancy": 0.2}}
            for it in items
        ]


def _service(tmp_path: Path):
    from fastapi.testclient import TestClient

    from training_pipeline.serve.app import create_app
    from training_pipeline.serve.config import load_settings

    s = load_settings(
        [f"inference_log.path={tmp_path / 'inference.jsonl'}", "champion=a", "auth.enabled=false"]
    )
    return TestClient(create_app(s, loader=lambda ref: _Scanner()))


def test_the_service_logs_input_features_and_never_fails_on_them(tmp_path: Path, monkeypatch) -> None:
    client = _service(tmp_path)
    assert client.post("/v1/scan", json={"bytecode": VAULTS[-1].read_text()}).status_code == 200
    monkeypatch.setattr("training_pipeline.monitoring.features.bytecode_features", lambda code: 1 / 0)
    assert client.post("/v1/scan", json={"bytecode": VAULTS[0].read_text()}).status_code == 200
    first, second = (json.loads(line) for line in (tmp_path / "inference.jsonl").read_text().splitlines())
    assert first["features"]["bytecode_length"] > 100 and first["features"]["post_shanghai_share"] > 0
    assert "inputs" not in first  # include_source stays off: features are numbers, not the input
    assert second["status"] == 200 and second["features"] == {"error": "division by zero"}


def test_packaging_a_training_run_writes_its_reference_profile(cfg_train, tmp_path: Path) -> None:
    """The profile of a real (tiny) run: its data re-created from config_resolved.yaml, the packaged model
    run on the validation split."""
    from omegaconf import open_dict

    from training_pipeline.deploy.package import package_model_run
    from training_pipeline.tasks import train

    with open_dict(cfg_train):
        cfg_train.trainer.max_epochs = 1
    train(cfg_train)
    pkg = package_model_run(Path(cfg_train.paths.output_dir), tmp_path / "packages", archive=False)
    profile = json.loads((pkg.path / PROFILE_FILE).read_text())
    assert profile["kind"] == "model" and profile["data_version"] == pkg.data_version
    assert profile["n_reference"] > profile["n_predictions"] > 0  # train + val records; val predictions
    assert {"bytecode_length", "opcode_share/push", "compiler_era"} <= set(profile["features"])
    assert set(profile["scores"]) == set(CLASSES) and profile["risk"]["n"] == profile["n_predictions"]
    assert profile["metrics"] == pkg.metrics and "view_risk" in profile["risk_source"]
    assert verify_package(pkg.path).id == pkg.id


def test_a_pipeline_compares_each_view_on_all_requests_and_fused_scores_on_full_ones() -> None:
    from training_pipeline.evaluation.profile import continuous_histogram
    from training_pipeline.monitoring.drift import Current, compare

    rng = np.random.default_rng(0)
    ref_scores = rng.beta(2, 5, 500)
    profile = {
        "features": {},
        "scores": {"reentrancy": continuous_histogram(rng.beta(5, 2, 500))},  # fused, every view present
        "views": ["bytecode", "behavior"],
        "view_scores": {"bytecode": {"reentrancy": continuous_histogram(ref_scores)}},
    }
    bytecode_only = [  # what a bytecode-only service logs: the bytecode model's own scores match
        {"probs": {"reentrancy": 0.1}, "risk": 0.2, "view_probs": {"bytecode": {"reentrancy": float(s)}}}
        for s in rng.beta(2, 5, 300)
    ]
    cur = Current("log", "inference_log", predictions=bytecode_only)
    report = compare(profile, cur, load_config())
    assert report["predictions"]["score/bytecode/reentrancy"]["status"] == "ok"
    assert report["predictions"]["score/reentrancy"]["status"] == "ok"  # no full request: no verdict
    assert any("fused scores compared on the 0 of 300" in n for n in cur.notes)
    shifted = [{**p, "view_probs": {"bytecode": {"reentrancy": 0.95}}} for p in bytecode_only]
    drifted = compare(profile, Current("log", "inference_log", predictions=shifted), load_config())
    assert drifted["predictions"]["score/bytecode/reentrancy"]["status"] == "alert"


def test_holm_keeps_one_chance_hit_among_many_tests_from_alerting() -> None:
    from training_pipeline.monitoring.drift import adjust_p_values

    def entry(p: float) -> dict:
        return {"psi": 0.4, "p_value": p, "status": "alert"}

    many = {f"f{i}": entry(0.5) for i in range(39)} | {"lucky": entry(0.004)}
    adjust_p_values(many, load_config())
    assert many["lucky"]["p_adjusted"] == pytest.approx(0.16) and many["lucky"]["status"] == "ok"
    real = {"shifted": entry(1e-9), "other": entry(0.5)}
    adjust_p_values(real, load_config())
    assert real["shifted"]["status"] == "alert" and real["shifted"]["p_adjusted"] == pytest.approx(2e-9)
    kept = {"lucky": entry(0.004), "other": entry(0.5)}
    adjust_p_values(kept, load_config(overrides=["test.correction=none"]))
    assert kept["lucky"]["status"] == "alert" and "p_adjusted" not in kept["lucky"]


def test_multi_label_shares_are_of_flagged_classes_not_the_argmax() -> None:
    from training_pipeline.monitoring.drift import Current, compare

    def pred(flagged: list[str]) -> dict:
        # reentrancy is never the likeliest class, so an argmax share would always be 0 for it
        return {"probs": {"reentrancy": 0.4, "arithmetic": 0.6}, "risk": 0.5, "flagged": flagged}

    reference = [pred(["reentrancy", "arithmetic"]) for _ in range(100)] + [pred([]) for _ in range(300)]
    profile = build_profile([], reference)
    assert profile["predicted_share_kind"] == "flagged"
    assert profile["predicted_share"] == {"reentrancy": 0.25, "arithmetic": 0.25}
    same = [pred(["reentrancy"]) for _ in range(50)] + [pred([]) for _ in range(150)]
    report = compare(profile, Current("log", "inference_log", predictions=same), load_config())
    assert report["predictions"]["predicted_share/reentrancy"]["status"] == "ok"
    doubled = [pred(["reentrancy"]) for _ in range(100)] + [pred([]) for _ in range(100)]
    report = compare(profile, Current("log", "inference_log", predictions=doubled), load_config())
    assert report["predictions"]["predicted_share/reentrancy"]["status"] == "alert"
    histories = build_profile([], [{"probs": {"normal": 0.9, "rug_pull": 0.1}}] * 10)
    assert histories["predicted_share_kind"] == "top" and histories["predicted_share"]["normal"] == 1.0
