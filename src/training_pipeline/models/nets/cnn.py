"""1-D CNN over opcode embeddings: residual dilated conv blocks and masked global pooling."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from training_pipeline.errors import ConfigError

SEQUENCE_POOLINGS = ("max_mean", "max")
# the constructor arguments a model's hparams hold under the same names (``BytecodeCNN.from_hparams``)
CNN_ARGS = (
    "vocab_size",
    "embed_dim",
    "channels",
    "depth",
    "kernel_size",
    "dilation_base",
    "dropout",
    "downsample",
    "pooling",
)
_INT64 = torch.iinfo(torch.int64)


class MaskDropout(nn.Module):
    """``nn.Dropout`` whose CPU mask takes four elements from each random 64-bit word.

    Hand-written because torch's CPU dropout draws one Mersenne-Twister number per element: on this CNN's
    block activations (64 x 96 x 512) its forward and backward took 24-27 ms against 7 ms here, and a whole
    training step was 1.12-1.25x slower on 2 cores (``make bench ARGS="--only dropout"``). Same expectation
    (the survivors are scaled by 1 / keep); ``p`` is rounded to a multiple of 1/65536. Off the CPU it is
    ``F.dropout``.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability {p}: expected 0 <= p <= 1")
        self.p = p
        self._cut = round(p * 65536) - 32768  # a uniform int16 below this is dropped
        self._scale = 65536 / (32768 - self._cut) if self._cut < 32768 else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, training=True)
        n = x.numel()
        words = torch.randint(_INT64.min, _INT64.max, ((n + 3) // 4,), dtype=torch.int64)
        keep = words.view(torch.int16)[:n].view(x.shape) >= self._cut
        return x * keep.to(x.dtype).mul_(self._scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def masked_group_norm(x: torch.Tensor, mask: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """``norm`` (one group: statistics over channels and positions) over the positions ``mask`` keeps; ``x``
    must be zero elsewhere (as it is throughout ``BytecodeCNN``).

    ``nn.GroupNorm`` also counts the padding of a batch, so a contract's features would depend on how long
    the others in its batch are (a 21-opcode contract's class probabilities moved by up to 0.39 when padded
    to 4,096). Without padding this is exactly ``norm(x)``. Forward and backward it takes four to eight times
    ``nn.GroupNorm``'s time (``make bench ARGS="--only dropout"``: ``masked_norm_cost``), so the blocks use it
    where it matters, in eval mode."""
    if norm.num_groups != 1:
        raise ValueError(f"masked_group_norm: one group only, got {norm.num_groups}")
    if bool(mask.all()):
        return norm(x)
    xf = x.float()
    count = (mask.sum(dim=(1, 2), keepdim=True) * x.shape[1]).clamp(min=1)
    mean = xf.sum(dim=(1, 2), keepdim=True) / count
    var = ((xf * xf).sum(dim=(1, 2), keepdim=True) / count - mean * mean).clamp(min=0)
    scale = norm.weight.float()[None, :, None] * torch.rsqrt(var + norm.eps)
    shift = norm.bias.float()[None, :, None] - mean * scale
    return torch.addcmul(shift, xf, scale).to(x.dtype)


class ResidualDilatedBlock(nn.Module):
    """Pre-norm conv block: norm → GELU → dilated conv → dropout → conv, plus the skip connection.

    In eval mode (validation, test, stacked predictions, scans) padding stays out: the norm's statistics count
    real positions only (``masked_group_norm``), and the dilated conv reads zeros past a contract's end, so a
    contract scores the same alone or beside longer ones. Training batches are length-bucketed, so little of
    them is padding: there the fused ``nn.GroupNorm`` (4-8x cheaper; with the masked norm in training a
    make-train epoch took 53-57 s, against 46-51 s on the same machine without) counts it."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        pad = dilation * (kernel_size - 1) // 2
        self.body = nn.Sequential(
            nn.GroupNorm(1, channels),
            nn.GELU(),
            nn.Conv1d(channels, channels, kernel_size, padding=pad, dilation=dilation),
            MaskDropout(dropout),
            nn.GELU(),
            nn.Conv1d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        norm, act, conv, dropout, act2, proj = self.body  # a Sequential: the checkpoints' parameter names
        h = act(norm(x) if self.training else masked_group_norm(x, mask, norm)) * mask
        return (x + proj(act2(dropout(conv(h))))) * mask


class BytecodeCNN(nn.Module):
    """Embeds opcode ids, convolves, max-pools by ``downsample``, then runs ``depth`` residual blocks with
    dilations 1, b, b², …, and pools over the sequence: max and mean (``pooling="max_mean"``) or max only
    (``"max"``: no mean half, which falls as more code surrounds a pattern; the blocks' norm still reads
    the whole contract).

    The stem sees every opcode; pooling keeps the strongest local detections (a CALL, an SSTORE) while
    cutting the cost of the blocks by ``downsample``. The receptive field grows exponentially with depth,
    so a few blocks relate patterns hundreds of opcodes apart at linear cost in length.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 64,
        channels: int = 128,
        depth: int = 4,
        kernel_size: int = 5,
        dilation_base: int = 2,
        dropout: float = 0.1,
        downsample: int = 4,
        pad_id: int = 0,
        pooling: str = "max_mean",
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={kernel_size}: must be odd to keep the sequence length")
        if pooling not in SEQUENCE_POOLINGS:
            raise ConfigError(f"model.pooling={pooling!r}: expected one of {SEQUENCE_POOLINGS}")
        self.pad_id, self.downsample, self.pooling = pad_id, downsample, pooling
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.stem = nn.Conv1d(embed_dim, channels, kernel_size, padding=kernel_size // 2)
        self.blocks = nn.ModuleList(
            ResidualDilatedBlock(channels, kernel_size, dilation_base**i, dropout) for i in range(depth)
        )
        self.out_dim = channels if pooling == "max" else 2 * channels
        self.norm = nn.LayerNorm(self.out_dim)

    @classmethod
    def from_hparams(cls, hparams: Any) -> BytecodeCNN:
        """The CNN a model's saved hyperparameters describe (``CNN_ARGS``)."""
        return cls(**{k: hparams[k] for k in CNN_ARGS})

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(batch, length) ids → (batch, ``out_dim``) pooled features."""
        mask = (input_ids != self.pad_id).unsqueeze(1).to(self.embed.weight.dtype)  # (B, 1, L)
        x = self.stem(self.embed(input_ids).transpose(1, 2)) * mask
        if self.downsample > 1:
            neg = torch.finfo(x.dtype).min
            x = F.max_pool1d(x.masked_fill(mask == 0, neg), self.downsample, ceil_mode=True)
            mask = F.max_pool1d(mask, self.downsample, ceil_mode=True)
            x = x * mask  # windows of padding only: back to zero
        for block in self.blocks:
            x = block(x, mask)
        neg = torch.finfo(x.dtype).min
        pooled_max = x.masked_fill(mask == 0, neg).amax(dim=2)
        if self.pooling == "max":
            return self.norm(pooled_max)
        pooled_mean = x.sum(dim=2) / mask.sum(dim=2).clamp(min=1)
        return self.norm(torch.cat([pooled_max, pooled_mean], dim=1))
