"""Network pieces: the CNN's cheaper CPU dropout keeps nn.Dropout's contract; a contract's CNN features do not
depend on the other contracts of its batch."""

from __future__ import annotations

import pytest
import torch

from training_pipeline.errors import ConfigError
from training_pipeline.models.nets.cnn import BytecodeCNN, MaskDropout, masked_group_norm


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


@pytest.mark.parametrize(("downsample", "pooling"), [(1, "max_mean"), (4, "max_mean"), (4, "max")])
def test_cnn_features_of_a_contract_do_not_depend_on_its_batch(downsample: int, pooling: str) -> None:
    """Padded beside a longer contract (pad id 0), a short contract gets the features it gets alone: the
    blocks' norm counts real positions only and their convs read zeros past its end either way."""
    torch.manual_seed(0)
    net = BytecodeCNN(
        vocab_size=20, embed_dim=8, channels=6, depth=3, downsample=downsample, pooling=pooling
    ).eval()
    short = torch.randint(1, 20, (1, 37))
    batch = torch.zeros(2, 300, dtype=torch.long)
    batch[0, :37] = short[0]
    batch[1] = torch.randint(1, 20, (300,))
    with torch.no_grad():
        alone, together = net(short)[0], net(batch)
    assert torch.allclose(together[0], alone, atol=1e-5)
    assert not torch.allclose(together[1], alone, atol=1e-2)


def test_cnn_max_pooling_is_the_max_half_of_max_mean() -> None:
    """``pooling="max"`` keeps the max half of the ``max_mean`` features (the same weights give the same
    pre-norm maxima) and drops the mean half: one vector of ``channels``."""
    torch.manual_seed(0)
    both = BytecodeCNN(vocab_size=20, embed_dim=8, channels=6, depth=2).eval()
    only_max = BytecodeCNN(vocab_size=20, embed_dim=8, channels=6, depth=2, pooling="max").eval()
    state = {k: v for k, v in both.state_dict().items() if not k.startswith("norm.")}
    only_max.load_state_dict(state, strict=False)
    assert (only_max.out_dim, both.out_dim) == (6, 12)
    ids = torch.randint(1, 20, (3, 50))
    captured = {}
    for name, net in (("max_mean", both), ("max", only_max)):
        hook = net.norm.register_forward_hook(lambda _m, inp, _o, n=name: captured.__setitem__(n, inp[0]))
        with torch.no_grad():
            out = net(ids)
        hook.remove()
        assert out.shape == (3, net.out_dim)
    assert torch.allclose(captured["max"], captured["max_mean"][:, :6])


def test_cnn_rejects_an_unknown_pooling() -> None:
    with pytest.raises(ConfigError, match="model.pooling='avg'"):
        BytecodeCNN(vocab_size=20, pooling="avg")


def test_masked_group_norm_is_group_norm_without_padding() -> None:
    torch.manual_seed(0)
    norm = torch.nn.GroupNorm(1, 6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(3, 6, 11)
    assert torch.allclose(masked_group_norm(x, torch.ones(3, 1, 11), norm), norm(x), atol=1e-5)
    mask = torch.ones(3, 1, 11)
    mask[0, :, 7:] = 0  # the first row's last four positions are padding: its statistics ignore them
    padded = masked_group_norm(x * mask, mask, norm)
    assert torch.allclose(padded[0, :, :7], norm(x[:1, :, :7])[0], atol=1e-5)
    assert torch.allclose(padded[1:], norm(x[1:]), atol=1e-5)
    with pytest.raises(ValueError, match="one group only"):
        masked_group_norm(x, mask, torch.nn.GroupNorm(2, 6))
