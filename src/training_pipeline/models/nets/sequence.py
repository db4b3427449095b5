"""Sequence encoders over transaction features: GRU / LSTM (bidirectional) or a transformer encoder (masked).

Padded steps never influence a real one, so a history's outputs do not depend on what it is batched with:
a recurrent direction reads each history from its first (forward) or its last real step (backward: every
history is reversed within its own length), so padding only ever comes after the real steps; the
transformer masks padded keys; pooling ignores padded positions. The reversal replaces packed sequences,
whose backward pass is several times slower on CPU (PyTorch 2.13: 1.3 s vs 0.3 s for a 32 x 256 batch).
"""

from __future__ import annotations

import math

import torch
from torch import nn

ENCODERS = ("gru", "lstm", "transformer")


class TransactionEmbedding(nn.Module):
    """Numeric features, method category and sender role → one ``d_model`` vector per transaction."""

    def __init__(
        self,
        n_numeric: int,
        n_methods: int,
        n_roles: int,
        d_model: int,
        method_dim: int = 8,
        role_dim: int = 4,
    ) -> None:
        super().__init__()
        self.method = nn.Embedding(n_methods, method_dim, padding_idx=0)
        self.role = nn.Embedding(n_roles, role_dim, padding_idx=0)
        self.proj = nn.Sequential(nn.Linear(n_numeric + method_dim + role_dim, d_model), nn.GELU())

    def forward(self, numeric: torch.Tensor, method: torch.Tensor, role: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.cat([numeric, self.method(method), self.role(role)], dim=-1))


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> torch.Tensor:
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe


class SequenceEncoder(nn.Module):
    """(B, T, d_model) inputs and a (B, T) mask → per-step states (B, T, out_dim), zero at padded steps."""

    def __init__(
        self,
        kind: str,
        d_model: int,
        hidden: int,
        layers: int = 1,
        bidirectional: bool = True,
        heads: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if kind not in ENCODERS:
            raise ValueError(f"model.encoder={kind!r}: expected one of {ENCODERS}")
        self.kind = kind
        if kind == "transformer":
            if d_model % heads:
                raise ValueError(f"model.d_model={d_model} must be divisible by model.heads={heads}")
            layer = nn.TransformerEncoderLayer(
                d_model,
                heads,
                dim_feedforward=2 * d_model,
                dropout=dropout,
                batch_first=True,
                norm_first=True,
            )
            self.net = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.out_dim = d_model
        else:
            rnn = nn.GRU if kind == "gru" else nn.LSTM
            directions = 2 if bidirectional else 1
            self.layers = nn.ModuleList(
                nn.ModuleList(
                    rnn(d_model if i == 0 else hidden * directions, hidden, batch_first=True)
                    for _ in range(directions)
                )
                for i in range(layers)
            )
            self.between = nn.Dropout(dropout)
            self.out_dim = hidden * directions

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.kind == "transformer":
            x = x + sinusoidal_positions(x.shape[1], x.shape[2], x.device)
            h = self.net(x, src_key_padding_mask=~mask)
        else:
            order = reversal_index(mask)
            h = x
            for i, directions in enumerate(self.layers):
                if i:
                    h = self.between(h)
                outs = [directions[0](h)[0]]
                if len(directions) > 1:
                    back = directions[1](reverse_within(h, order))[0]
                    outs.append(reverse_within(back, order))
                h = torch.cat(outs, dim=-1)
        return h * mask.unsqueeze(-1)


def reversal_index(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) gather index that reverses each row's real steps and leaves its padded steps in place."""
    steps = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
    flipped = mask.sum(1, keepdim=True) - 1 - steps
    return torch.where(flipped >= 0, flipped, steps)


def reverse_within(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    return x.gather(1, order.unsqueeze(-1).expand_as(x))


def masked_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean and max over real steps: (B, 2 * D)."""
    m = mask.unsqueeze(-1)
    mean = (h * m).sum(1) / m.sum(1).clamp(min=1)
    top = h.masked_fill(~m, torch.finfo(h.dtype).min).amax(1)
    return torch.cat([mean, top], dim=-1)


class BehaviorNet(nn.Module):
    """Embedding → sequence encoder → a history head on pooled states and a per-transaction head that sees
    its own state and the history's pooled context."""

    def __init__(
        self,
        n_numeric: int,
        n_methods: int,
        n_roles: int,
        n_classes: int,
        encoder: str = "gru",
        d_model: int = 64,
        hidden: int = 64,
        layers: int = 1,
        bidirectional: bool = True,
        heads: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.embed = TransactionEmbedding(n_numeric, n_methods, n_roles, d_model)
        self.encoder = SequenceEncoder(encoder, d_model, hidden, layers, bidirectional, heads, dropout)
        d = self.encoder.out_dim
        self.dropout = nn.Dropout(dropout)
        self.history_head = nn.Sequential(
            nn.Linear(2 * d, d), nn.GELU(), nn.Dropout(dropout), nn.Linear(d, n_classes)
        )
        self.tx_head = nn.Sequential(nn.Linear(3 * d, d), nn.GELU(), nn.Linear(d, 1))

    def forward(
        self, numeric: torch.Tensor, method: torch.Tensor, role: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(history logits (B, C), per-transaction logits (B, T))."""
        h = self.encoder(self.embed(numeric, method, role), mask)
        pooled = self.dropout(masked_pool(h, mask))
        context = pooled.unsqueeze(1).expand(-1, h.shape[1], -1)
        tx = self.tx_head(torch.cat([self.dropout(h), context], dim=-1)).squeeze(-1)
        return self.history_head(pooled), tx
