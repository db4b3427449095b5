"""End-to-end training, evaluation and resume on the tiny compiled corpus (in process, seconds each)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import compose_config, tiny_overrides

from training_pipeline.tasks import evaluate, train


def test_debug_fdr_trains_and_tests(tmp_path, data_dir) -> None:
    cfg = compose_config("train.yaml", [*tiny_overrides(data_dir), "debug=fdr"], tmp_path / "fdr")
    assert cfg.callbacks is None and cfg.task_name == "debug"
    metrics, objects = train(cfg)
    assert objects["trainer"].global_step == 1
    assert 0.0 <= metrics["test/f1_macro"] <= 1.0
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))


def test_run_dir_is_self_describing(cfg_train) -> None:
    metrics, objects = train(cfg_train)
    out = Path(cfg_train.paths.output_dir)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test"]["test/f1_macro"] == pytest.approx(metrics["test/f1_macro"])
    assert saved["epochs"] == 2
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["data_version"].startswith("sha256:") and prov["packages"]["torch"].startswith("2.13")
    assert "commit" in prov["git"] and "dirty" in prov["git"]
    assert "n_contracts: 80" in (out / "config_resolved.yaml").read_text()
    assert "CONFIG" in (out / "config_tree.txt").read_text()
    assert {p.name for p in (out / "checkpoints").iterdir()} >= {"last.ckpt"}
    assert Path(saved["best_checkpoint"]).exists()
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    lines = (out / "test_predictions.jsonl").read_text().splitlines()
    assert len(lines) == len(objects["datamodule"].splits["test"])
    assert set(json.loads(lines[0])["probs"]) == set(objects["model"].class_names)


def test_system_metrics_are_logged(cfg_train) -> None:
    metrics, _ = train(cfg_train)
    assert metrics["time/epoch_seconds"] > 0
    assert metrics["time/train_samples_per_second"] > 0
    assert metrics["system/process_rss_mb"] > 50


def test_train_then_eval_gives_the_same_test_metric(cfg_train, tmp_path, data_dir) -> None:
    metrics, objects = train(cfg_train)
    best = objects["trainer"].checkpoint_callback.best_model_path
    cfg_eval = compose_config(
        "eval.yaml",
        [*tiny_overrides(data_dir)[:3], f"ckpt_path={best}", "trainer.enable_progress_bar=false"],
        tmp_path / "eval",
    )
    eval_metrics, _ = evaluate(cfg_eval)
    assert eval_metrics["test/f1_macro"] == pytest.approx(metrics["test/f1_macro"], abs=1e-6)
    assert eval_metrics["test/auroc"] == pytest.approx(metrics["test/auroc"], abs=1e-6)
    assert (tmp_path / "eval" / "predictions.jsonl").exists()


@pytest.mark.slow
def test_resume_from_last_checkpoint_continues_the_epoch_count(cfg_train, tmp_path, data_dir) -> None:
    train(cfg_train)
    last = Path(cfg_train.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] == 1
    cfg2 = compose_config(
        "train.yaml",
        [
            *tiny_overrides(data_dir),
            "trainer.max_epochs=3",
            f"ckpt_path={last}",
            "~callbacks.rich_progress_bar",
        ],
        tmp_path / "resumed",
    )
    _, objects = train(cfg2)
    assert objects["trainer"].current_epoch == 3  # one more epoch, not three from scratch
    assert (
        torch.load(Path(cfg2.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=False)["epoch"]
        == 2
    )


def test_retuning_thresholds_writes_a_new_run_dir_and_leaves_the_original(
    cfg_train, tmp_path, capsys
) -> None:
    """Without audited rows in validation a budget changes nothing: re-tuning reproduces the checkpoint's own
    thresholds (tuned on the same epoch's validation predictions), the budget lands in the new checkpoint's
    hyperparameters, the original checkpoint is untouched, and an existing --out is refused in one line."""
    from training_pipeline.evaluation.retune import main
    from training_pipeline.models.checkpoint import load_checkpoint

    train(cfg_train)
    run = Path(cfg_train.paths.output_dir)
    original = (run / "checkpoints" / "best.ckpt").read_bytes()
    out = tmp_path / "retuned"
    assert main([str(run), "--out", str(out), "--max-flagged-share", "0.1", "--max-flag-rate", "none"]) == 0
    before = load_checkpoint(cfg_train.model._target_, run / "checkpoints" / "best.ckpt")
    after = load_checkpoint(cfg_train.model._target_, out / "checkpoints" / "best.ckpt")
    assert torch.equal(before.thresholds, after.thresholds)
    assert after.hparams.max_audited_flagged_share == 0.1 and before.hparams.max_audited_flagged_share is None
    assert (run / "checkpoints" / "best.ckpt").read_bytes() == original
    assert "max_audited_flagged_share: 0.1" in (out / "config_resolved.yaml").read_text()
    printed = capsys.readouterr().out
    assert (
        "on validation (" in printed
    )  # what the budget trades there: here nothing, the thresholds are the same
    effect = [line.split() for line in printed.splitlines() if " -> " in line and "recall" in line]
    assert effect and all(words[-3] == words[-1] for words in effect)
    assert main([str(run), "--out", str(out), "--max-flagged-share", "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0]
    assert main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
    capsys.readouterr()
    assert main([str(run), "--out", str(tmp_path / "capped"), "--era-max-flags", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # a cap needs era groups, which this model lacks
    assert len(err) == 1 and "threshold_eras" in err[0] and not (tmp_path / "capped").exists()
