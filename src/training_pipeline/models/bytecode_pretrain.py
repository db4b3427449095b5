"""Self-supervised pretraining of the bytecode detector's encoder: compile variants as positive pairs.

``python src/train.py model=bytecode_pretrain`` trains ``BytecodeCNN`` + a small projection head with NT-Xent
(InfoNCE over the batch) so that one contract's optimizer-off and optimizer-on bytecode embed close together
and apart from the other contracts; ``model=bytecode_detector model.encoder_ckpt=<run>/checkpoints/best.ckpt``
then starts the detector's ``net`` from it (``load_encoder_weights``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from training_pipeline.errors import ConfigError
from training_pipeline.models.base import OPTIM_KEYS, BaseModule
from training_pipeline.models.checkpoint import load_checkpoint
from training_pipeline.models.nets.cnn import CNN_ARGS, BytecodeCNN

# hparams that decide the encoder's weights' shapes and inputs: a detector must match them to take them over
ENCODER_KEYS = (*(k for k in CNN_ARGS if k != "dropout"), "tokenizer_state")
ENCODER_DEFAULTS = {"pooling": "max_mean"}  # keys newer than some checkpoints: what those were built with


def nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (SimCLR): each of the 2N embeddings must pick its partner among the other 2N - 1 by cosine
    similarity / ``temperature``; the mean cross-entropy. Row i of ``z_a`` and of ``z_b`` are a pair."""
    z = F.normalize(torch.cat([z_a, z_b]).float(), dim=1)
    n = len(z_a)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, partner)


def pair_accuracy(z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
    """Share of rows of ``z_a`` whose most cosine-similar row of ``z_b`` is their own partner."""
    sim = F.normalize(z_a.float(), dim=1) @ F.normalize(z_b.float(), dim=1).T
    return (sim.argmax(1) == torch.arange(len(z_a), device=sim.device)).float().mean()


class BytecodePretrain(BaseModule):
    """``BytecodeCNN`` + projection head trained contrastively on compile-variant pairs (no labels).

    Logs ``{train,val,test}`` contrastive loss and ``pair_acc`` (val/test pairs are optimizer off vs on:
    the share of off-builds whose nearest on-build in the batch, by projected embedding, is their own;
    1/batch by chance, so it depends on the batch size).
    """

    metric_classes: list[str] = []  # no per-class metrics (the test report prints only the averages)

    def __init__(
        self,
        vocab_size: int,
        tokenizer_state: dict[str, Any] | None = None,
        embed_dim: int = 32,
        channels: int = 96,
        depth: int = 4,
        kernel_size: int = 5,
        dilation_base: int = 2,
        dropout: float = 0.1,
        downsample: int = 4,
        pooling: str = "max_mean",
        projection_dim: int = 64,
        temperature: float = 0.1,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler)
        if not temperature > 0:
            raise ConfigError(f"model.temperature={temperature}: expected > 0")
        self.save_hyperparameters(ignore=OPTIM_KEYS)
        self.net = BytecodeCNN.from_hparams(self.hparams)
        self.projection = nn.Sequential(
            nn.Linear(self.net.out_dim, self.net.out_dim),
            nn.GELU(),
            nn.Linear(self.net.out_dim, projection_dim),
        )

    @staticmethod
    def logged_metric_names() -> set[str]:
        names = {f"{s}/{m}" for s in ("val", "test") for m in ("contrastive_loss", "pair_acc")}
        return names | {"train/loss"}

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Projected embeddings (batch, projection_dim) of opcode ids."""
        return self.projection(self.net(input_ids))

    def _pair_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(NT-Xent loss, pair accuracy) of a batch of pairs."""
        z_a, z_b = self(batch["input_ids_a"]), self(batch["input_ids_b"])
        return nt_xent(z_a, z_b, self.hparams.temperature), pair_accuracy(z_a, z_b)

    def batch_size_of(self, batch: dict[str, torch.Tensor]) -> int:
        return len(batch["index"])

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._pair_step(batch)[0]

    def eval_step(self, stage: str, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, acc = self._pair_step(batch)
        n = self.batch_size_of(batch)
        self.log(f"{stage}/contrastive_loss", loss, on_epoch=True, sync_dist=True, batch_size=n)
        self.log(f"{stage}/pair_acc", acc, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=n)


def load_encoder_weights(net: BytecodeCNN, path: str | Path, hparams: Mapping[str, Any]) -> None:
    """Copy the encoder of a ``BytecodePretrain`` checkpoint into ``net`` (a ``BytecodeCNN`` built from
    ``hparams``). A missing file is a ConfigError, a corrupted one a DataError, each naming it; other encoder
    sizes or another tokenizer a ConfigError naming the values."""
    if not Path(path).is_file():
        raise ConfigError(f"{path}: no such bytecode encoder checkpoint (model.encoder_ckpt)")
    pretrained = load_checkpoint(BytecodePretrain, path)
    saved = pretrained.hparams

    def value(params: Mapping[str, Any], key: str) -> Any:
        return params.get(key, ENCODER_DEFAULTS.get(key))

    if diff := [k for k in ENCODER_KEYS if value(saved, k) != value(hparams, k)]:
        shown = ", ".join(
            f"{k}={value(hparams, k)} (checkpoint: {value(saved, k)})" for k in diff if k != "tokenizer_state"
        )
        hint = "data.tokenizer differs from the pretraining's" if "tokenizer_state" in diff else ""
        raise ConfigError(
            f"model.encoder_ckpt={path}: its encoder does not fit this model: "
            f"{'; '.join(x for x in (shown, hint) if x)}; use the pretraining's sizes and data.tokenizer"
        )
    net.load_state_dict(pretrained.net.state_dict())
