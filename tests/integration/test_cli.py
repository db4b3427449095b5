"""The entrypoints as a user runs them: bad input fails in one line, sweeps and DDP work."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAST_OVERRIDES, ROOT, TINY_CORPUS, run_cli

TINY = [f"data.corpus.n_contracts={TINY_CORPUS}", *FAST_OVERRIDES]


def assert_one_line_failure(result, *needles: str) -> None:
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr[-3000:]
    for needle in needles:
        assert needle in error_lines[0], error_lines[0]


def run_dirs(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "outputs").glob("*/runs/*") if p.is_dir()]


def assert_failed_run_dir(tmp_path: Path) -> None:
    """A failed run leaves no metrics.json and says so in status.json."""
    for run in run_dirs(tmp_path):
        assert not (run / "metrics.json").exists()
        assert json.loads((run / "status.json").read_text())["state"] == "failed"


def test_missing_data_file(tmp_path, data_dir) -> None:
    r = run_cli(
        "train.py",
        "data=bytecode_file",
        f"data.path={tmp_path}/nope.jsonl",
        *FAST_OVERRIDES,
        tmp_path=tmp_path,
        data_dir=data_dir,
    )
    assert_one_line_failure(r, "nope.jsonl", "no such")
    assert_failed_run_dir(tmp_path)


@pytest.mark.parametrize(
    ("record", "needles"),
    [
        ({"id": "c1", "bytecode": "0x6080zz", "labels": []}, ("contracts.jsonl", "c1", "hex")),
        (
            {"id": "c7", "bytecode": "0x6080604052", "labels": ["reentrance"]},
            ("contracts.jsonl", "c7", "reentrance"),
        ),
    ],
    ids=["invalid_hex", "unknown_label"],
)
def test_bad_record_in_contract_file(tmp_path, data_dir, record, needles) -> None:
    bad = tmp_path / "contracts.jsonl"
    bad.write_text(json.dumps(record) + "\n")
    args = ["data=bytecode_file", f"data.path={bad}", *FAST_OVERRIDES]
    r = run_cli("train.py", *args, tmp_path=tmp_path, data_dir=data_dir)
    assert_one_line_failure(r, *needles)
    assert_failed_run_dir(tmp_path)


def test_unknown_config_key(tmp_path, data_dir) -> None:
    r = run_cli("train.py", "trainer.max_epoch=1", *TINY, tmp_path=tmp_path, data_dir=data_dir)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert "max_epoch" in r.stderr
    assert not run_dirs(tmp_path)  # Hydra refuses before any run dir exists


def test_the_command_line_is_checked_before_torch_is_imported() -> None:
    """The entrypoints import the tasks (torch, Lightning: seconds) only once the command line composes, so a
    typo fails at once; ``python -m training_pipeline`` likewise."""
    code = (
        "import sys, training_pipeline.cli, training_pipeline.__main__; "
        "from training_pipeline.cli import check_command_line; "
        "problem = check_command_line('train.yaml', ['trainer.max_epoch=1']); "
        "print(problem); print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}  # this checkout's package, installed or not
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env
    ).stdout
    problem, imported = out.strip().splitlines()[-2:]
    assert "trainer.max_epoch: no such config key (did you mean trainer.max_epochs?)" in problem
    assert imported == "[]"


def test_misspelled_key_in_a_config_group(tmp_path, data_dir) -> None:
    r = run_cli("train.py", "+data.corpus.n_contract=5", *TINY, tmp_path=tmp_path, data_dir=data_dir)
    assert_one_line_failure(r, "n_contract")


def test_optimized_metric_typo_fails_before_training(tmp_path, data_dir) -> None:
    r = run_cli("train.py", "optimized_metric=val/f1_marco", *TINY, tmp_path=tmp_path, data_dir=data_dir)
    assert_one_line_failure(r, "val/f1_marco", "val/f1_macro")
    assert_failed_run_dir(tmp_path)
    assert not any((run / "checkpoints").exists() for run in run_dirs(tmp_path))


def test_corrupted_checkpoint(tmp_path, data_dir) -> None:
    ckpt = tmp_path / "broken.ckpt"
    ckpt.write_bytes(b"PK\x03\x04 not really a checkpoint")
    r = run_cli("eval.py", f"ckpt_path={ckpt}", *TINY[:1], tmp_path=tmp_path, data_dir=data_dir)
    assert_one_line_failure(r, "broken.ckpt")


def test_eval_requires_a_checkpoint(tmp_path, data_dir) -> None:
    r = run_cli("eval.py", *TINY[:1], tmp_path=tmp_path, data_dir=data_dir)
    assert_one_line_failure(r, "ckpt_path")


@pytest.mark.slow
def test_optuna_sweep_resumes_its_study(tmp_path, data_dir) -> None:
    args = [
        "-m",
        "hparams_search=bytecode_detector_optuna",
        "hydra.sweeper.n_trials=2",
        "trainer.max_epochs=1",
        "callbacks=none",
        "logger=csv",
        *TINY,
    ]
    first = run_cli("train.py", *args, tmp_path=tmp_path, data_dir=data_dir, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    db = tmp_path / "outputs" / "optuna" / "studies.db"

    def n_trials() -> int:
        with sqlite3.connect(db) as con:
            return con.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()[0]

    assert n_trials() == 2
    second = run_cli("train.py", *args, tmp_path=tmp_path, data_dir=data_dir, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert n_trials() == 4  # the same study grew
    sweeps = sorted((tmp_path / "outputs" / "train" / "multiruns").iterdir())
    summary = json.loads((sweeps[-1] / "summary.json").read_text())
    assert summary["n_jobs"] == 2 and summary["best_job"]["value"] is not None
    assert (sweeps[-1] / "optimization_results.yaml").exists()


@pytest.mark.slow
def test_cross_validation_summary(tmp_path, data_dir) -> None:
    r = run_cli(
        "train.py",
        "-m",
        "data.fold=0,1",
        "trainer.max_epochs=1",
        "logger=csv",
        "callbacks=none",
        *TINY,
        tmp_path=tmp_path,
        data_dir=data_dir,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    sweep = next((tmp_path / "outputs" / "train" / "multiruns").iterdir())
    summary = json.loads((sweep / "summary.json").read_text())
    f1 = summary["test"]["test/f1_macro"]
    assert f1["n"] == 2 and 0 <= f1["mean"] <= 1 and f1["std"] >= 0
    assert "test/f1_macro" in (sweep / "summary.md").read_text()


@pytest.mark.slow
def test_ddp_cpu_two_processes(tmp_path, data_dir) -> None:
    r = run_cli(
        "train.py",
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        "callbacks=none",
        "logger=csv",
        *TINY,
        tmp_path=tmp_path,
        data_dir=data_dir,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    runs = run_dirs(tmp_path)
    assert len(runs) == 1, runs  # no stray run dir from the second process
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert 0 <= metrics["test"]["test/f1_macro"] <= 1
