"""The model registry on a throwaway MLflow store: register once per package id, champion/challenger aliases
with rollback, resolve with the integrity check, the audit trail, and the deploy CLI's exit codes.

One SQLite store per module (creating it takes seconds); each test uses its own registered-model name and
its own audit log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from training_pipeline.deploy import audit, registry
from training_pipeline.deploy.cli import main
from training_pipeline.deploy.package import PIPELINE_NAME, Package, verify_package, write_manifest
from training_pipeline.errors import UserError


@pytest.fixture(scope="module", autouse=True)
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.setenv("PROJECT_ROOT", str(root))  # the download cache, should anything reach it
        yield root


@pytest.fixture(autouse=True)
def audit_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "audit.jsonl"
    monkeypatch.setenv(audit.ENV_LOG, str(path))
    return path


def fake_package(directory: Path, name: str, f1: float = 0.8) -> Package:
    """A package as package.py writes one, without a network: package.json, one file, the manifest."""
    directory.mkdir(parents=True)
    meta = {
        "name": name,
        "kind": "pipeline" if name == PIPELINE_NAME else "model",
        "model": name.removeprefix("scathat-"),
        "data_version": "sha256:" + "ab" * 32,
        "git_commit": "c0ffee",
        "metrics": {
            "optimized_metric": "val/f1_macro",
            "value": f1,
            "test": {"test/f1_macro": f1 - 0.05, "test/auroc": 0.9, "test/name": "not a number"},
        },
    }
    if meta["kind"] == "pipeline":
        meta["metrics"] = {
            "comparison": [
                {"method": "aggregator", "views": "all views", "auroc": 0.7, "f1": 0.5},
                {"method": "guarded (behavior)", "views": "all views", "auroc": 0.75, "f1": f1},
            ],
            "guard": {"chosen": "behavior"},
        }
    (directory / "package.json").write_text(json.dumps(meta))
    (directory / "weights.bin").write_bytes(f"{name} {f1}".encode())  # same arguments, same package id
    write_manifest(directory)
    return verify_package(directory)


def actions(path: Path) -> list[tuple[str, str, int]]:
    return [(e["action"], e["model"], e["version"]) for e in audit.read(path)]


def test_register_once_per_package_id(tmp_path: Path, audit_log: Path) -> None:
    pkg = fake_package(tmp_path / "p", "scathat-reg")
    assert registry.register_package(pkg) == (1, True)
    assert registry.register(pkg) == 1  # same id: the existing version, no duplicate
    assert registry.register(tmp_path / "p") == 1
    (only,) = registry.list_versions("scathat-reg")
    assert only["package_id"] == pkg.id and only["data_version"] == pkg.data_version
    info = registry.show("scathat-reg", version=1)
    assert info["tags"]["git_commit"] == "c0ffee"
    assert info["metrics"] == {"val/f1_macro": 0.8, "test/auroc": 0.9, "test/f1_macro": pytest.approx(0.75)}
    assert verify_package(registry.resolve("models:/scathat-reg/1")[0]).id == pkg.id
    assert actions(audit_log) == [("register", "scathat-reg", 1)]


def test_pipeline_headline_is_the_guard_choice() -> None:
    meta = {
        "kind": "pipeline",
        "metrics": {
            "comparison": [
                {"method": "aggregator", "views": "without bytecode", "auroc": 0.1},
                {"method": "aggregator", "views": "all views (with static analysis)", "auroc": 0.6},
                {"method": "guarded (behavior)", "views": "all views", "auroc": 0.7, "n": 59},
            ],
            "guard": {"chosen": "aggregator"},
        },
    }
    assert registry.headline_metrics(meta) == {"auroc": 0.6}
    meta["metrics"]["guard"]["chosen"] = "behavior"
    assert registry.headline_metrics(meta) == {"auroc": 0.7}


def test_promote_and_rollback(tmp_path: Path, audit_log: Path) -> None:
    name = "scathat-flow"
    v1 = registry.register(fake_package(tmp_path / "a", name, 0.8))
    v2 = registry.register(fake_package(tmp_path / "b", name, 0.9))
    assert (v1, v2) == (1, 2)
    registry.promote(name, v1, "champion", reason="first")
    registry.promote(name, v2, "challenger")
    info = registry.promote(name, v2, "champion", reason="better")
    assert info["aliases"] == ["champion"]  # the challenger alias left the new champion
    assert registry.show(name)["champion_history"] == [1]

    back = registry.rollback(name, reason="false positives")
    assert back["version"] == 1 and back["aliases"] == ["champion"]
    assert registry.show(name, alias="champion")["version"] == 1
    with pytest.raises(UserError, match="no previous champion.*champion is version 1"):
        registry.rollback(name)
    assert actions(audit_log) == [
        ("register", name, 1),
        ("register", name, 2),
        ("promote", name, 1),
        ("promote", name, 2),
        ("promote", name, 2),
        ("rollback", name, 1),
    ]
    entries = audit.read(audit_log)
    assert entries[-1]["reason"] == "false positives" and entries[-1]["details"]["previous"] == 2
    assert audit.verify(audit_log)[0]
    with pytest.raises(UserError, match="alias 'prod'"):
        registry.promote(name, 1, "prod")


def test_resolve_champion(tmp_path: Path) -> None:
    pkg = fake_package(tmp_path / "p", PIPELINE_NAME)
    version = registry.register(pkg)
    registry.promote(PIPELINE_NAME, version, "champion")
    path, info = registry.resolve(f"models:/{PIPELINE_NAME}@champion")
    assert verify_package(path).id == pkg.id == info["package_id"]
    assert path != pkg.path  # the registry's copy, not the original
    assert info["name"] == PIPELINE_NAME and info["version"] == version and info["alias"] == "champion"
    assert registry.resolve(str(version))[1]["package_id"] == pkg.id  # a bare number: scathat-pipeline
    assert registry.DEFAULT_MODEL == PIPELINE_NAME


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("models:/scathat-nothing@champion", "scathat-nothing: no such registered model"),
        ("models:/scathat-unknowns/7", "no version 7 \\(versions: 1\\)"),
        ("models:/scathat-unknowns@challenger", "no alias 'challenger' \\(aliases: none set\\)"),
        ("scathat-unknowns:1", "not a model reference"),
    ],
)
def test_resolve_names_what_is_unknown(tmp_path: Path, ref: str, message: str) -> None:
    registry.register(fake_package(tmp_path / "p", "scathat-unknowns"))
    with pytest.raises(UserError, match=message):
        registry.resolve(ref)


def test_altered_package_is_refused(tmp_path: Path) -> None:
    pkg = fake_package(tmp_path / "p", "scathat-altered")
    registry.register(pkg)
    stored, _ = registry.resolve("models:/scathat-altered/1")
    (stored / "weights.bin").write_bytes(b"tampered")
    with pytest.raises(UserError, match="stored package was altered.*weights.bin"):
        registry.resolve("models:/scathat-altered/1")
    write_manifest(stored)  # a consistent package again, but not the one registered
    with pytest.raises(UserError, match="stored package was altered.*not the registered"):
        registry.resolve("models:/scathat-altered/1")


def test_remote_source_is_downloaded_to_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = fake_package(tmp_path / "p", "scathat-remote")
    registry.register(pkg)
    monkeypatch.setattr(registry, "_local_path", lambda source: None)  # as if the store were remote
    cache = tmp_path / "cache"
    path, info = registry.resolve("models:/scathat-remote/1", cache_dir=cache)
    assert path == cache / pkg.id and verify_package(path).id == pkg.id == info["package_id"]
    (path / "weights.bin").write_bytes(b"damaged in the cache")
    path, _ = registry.resolve("models:/scathat-remote/1", cache_dir=cache)  # fetched again
    assert verify_package(path).id == pkg.id


def test_cli_exit_codes(tmp_path: Path, audit_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = "scathat-cli"
    a = fake_package(tmp_path / "a", name)
    b = fake_package(tmp_path / "b", name, 0.9)
    assert main(["register", str(a.path)]) == 0
    assert main(["register", str(b.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["version"] == 2
    assert main(["promote", "1", "--alias", "champion", "--model", name]) == 0
    assert main(["promote", "2", "--alias", "champion", "--model", name, "--reason", "v2"]) == 0
    assert main(["rollback", "--model", name]) == 0
    assert main(["list", name, "--json"]) == 0
    capsys.readouterr()
    assert main(["show", name, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 1

    not_a_package = tmp_path / "empty"
    not_a_package.mkdir()
    for argv in (
        ["register", str(tmp_path / "missing")],
        ["register", str(not_a_package)],
        ["promote", "9", "--alias", "champion", "--model", name],
        ["rollback", "--model", name],
        ["show", "scathat-none"],
        ["resolve", "models:/scathat-cli@challenger"],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), (argv, err)

    assert main(["audit", "verify"]) == 0
    raw = audit_log.read_bytes().splitlines()
    audit_log.write_bytes(b"\n".join([raw[0], *raw[2:]]) + b"\n")
    assert main(["audit", "verify"]) == 1
    assert "line 2" in capsys.readouterr().err
