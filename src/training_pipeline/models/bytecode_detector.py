"""The bytecode detector: multi-label vulnerability classes and contract family from EVM runtime bytecode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from training_pipeline.metrics.classification import FlagBudget
from training_pipeline.models.base import OPTIM_KEYS
from training_pipeline.models.bytecode_pretrain import load_encoder_weights
from training_pipeline.models.contract_classifier import ContractClassifier
from training_pipeline.models.nets.cnn import BytecodeCNN


class BytecodeDetector(ContractClassifier):
    """A dilated residual CNN over opcode ids with two heads: vulnerability logits (sigmoid) and family.

    Everything needed to predict (dimensions, label maps, tokenizer state, tuned per-class thresholds) is
    stored in the checkpoint, so ``BytecodeDetector.load_from_checkpoint(path)`` needs no config.
    """

    def __init__(
        self,
        vocab_size: int,
        class_names: list[str],
        family_names: list[str],
        pos_weight: list[float] | None = None,
        metric_classes: list[str] | None = None,
        tokenizer_state: dict[str, Any] | None = None,
        embed_dim: int = 32,
        channels: int = 96,
        depth: int = 4,
        kernel_size: int = 5,
        dilation_base: int = 2,
        dropout: float = 0.1,
        downsample: int = 4,
        loss: str = "bce",
        focal_gamma: float = 2.0,
        family_loss_weight: float = 0.3,
        max_audited_flag_rate: FlagBudget = None,
        max_audited_flagged_share: float | None = None,
        encoder_ckpt: str | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler)
        self.save_hyperparameters(ignore=OPTIM_KEYS)
        self.net = BytecodeCNN(
            vocab_size, embed_dim, channels, depth, kernel_size, dilation_base, dropout, downsample
        )
        if encoder_ckpt:  # a bytecode_pretrain checkpoint's encoder as the starting point
            load_encoder_weights(self.net, encoder_ckpt, self.hparams)
            self.hparams.encoder_ckpt = None  # the weights travel in this model's checkpoints: no reload
        self.dropout = nn.Dropout(dropout)
        self.vuln_head = nn.Linear(self.net.out_dim, len(class_names))
        self.family_head = nn.Linear(self.net.out_dim, len(family_names))
        self.init_labels(class_names, family_names, pos_weight, metric_classes)

    # -- forward ------------------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(vulnerability logits, family logits)."""
        h = self.dropout(self.net(input_ids))
        return self.vuln_head(h), self.family_head(h)

    @torch.no_grad()
    def predict_proba(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Vulnerability probabilities (B, C)."""
        return torch.sigmoid(self(input_ids)[0])

    def _logits(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self(batch["input_ids"])
