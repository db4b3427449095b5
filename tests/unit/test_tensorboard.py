"""What a training run shows in TensorBoard: PR curves, confusion and reliability figures, a filled HParams
tab, learning rate, epoch time and system metrics (read back from the event file); and the per-class
computations behind them on hand-made test rows, label masks included."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from training_pipeline.evaluation.callbacks import (
    hparam_values,
    multilabel_calibration,
    multilabel_confusion,
    multilabel_rows,
    pr_curve_inputs,
    scalar_metrics,
)
from training_pipeline.evaluation.plots import figure_array, multilabel_confusion_figure


def _events(log_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sizes = {k: 0 for k in ("scalars", "images", "tensors", "histograms", "audio", "compressedHistograms")}
    acc = EventAccumulator(str(log_dir), size_guidance=sizes)
    acc.Reload()
    return acc


def test_a_training_run_fills_the_tensorboard_dashboards(cfg_train) -> None:
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.util import tensor_util

    from training_pipeline.tasks import train

    metrics, objects = train(cfg_train)  # bytecode detector, 2 epochs, logger=tensorboard
    out = Path(cfg_train.paths.output_dir)
    acc = _events(out / "tensorboard")
    tags = acc.Tags()
    scalars = set(tags["scalars"])

    # PR curves: one per class assessed in the test split; at threshold 0 every assessed positive is a TP
    records = [json.loads(line) for line in (out / "test_predictions.jsonl").read_text().splitlines()]
    names = objects["model"].class_names
    assert {f"test/pr_curve/{c}" for c in names} <= set(tags["tensors"])
    for c in names:
        curve = tensor_util.make_ndarray(acc.Tensors(f"test/pr_curve/{c}")[-1].tensor_proto)
        assert curve.shape == (6, 127)  # TP, FP, TN, FN, precision, recall per threshold
        assessed = [r for r in records if c not in r.get("unassessed", [])]
        positives = sum(c in r["labels"] for r in assessed)
        assert curve[0, 0] == positives and curve[0, 0] + curve[1, 0] == len(assessed)

    # figures: per-class confusion and the reliability diagram, also written to the run dir
    assert {"test/confusion_per_class", "test/reliability"} <= set(tags["images"])
    assert acc.Images("test/confusion_per_class")[-1].height > 200
    report = json.loads((out / "calibration.json").read_text())
    assert report["kind"] == "multilabel"
    assert report["pooled"]["count"] == len(records) * len(names)
    assert (out / "reliability_test.png").stat().st_size > 1000

    # HParams tab: one session whose metrics are the final ones, logged as scalars beside the params
    content = acc.PluginTagToContent("hparams")
    exp = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    metric_tags = {m.name.tag for m in exp.metric_infos}
    assert {"hp/test/f1_macro", "hp/val/f1_macro", "hp/best/val/f1_macro", "hp/test/auprc"} <= metric_tags
    assert metric_tags <= scalars
    assert not any(t.startswith(("hp/test/f1/", "hp/val/recall/")) for t in metric_tags)  # per class: off
    hp_f1 = acc.Scalars("hp/test/f1_macro")[-1].value
    assert hp_f1 == pytest.approx(metrics["test/f1_macro"], abs=1e-6)
    best = json.loads((out / "metrics.json").read_text())["value"]
    assert acc.Scalars("hp/best/val/f1_macro")[-1].value == pytest.approx(best, abs=1e-6)
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    params = start.session_start_info.hparams
    assert params["channels"].number_value == 16 and params["optimizer/lr"].number_value > 0
    assert params["data_version"].string_value.startswith("sha256:")
    assert not any(k.endswith("_state") for k in params)

    # learning rate, epoch time and system metrics once per epoch
    lr = [k for k in scalars if k.startswith("lr-")]
    assert lr and len(acc.Scalars(lr[0])) == 2
    epoch_s = [e.value for e in acc.Scalars("time/epoch_seconds")]
    assert len(epoch_s) == 2 and all(v > 0 for v in epoch_s)
    assert acc.Scalars("system/process_rss_mb")[-1].value > 50
    assert {"system/cpu_percent", "system/process_cpu_percent", "system/memory_percent"} <= scalars
    assert "time/train_samples_per_second" in scalars


def _module(**preds) -> SimpleNamespace:
    names = ["reentrancy", "arithmetic", "other"]
    return SimpleNamespace(
        test_predictions=preds, class_names=names, thresholds=torch.tensor([0.5, 0.3, 0.9])
    )


# 4 contracts × 3 classes; contract 0 has arithmetic unassessed, contract 3 has nothing assessed for other
PROBS = torch.tensor([[0.9, 0.8, 0.1], [0.2, 0.4, 0.95], [0.6, 0.1, 0.5], [0.1, 0.2, 0.99]])
TARGETS = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
MASK = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


def test_pr_curves_and_confusion_count_only_assessed_entries() -> None:
    module = _module(probs=PROBS, targets=TARGETS, mask=MASK, index=torch.arange(4))
    curves = pr_curve_inputs(module)
    assert list(curves) == ["reentrancy", "arithmetic", "other"]
    labels, scores = curves["arithmetic"]
    assert labels.tolist() == [False, False, True] and scores.tolist() == pytest.approx([0.4, 0.1, 0.2])
    assert len(curves["other"][0]) == 3  # contract 3's 0.99 (unassessed) left out
    cms = multilabel_confusion(multilabel_rows(module))
    # reentrancy at 0.5: TP contract 0, FP contract 2, TN 1 and 3
    assert cms[0].tolist() == [[2, 1], [0, 1]]
    # arithmetic at 0.3: FP contract 1 (0.4), FN contract 3 (0.2), TN contract 2; contract 0 unassessed
    assert cms[1].tolist() == [[1, 1], [1, 0]]
    # other at 0.9: TP contract 1, TN contracts 0 and 2; contract 3 unassessed
    assert cms[2].tolist() == [[2, 0], [0, 1]]
    assert int(cms.sum()) == int(MASK.sum())


def test_pooled_and_per_class_calibration_leave_masked_entries_out() -> None:
    rows = multilabel_rows(_module(probs=PROBS, targets=TARGETS, mask=MASK))
    report = multilabel_calibration(rows, n_bins=5)
    assert report["pooled"]["count"] == 10 and report["pooled"]["positives"] == 3
    assert sum(b["count"] for b in report["pooled"]["bins"]) == 10
    assert report["per_class"]["other"]["count"] == 3
    expected = np.mean((PROBS[MASK > 0.5] - TARGETS[MASK > 0.5]).numpy() ** 2)
    assert report["pooled"]["brier"] == pytest.approx(float(expected))


def test_behavior_model_pr_curves_are_one_vs_rest() -> None:
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    module = SimpleNamespace(
        test_predictions={"probs": probs, "labels": torch.tensor([0, 2, 2])},
        class_names=["normal", "drain", "flash_loan"],
    )
    assert multilabel_rows(module) is None
    curves = pr_curve_inputs(module)
    assert curves["flash_loan"][0].tolist() == [False, True, True]
    assert curves["drain"][1].tolist() == pytest.approx([0.2, 0.8, 0.3])
    assert pr_curve_inputs(SimpleNamespace(test_predictions={}, class_names=[])) == {}


def test_aggregator_rows_give_class_curves_and_a_risk_curve() -> None:
    views = torch.tensor([[True, False], [True, True], [False, True], [True, True]])  # not a label mask
    module = _module(
        class_probs=PROBS,
        labels=TARGETS,
        mask=views,
        risk=torch.tensor([1.0, 0.0, 0.0, 1.0]),
        risk_calibrated=torch.tensor([0.8, 0.3, 0.2, 0.6]),
    )
    rows = multilabel_rows(module)
    assert rows is not None and bool((rows.mask == 1).all())
    curves = pr_curve_inputs(module)
    assert list(curves) == ["reentrancy", "arithmetic", "other", "risk"]
    assert curves["risk"][0].tolist() == [True, False, False, True]
    assert int(multilabel_confusion(rows).sum()) == 12


def test_hparam_values_flatten_and_leave_learnt_state_out() -> None:
    params = {
        "lr": 1e-3,
        "optimizer": {"_target_": "torch.optim.AdamW", "betas": [0.9, 0.99]},
        "tokenizer_state": {"vocab": {"a": 1}},
        "huge": {str(i): i for i in range(100)},
        "names": ["x"] * 200,
        "ckpt": None,
        "nan": float("nan"),
    }
    flat = hparam_values(params)
    assert flat == {
        "lr": 1e-3,
        "optimizer/_target_": "torch.optim.AdamW",
        "optimizer/betas": "[0.9, 0.99]",
        "ckpt": "None",
        "nan": "nan",
    }
    got = scalar_metrics(
        {"val/f1": torch.tensor(0.5), "test/f1/reentrancy": 0.2, "train/loss": 1.0, "test/x": float("inf")}
    )
    assert got == {"val/f1": 0.5}


def test_per_class_confusion_figure_draws_one_panel_per_class() -> None:
    cms = multilabel_confusion(multilabel_rows(_module(probs=PROBS, targets=TARGETS, mask=MASK)))
    fig = multilabel_confusion_figure(cms, ["reentrancy", "arithmetic", "other"], [0.5, 0.3, 0.9])
    assert len(fig.axes) == 3
    assert fig.axes[1].get_title() == "arithmetic (t=0.30)"
    assert figure_array(fig).shape[2] == 3


def test_system_stats_without_a_gpu_and_gpu_utilization_without_nvml(monkeypatch) -> None:
    import psutil

    from training_pipeline.utils import callbacks as system

    stats = system.system_stats(psutil.Process(), torch.device("cpu"))
    assert stats["system/process_rss_mb"] > 10 and 0 <= stats["system/memory_percent"] <= 100
    assert not any(k.startswith("system/gpu") for k in stats)

    def no_nvml(index: int) -> float:
        raise ModuleNotFoundError("pynvml")

    monkeypatch.setattr(system.torch.cuda, "utilization", no_nvml)
    monkeypatch.setattr(system.shutil, "which", lambda name: None)
    assert system.gpu_utilization(0) is None
