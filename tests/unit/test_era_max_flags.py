"""A cap on the classes flagged per contract of the threshold eras (``model.era_max_flags``): such a contract
keeps the flags furthest above their thresholds, in the model's predictions, its test metrics, the scanner and
a package; older and unknown-era code is never capped."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import tiny_detector

from training_pipeline.data.contracts import era_code
from training_pipeline.errors import ConfigError
from training_pipeline.evaluation.retune import parser
from training_pipeline.metrics.classification import cap_flags
from training_pipeline.models.contract_classifier import check_era_max_flags, row_thresholds

OLD, NEW = era_code("0.4"), era_code("0.8")


def test_a_capped_row_keeps_the_flags_furthest_above_their_thresholds_in_log_odds() -> None:
    probs = torch.tensor([[0.9, 0.5, 0.3, 0.05]] * 3 + [[0.05, 0.05, 0.05, 0.05]])
    thresholds = torch.tensor([0.85, 0.2, 0.1, 0.5])
    out = cap_flags(probs, thresholds, torch.tensor([True, False, True, True]), 1)
    flags = (probs >= out).tolist()
    # margins: 0.9 over 0.85 is 0.46 in log-odds, 0.5 over 0.2 1.39, 0.3 over 0.1 1.35: the 0.5 class wins
    assert flags[0] == [False, True, False, False]
    assert flags[1] == [True, True, True, False]  # not capped: its thresholds unchanged
    assert flags[3] == [False] * 4  # nothing flagged stays so
    assert out[0, 0] == math.inf and out[0, 1] == pytest.approx(0.2) and out[0, 3] == pytest.approx(0.5)
    two = probs >= cap_flags(probs, thresholds, torch.ones(4, dtype=torch.bool), 2)
    assert two[0].tolist() == [False, True, True, False]


def test_only_rows_of_an_era_group_are_capped() -> None:
    base, by_era, bounds = torch.full((3,), 0.5), torch.full((1, 3), 0.2), torch.tensor([era_code("0.5")])
    probs = torch.tensor([[0.9, 0.8, 0.3]] * 3)
    eras = torch.tensor([OLD, NEW, -1])
    flags = probs >= row_thresholds(base, by_era, bounds, eras, 3, probs, 1)
    assert flags.tolist() == [[True, True, False], [True, False, False], [True, True, False]]
    uncapped = probs >= row_thresholds(base, by_era, bounds, eras, 3, probs, None)
    assert uncapped[1].tolist() == [True, True, True]


def test_the_cap_is_a_positive_integer_that_needs_threshold_eras(capsys) -> None:
    assert check_era_max_flags(None, None) is None and check_era_max_flags(2, ["0.5"]) == 2
    for bad in (0, -1, 1.5, True, "1"):
        with pytest.raises(ConfigError, match="model.era_max_flags"):
            check_era_max_flags(bad, ["0.5"])
    with pytest.raises(ConfigError, match="threshold_eras, which is not set"):
        check_era_max_flags(1, None)

    def cap(*extra: str):
        return getattr(parser().parse_args(["run", "--out", "x", *extra]), "era_max_flags", "own")

    assert cap() == "own" and cap("--era-max-flags", "1") == 1 and cap("--era-max-flags", "none") is None
    for bad in ("0", "two", "-1"):
        with pytest.raises(SystemExit):
            cap("--era-max-flags", bad)
        assert "--era-max-flags" in capsys.readouterr().err


def capped_detector():
    """A tiny detector whose every threshold is 0 (it flags every class) with one flag for 0.5+ code."""
    model = tiny_detector()
    model.hparams["era_max_flags"] = 1
    model.init_era_thresholds(["0.5"])
    model.thresholds.fill_(0.0)
    model.era_thresholds.fill_(0.0)
    return model


def test_predictions_and_test_metrics_of_a_model_apply_the_cap() -> None:
    model = capped_detector()
    c = len(model.class_names)
    probs = torch.rand(4, c, generator=torch.Generator().manual_seed(0))
    batch = {"era": torch.tensor([OLD, NEW, -1, NEW]), "index": torch.arange(4)}
    out = model.predict_outputs(batch, probs)
    assert out["predicted"].sum(1).tolist() == [c, 1, c, 1]
    assert bool(out["predicted"][1, probs[1].argmax()])  # equal thresholds: the likeliest class
    rows = model.thresholds_for(batch["era"], 4, probs)
    assert torch.equal(probs >= rows, out["predicted"])
    assert torch.equal(model.thresholds_for(batch["era"], 4), torch.zeros(4, c))  # no probs: no cap


def test_the_scanner_and_a_package_keep_the_cap(tmp_path: Path) -> None:
    from training_pipeline.data.featurizers import BytecodeFeaturizer
    from training_pipeline.deploy.package import load_component, write_component
    from training_pipeline.scan.inference import predict_bytecode
    from training_pipeline.scan.inputs import ScanInput

    body = "0x6080604052600080fd"
    items = [
        ScanInput("new.sol", bytecode=body, compiler="0.8.20"),
        ScanInput("old.sol", bytecode=body, compiler="v0.4.24+commit.e67f0147"),
        ScanInput("no-metadata.bin", bytecode=body + "5b" * 40),
    ]
    model = capped_detector()
    write_component(model, None, tmp_path / "detector")
    loaded, _ = load_component(tmp_path / "detector")
    assert loaded.hparams.era_max_flags == 1 and loaded.hparams.threshold_eras == ["0.5"]
    c = len(model.class_names)
    for m in (model, loaded):
        flagged = [len(out["predicted"]) for out in predict_bytecode(m, BytecodeFeaturizer(), items, 2)]
        assert flagged == [1, c, c]


def test_the_test_confusion_figure_counts_the_flags_the_model_makes() -> None:
    from training_pipeline.evaluation.callbacks import multilabel_confusion, multilabel_rows

    model = capped_detector()
    c = len(model.class_names)
    model.test_predictions = {
        "probs": torch.rand(2, c, generator=torch.Generator().manual_seed(1)),
        "targets": torch.zeros(2, c),
        "mask": torch.ones(2, c),
        "era": torch.tensor([OLD, NEW]),
    }
    cms = multilabel_confusion(multilabel_rows(model))
    assert int(cms[:, 0, 1].sum()) == c + 1  # every class on the 0.4 contract, one on the 0.8 one
    assert int(cms.sum()) == 2 * c
