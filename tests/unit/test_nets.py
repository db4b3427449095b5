"""Network pieces: the CNN's cheaper CPU dropout keeps nn.Dropout's contract."""

from __future__ import annotations

import pytest
import torch

from training_pipeline.models.nets.cnn import MaskDropout


def test_mask_dropout_drops_p_and_keeps_the_expectation() -> None:
    torch.manual_seed(0)
    drop = MaskDropout(0.1).train()
    x = torch.ones(64, 96, 128)
    y = drop(x)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.9, abs=0.003)
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.9))  # survivors scaled by 1 / keep
    assert y.mean().item() == pytest.approx(1.0, abs=0.005)
    # the mask is not one pattern repeated along a row or across the int16 lanes of a word
    assert not torch.equal(kept[0, 0], kept[0, 1]) and kept.view(-1, 4).float().mean(0).std() < 0.01


def test_mask_dropout_gradient_is_the_mask_and_eval_is_identity() -> None:
    drop = MaskDropout(0.3).train()
    x = torch.randn(8, 16, 32, requires_grad=True)
    torch.manual_seed(1)
    y = drop(x)
    y.sum().backward()
    expected = (y.detach() != 0).float() / (1 - 0.3)
    assert torch.allclose(x.grad, expected, atol=1e-4)
    torch.manual_seed(1)
    assert torch.equal(drop(x), y)  # seeded: the same mask again
    assert drop.eval()(x) is x


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_mask_dropout_edges(p: float) -> None:
    x = torch.randn(4, 8)
    y = MaskDropout(p).train()(x)
    assert torch.equal(y, x if p == 0.0 else torch.zeros_like(x))


def test_mask_dropout_rejects_a_bad_probability() -> None:
    with pytest.raises(ValueError, match="1.5"):
        MaskDropout(1.5)
