"""scripts/retune_thresholds.py's arguments: one budget for all classes or one per class."""

from __future__ import annotations

import pytest

from training_pipeline.evaluation.retune import parser


def test_flag_rate_takes_a_share_none_or_one_per_class(capsys) -> None:
    def rate(text: str):
        return parser().parse_args(["run", "--out", "x", "--max-flag-rate", text]).max_flag_rate

    assert rate("0.03") == 0.03 and rate("none") is None
    assert rate("default=0.02, time_manipulation=0.1") == {"default": 0.02, "time_manipulation": 0.1}
    for bad in ("time_manipulation=2", "default=0.02,=0.1", "default=0.02,reentrancy"):
        with pytest.raises(SystemExit):
            rate(bad)
        assert "--max-flag-rate" in capsys.readouterr().err


def test_beta_is_a_positive_number_or_the_models_own(capsys) -> None:
    def beta(*extra: str):
        return parser().parse_args(["run", "--out", "x", *extra]).beta

    assert beta() is None  # the checkpoint keeps its own
    assert beta("--beta", "2") == 2.0
    for bad in ("0", "-1", "two"):
        with pytest.raises(SystemExit):
            beta("--beta", bad)
        assert "--beta" in capsys.readouterr().err
