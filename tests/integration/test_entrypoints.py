"""The package stands on its own: the wheel ships the configs and the console scripts run from any folder.

The console scripts come from ``pip install -e .`` (``make setup``); the wheel test builds the same package a
``pip install .`` installs and looks inside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import FAST_OVERRIDES, ROOT

BIN = Path(sys.executable).parent
FIXTURES = ROOT / "tests" / "fixtures" / "evm"
LABELS = [[], ["reentrancy"], ["arithmetic"], [], ["access_control"], ["reentrancy", "arithmetic"]]


def _contract_file(folder: Path, n: int = 60) -> Path:
    """``n`` distinct records over the fixture bytecodes (a ``PUSH1 i POP`` prefix keeps them from being
    grouped as clones): enough groups for five grouped folds."""
    codes = sorted(FIXTURES.glob("*.hex"))
    path = folder / "contracts.jsonl"
    with path.open("w") as fh:
        for i in range(n):
            code = codes[i % len(codes)].read_text().strip()
            prefix = f"60{i:02x}50"
            record = {
                "id": f"c{i}",
                "bytecode": "0x" + prefix + code.removeprefix("0x"),
                "labels": LABELS[i % 6],
            }
            fh.write(json.dumps(record) + "\n")
    return path


def _run(tool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = BIN / tool
    assert exe.is_file(), f"{exe}: console script missing; run `make setup` (pip install -e .)"
    env = {k: v for k, v in os.environ.items() if k not in ("PROJECT_ROOT", "TRAINING_PIPELINE_SOLC_DIR")}
    return subprocess.run(
        [str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_wheel_ships_the_configs_and_console_scripts(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("training_pipeline-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    configs = {n.split("training_pipeline/conf/", 1)[1] for n in names if "training_pipeline/conf/" in n}
    on_disk = {str(p.relative_to(ROOT / "conf")) for p in (ROOT / "conf").rglob("*.yaml")}
    assert on_disk and on_disk <= configs, sorted(on_disk - configs)
    (entry_points,) = [n for n in names if n.endswith("entry_points.txt")]
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    for name in ("scathat-train", "scathat-eval", "scathat-scan", "scathat-train-all"):
        assert f"{name} = training_pipeline." in scripts


@pytest.mark.slow
def test_console_scripts_train_and_scan_outside_the_checkout(tmp_path: Path) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    data = _contract_file(work)
    common = ["data=bytecode_file", f"data.path={data}", *FAST_OVERRIDES]

    fdr = _run("scathat-train", "debug=fdr", *common, cwd=work)
    assert fdr.returncode == 0, fdr.stderr[-3000:]
    (run,) = (work / "outputs" / "debug" / "runs").iterdir()  # outputs land where the command ran
    provenance = json.loads((run / "provenance.json").read_text())
    assert Path(provenance["cwd"]) == work
    assert json.loads((run / "status.json").read_text())["state"] == "completed"
    assert "test/f1_macro" in json.loads((run / "metrics.json").read_text())["test"]

    limited = _run(
        "scathat-train", "debug=limit", "trainer.max_epochs=1", "task_name=ckpt", *common, cwd=work
    )
    assert limited.returncode == 0, limited.stderr[-3000:]
    (ckpt,) = (work / "outputs" / "ckpt" / "runs").rglob("*.ckpt")  # debug runs: Lightning's own checkpoint
    scan = _run(
        "scathat-scan", str(FIXTURES / "vault-0.8.26.hex"), "--checkpoint", str(ckpt), "--json", cwd=work
    )
    assert scan.returncode == 0, scan.stderr[-3000:]
    (report,) = json.loads(scan.stdout)["reports"]
    assert 0.0 <= report["risk"] <= 1.0

    bad = _run("scathat-train", "trainer.max_epoch=1", *common, cwd=work)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: trainer.max_epoch: no such config key (did you mean trainer.max_epochs?); "
        "use +trainer.max_epoch=... to add one"
    ]
