"""src/predict.py: bad input is one clear `error:` line naming the input, exit status 2 (no model needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import predict

ROOT = Path(__file__).resolve().parents[2]
CASES = {
    "unparseable": (
        "broken.sol",
        "pragma solidity ^0.8.0;\ncontract Broken {\n    function f( public {\n}\n",
        "does not compile",
    ),
    "no_compiler": (
        "future.sol",
        "pragma solidity ^0.9.1;\ncontract Future {}\n",
        "no solc release satisfies pragma solidity ^0.9.1",
    ),
    "no_pragma": ("bare.sol", "contract Bare {}\n", "no 'pragma solidity'"),
    "empty_sol": ("empty.sol", "", "empty file"),
    "invalid_hex": ("bad.hex", "0x60zz80", "invalid bytecode hex"),
    "empty_hex": ("blank.hex", "  \n", "empty file"),
    "csv_columns": ("txs.csv", "foo,bar\n1,2\n", "missing column"),
    "records": ("contracts.jsonl", '{"id": "a", "bytecode": "0xgg"}\n', "contracts.jsonl"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_naming_it(case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    name, content, message = CASES[case]
    path = tmp_path / name
    path.write_text(content)
    code = predict.main([str(path), "--pipeline-dir", str(tmp_path / "no-pipeline")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert str(path) in err and message in err, err


def test_bad_flags_and_missing_models(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert predict.main(["--bytecode", "0x6g"]) == 2
    assert "invalid bytecode hex" in capsys.readouterr().err
    assert predict.main([str(tmp_path / "missing.sol")]) == 2
    assert "no such file" in capsys.readouterr().err
    good = ROOT / "tests" / "fixtures" / "evm" / "vault-0.8.26.hex"
    assert predict.main([str(good), "--pipeline-dir", str(tmp_path)]) == 2
    assert "not a finished pipeline run dir" in capsys.readouterr().err
    assert predict.main([str(good), "--checkpoint", str(tmp_path / "none.ckpt")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


def test_cli_exit_status(tmp_path: Path) -> None:
    bad = tmp_path / "bad.hex"
    bad.write_text("xyz")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "src" / "predict.py"), str(bad)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.strip().startswith(f"error: {bad}")
    assert "Traceback" not in proc.stderr
