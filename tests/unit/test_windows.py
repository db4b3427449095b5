"""Windowing of long contracts, batching under a window budget, and pooling windows into one contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training_pipeline.data.featurizers import WindowConfig, make_windows, window_starts
from training_pipeline.data.source import WindowBudgetSampler, WindowCollator
from training_pipeline.errors import ConfigError
from training_pipeline.models.nets.transformer import WindowPooling, pool_tokens


def test_windows_overlap_and_reach_the_tail() -> None:
    assert window_starts(10, 30, 20, 8) == [0]
    starts = window_starts(100, 30, 20, 8)
    assert starts == [0, 20, 40, 60, 70]  # the last window ends exactly at the last token
    assert all(b - a <= 20 for a, b in zip(starts, starts[1:], strict=False))


def test_too_many_windows_are_spread_from_head_to_tail() -> None:
    starts = window_starts(1000, 30, 20, 4)
    assert len(starts) == 4 and starts[0] == 0 and starts[-1] == 970
    assert starts == sorted(starts)


def test_make_windows_adds_boundaries_and_keeps_lines() -> None:
    cfg = WindowConfig(size=8, stride=4, max_windows=10, max_batch_windows=10)
    ids = list(range(10, 25))
    lines = [1 + i // 3 for i in range(15)]
    wins, wlines = make_windows(ids, lines, cfg, cls_id=0, sep_id=2)
    assert len(wins) == 4  # 15 tokens, 6 per window, stride 4: starts 0, 4, 8, 9
    for w, wl in zip(wins, wlines, strict=True):
        assert w[0] == 0 and w[-1] == 2 and len(w) <= 8
        assert wl[0] == 0 and wl[-1] == 0
        assert all(lines[ids.index(t)] == ln for t, ln in zip(w[1:-1], wl[1:-1], strict=True))
    covered = {t for w in wins for t in w[1:-1]}
    assert covered == set(ids)


def test_window_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="stride"):
        WindowConfig(size=16, stride=16)
    with pytest.raises(ConfigError, match="max_windows"):
        WindowConfig(max_windows=20, max_batch_windows=10)


def test_inference_can_keep_more_windows_than_training() -> None:
    """``eval_max_windows``: training cuts a long contract into ``max_windows`` windows, inference (the
    default) into up to ``eval_max_windows``, both spread from head to tail; unset, both keep
    ``max_windows``."""
    ids, lines = list(range(10, 110)), [1 + i // 5 for i in range(100)]
    cfg = WindowConfig(size=8, stride=6, max_windows=2, max_batch_windows=20, eval_max_windows=10)
    train_wins, _ = make_windows(ids, lines, cfg, cls_id=0, sep_id=2, train=True)
    eval_wins, _ = make_windows(ids, lines, cfg, cls_id=0, sep_id=2)
    assert len(train_wins) == 2 and len(eval_wins) == 10
    assert train_wins[0][1] == eval_wins[0][1] == 10 and train_wins[-1][-2] == eval_wins[-1][-2] == 109
    assert {t for w in eval_wins for t in w[1:-1]} > {t for w in train_wins for t in w[1:-1]}
    plain = WindowConfig(size=8, stride=6, max_windows=2, max_batch_windows=20)
    assert plain.limit(train=True) == plain.limit() == 2
    with pytest.raises(ConfigError, match="eval_max_windows"):
        WindowConfig(max_windows=4, max_batch_windows=10, eval_max_windows=11)
    with pytest.raises(ConfigError, match="eval_max_windows"):
        WindowConfig(eval_max_windows=0)


def test_budget_sampler_bounds_windows_per_batch() -> None:
    n_windows = [1, 5, 2, 8, 3, 3, 1, 7, 2, 2]
    for shuffle in (False, True):
        batches = list(WindowBudgetSampler(n_windows, batch_size=4, max_windows=10, shuffle=shuffle))
        assert sorted(i for b in batches for i in b) == list(range(10))
        for b in batches:
            assert len(b) <= 4 and (sum(n_windows[i] for i in b) <= 10 or len(b) == 1)
    assert len(WindowBudgetSampler(n_windows, 4, 10, False)) == len(
        list(WindowBudgetSampler(n_windows, 4, 10, False))
    )


def _item(n_windows: int, label: int) -> dict:
    wins = [np.array([0, 7, 8, 9, 2][: 3 + i % 3]) for i in range(n_windows)]
    return {
        "windows": wins,
        "lines": [np.arange(len(w), dtype=np.int32) for w in wins],
        "labels": np.eye(3, dtype=np.float32)[label],
        "family": 0,
        "index": label,
        "vulnerable_lines": {},
    }


def test_collator_flattens_windows_with_their_owner() -> None:
    batch = WindowCollator(pad_id=1)([_item(3, 0), _item(1, 1)])
    assert batch["input_ids"].shape == (4, 5) and batch["window_owner"].tolist() == [0, 0, 0, 1]
    assert batch["attention_mask"].sum(1).tolist() == [3, 4, 5, 3]
    assert (batch["input_ids"][batch["attention_mask"] == 0] == 1).all()
    assert batch["labels"].shape == (2, 3)


@pytest.mark.parametrize("mode", ["max", "mean", "attention"])
def test_a_contract_with_many_windows_gets_one_vector(mode: str) -> None:
    torch.manual_seed(0)
    pool = WindowPooling(6, mode)
    h = torch.randn(6, 6)
    owner = torch.tensor([0, 0, 0, 1, 2, 2])
    out = pool(h, owner, 3)
    assert out.shape == (3, 6)
    assert torch.allclose(out[1], h[3])  # one window: pooling is the identity
    if mode == "max":
        assert torch.allclose(out[0], h[:3].max(0).values)
    if mode == "mean":
        assert torch.allclose(out[2], h[4:].mean(0))


def test_token_pooling_ignores_padding() -> None:
    h = torch.arange(24, dtype=torch.float32).view(2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert torch.allclose(pool_tokens(h, mask, "mean")[0], h[0, :2].mean(0))
    assert torch.equal(pool_tokens(h, mask, "cls"), h[:, 0])
    assert torch.equal(pool_tokens(h, mask, "max")[0], h[0, 1])  # padding (larger values) ignored


@pytest.mark.parametrize("mode", ["max", "mean", "attention"])
def test_pooling_under_bf16_autocast(mode: str) -> None:
    """trainer=gpu runs bf16-mixed: masking values must fit the dtype the pooling sees."""
    pool = WindowPooling(8, mode)
    h = torch.randn(5, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pool(h, torch.tensor([0, 0, 1, 1, 1]), 2)  # float32 in (a LayerNorm's), bf16 scores
    assert out.shape == (2, 8) and torch.isfinite(out.float()).all()
