"""Masked-language-model pretraining of the code analyzer's encoder on unlabeled Solidity source.

``python src/train.py model=code_analyzer_mlm`` trains it; ``model=code_analyzer model.encoder_ckpt=<ckpt>``
then starts the classifier from its encoder (and featurizes with its tokenizer). The best epoch's encoder is
also exported to ``<run>/encoder/`` (safetensors + config + tokenizer), a directory ``encoder_ckpt`` and
``pretrained_model_name_or_path`` accept.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from training_pipeline.errors import ConfigError
from training_pipeline.models.base import OPTIM_KEYS
from training_pipeline.models.code_analyzer import TOKENIZER_KEYS, TokenizerCarrier
from training_pipeline.utils.checkpoints import read_checkpoint


def mask_tokens(
    ids: torch.Tensor,
    attention_mask: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    prob: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of real, non-boundary tokens: of the chosen ``prob``, 80% <mask>, 10% random, 10% kept.

    Returns (masked ids, labels with -100 where nothing is predicted). The first and last real token of a
    window (<s>, </s>) are never chosen.
    """

    def rand(shape):
        return torch.rand(shape, generator=generator, device="cpu").to(ids.device)

    lengths = attention_mask.sum(1, keepdim=True)
    pos = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
    eligible = attention_mask.bool() & (pos > 0) & (pos < lengths - 1)
    chosen = (rand(ids.shape) < prob) & eligible
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    roll = rand(ids.shape)
    masked = torch.where(chosen & (roll < 0.8), torch.full_like(ids, mask_token_id), ids)
    random_ids = (rand(ids.shape) * vocab_size).long().clamp(max=vocab_size - 1)
    masked = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_ids, masked)
    return masked, labels


class CodeAnalyzerMLM(TokenizerCarrier):
    """The code analyzer's encoder with a tied masked-LM head."""

    metric_classes: list[str] = []  # no per-class metrics (the test report prints only the averages)

    def __init__(
        self,
        vocab_size: int,
        pad_token_id: int = 1,
        mask_token_id: int = 4,
        window_size: int = 256,
        tokenizer_state: dict[str, Any] | None = None,
        tokenizer_json: str | None = None,
        pretrained_model_name_or_path: str | None = None,
        encoder_config: dict[str, Any] | None = None,
        hidden_size: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        intermediate_size: int | None = None,
        max_positions: int | None = None,
        dropout: float = 0.1,
        mask_prob: float = 0.15,
        warmup_ratio: float = 0.06,
        export_encoder: bool = True,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler)
        if mask_token_id is None:
            raise ConfigError("the tokenizer has no mask token: masked-LM pretraining needs one")
        if not 0 < mask_prob < 1:
            raise ConfigError(f"model.mask_prob={mask_prob}: expected 0 < p < 1")
        self.save_hyperparameters(ignore=TOKENIZER_KEYS + OPTIM_KEYS)
        self.tokenizer_json = tokenizer_json
        hidden = self.build_encoder()
        self.transform = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden))
        self.decoder_bias = nn.Parameter(torch.zeros(self.encoder.config.vocab_size))

    @staticmethod
    def logged_metric_names() -> set[str]:
        names = {f"{s}/{m}" for s in ("val", "test") for m in ("loss", "mlm_accuracy")}
        return names | {"train/loss"}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits per position (decoder tied to the input embeddings)."""
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weight = self.encoder.get_input_embeddings().weight
        return F.linear(self.transform(h), weight, self.decoder_bias)

    def _step(self, batch: dict[str, torch.Tensor], generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        masked, labels = mask_tokens(
            batch["input_ids"],
            batch["attention_mask"],
            self.hparams.mask_token_id,
            self.hparams.vocab_size,
            self.hparams.mask_prob,
            generator,
        )
        sel = labels != -100
        logits = self(masked, batch["attention_mask"])[sel]
        target = labels[sel]
        if not len(target):
            return logits.sum() * 0.0, torch.tensor(0.0, device=self.device)
        loss = F.cross_entropy(logits.float(), target)
        acc = (logits.argmax(-1) == target).float().mean()
        return loss, acc

    def batch_size_of(self, batch: dict[str, torch.Tensor]) -> int:
        return len(batch["input_ids"])

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._step(batch)[0]

    def eval_step(self, stage: str, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        gen = torch.Generator().manual_seed(batch_idx)  # the same masks every epoch: comparable values
        loss, acc = self._step(batch, gen)
        n = self.batch_size_of(batch)
        self.log_loss(stage, loss, n)
        self.log(f"{stage}/mlm_accuracy", acc, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=n)

    def on_fit_end(self) -> None:
        """Export the best epoch's encoder (else the last one's) to ``<run>/encoder``."""
        if not self.hparams.export_encoder or not self.trainer.is_global_zero:
            return
        cb = self.trainer.checkpoint_callback
        best = getattr(cb, "best_model_path", "") if cb is not None else ""
        if best and Path(best).is_file():
            self.load_state_dict(read_checkpoint(best)["state_dict"])
        self.save_encoder(Path(self.trainer.default_root_dir) / "encoder")
