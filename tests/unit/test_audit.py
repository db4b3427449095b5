"""The deployment audit log: entries chained by hashes, locked appends, and ``audit verify`` finding an
edited, removed, inserted or reordered line by its number."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training_pipeline.deploy import audit
from training_pipeline.deploy.cli import main


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "audit.jsonl"
    monkeypatch.setenv(audit.ENV_LOG, str(path))
    monkeypatch.setenv(audit.ENV_USER, "alice")
    for version in (1, 2, 3, 4):
        audit.append(
            "promote", model="scathat-pipeline", version=version, package_id=f"id{version}", reason="r"
        )
    return path


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def test_entries_hold_who_what_and_the_chain(log: Path) -> None:
    raw = lines(log)
    entries = [json.loads(line) for line in raw]
    assert len(entries) == 4
    first, second = entries[0], entries[1]
    assert first["prev"] == "0" * 64
    assert second["prev"] == hashlib.sha256(raw[0]).hexdigest()
    assert first["user"] == "alice" and first["action"] == "promote" and first["version"] == 1
    assert first["package_id"] == "id1" and first["reason"] == "r"
    assert first["time"].endswith("Z")
    assert audit.verify() == (True, f"{log}: 4 entries, chain intact")


def test_caller_named_user_wins(log: Path) -> None:
    entry = audit.append("reload", model="scathat-pipeline", user="api-key:ci")
    assert entry["user"] == "api-key:ci"
    assert audit.read(last=1)[0]["user"] == "api-key:ci"


def test_details_and_another_log(log: Path, tmp_path: Path) -> None:
    other = tmp_path / "other" / "audit.jsonl"
    audit.append("package", model="scathat-pipeline", package_id="p", log=other, path="/pk/x", source_run="r")
    (entry,) = audit.read(other)
    assert entry["details"] == {"path": "/pk/x", "source_run": "r"}
    assert len(audit.read(log)) == 4 and audit.verify(other)[0]


def test_unknown_action_is_refused(log: Path) -> None:
    with pytest.raises(ValueError, match="deploy"):
        audit.append("deploy")


def rewrite(path: Path, new: list[bytes]) -> None:
    path.write_bytes(b"\n".join(new) + b"\n")


def test_edited_line_is_named(log: Path) -> None:
    raw = lines(log)
    raw[1] = raw[1].replace(b'"reason":"r"', b'"reason":"x"')
    rewrite(log, raw)
    ok, message = audit.verify()
    assert not ok and "line 2" in message and "edited" in message


def test_edit_with_its_hash_recomputed_breaks_the_next_line(log: Path) -> None:
    raw = lines(log)
    entry = json.loads(raw[1])
    entry["version"] = 9
    body = {k: v for k, v in entry.items() if k != "hash"}
    entry["hash"] = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    raw[1] = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    rewrite(log, raw)
    ok, message = audit.verify()
    assert not ok and "line 3" in message and "chain broken" in message


def test_edited_last_line_is_found(log: Path) -> None:
    raw = lines(log)
    raw[-1] = raw[-1].replace(b'"version":4', b'"version":5')
    rewrite(log, raw)
    ok, message = audit.verify()
    assert not ok and "line 4" in message


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (lambda r: [r[0], r[2], r[3]], 2),  # removed
        (lambda r: [r[0], r[2], r[1], r[3]], 2),  # reordered
        (lambda r: [r[0], r[1], r[1], r[2], r[3]], 3),  # inserted (a copy)
        (lambda r: [r[1], r[2], r[3]], 1),  # first removed
    ],
    ids=["removed", "reordered", "inserted", "first-removed"],
)
def test_removed_reordered_inserted_lines_break_the_chain(log: Path, change, line: int) -> None:
    rewrite(log, change(lines(log)))
    ok, message = audit.verify()
    assert not ok and f"line {line}" in message


def test_two_processes_appending_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    code = (
        "from training_pipeline.deploy import audit\n"
        "for i in range(30): audit.append('reload', model='m', version=i)\n"
    )
    env = os.environ | {audit.ENV_LOG: str(path)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    ok, message = audit.verify(path)
    assert ok, message
    assert len(lines(path)) == 60


def test_cli_audit_verify_exit_codes(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify"]) == 0
    assert "chain intact" in capsys.readouterr().out
    assert main(["audit", "show", "-n", "2", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [e["version"] for e in shown] == [3, 4]
    raw = lines(log)
    rewrite(log, [raw[0], raw[2], raw[3]])
    assert main(["audit", "verify"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 2" in err[0]
    assert main(["audit", "verify", "--log", str(log.with_name("missing.jsonl"))]) == 2
    assert capsys.readouterr().err.startswith("error: ")
