"""The bytecode detector: multi-label vulnerability classes and contract family from EVM runtime bytecode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from training_pipeline.errors import ConfigError
from training_pipeline.metrics.classification import FlagBudget, check_threshold_beta
from training_pipeline.models.base import OPTIM_KEYS
from training_pipeline.models.bytecode_pretrain import load_encoder_weights
from training_pipeline.models.contract_classifier import ContractClassifier
from training_pipeline.models.losses import bernoulli_symmetric_kl
from training_pipeline.models.nets.cnn import BytecodeCNN


class BytecodeDetector(ContractClassifier):
    """A dilated residual CNN over opcode ids with two heads: vulnerability logits (sigmoid) and family.

    Everything needed to predict (dimensions, label maps, tokenizer state, tuned per-class thresholds) is
    stored in the checkpoint, so ``BytecodeDetector.load_from_checkpoint(path)`` needs no config.

    Training batches of compile-variant pairs (``data.train_variants=pair``: ``pair_input_ids``, another
    compile setting of each contract) are scored in both settings: the loss is the mean of the two, plus
    ``variant_consistency`` × their symmetric KL, so a contract's probabilities (and thus which side of a
    tuned threshold it falls) do not depend on how it was compiled.
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
        pooling: str = "max_mean",
        loss: str = "bce",
        focal_gamma: float = 2.0,
        family_loss_weight: float = 0.3,
        max_audited_flag_rate: FlagBudget = None,
        max_audited_flagged_share: float | None = None,
        threshold_beta: float = 1.0,
        threshold_eras: list[str] | None = None,
        era_max_flags: int | None = None,
        encoder_ckpt: str | None = None,
        variant_consistency: float = 0.0,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler)
        check_threshold_beta(threshold_beta)
        if (
            isinstance(variant_consistency, bool)
            or not isinstance(variant_consistency, int | float)
            or (variant_consistency < 0)
        ):
            raise ConfigError(f"model.variant_consistency={variant_consistency!r}: expected a number >= 0")
        self.save_hyperparameters(ignore=OPTIM_KEYS)
        self.net = BytecodeCNN.from_hparams(self.hparams)
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

    def on_fit_start(self) -> None:
        """A consistency weight without variant pairs is a config error before any step runs (the
        datamodule's ``train_variants`` says whether its batches will carry pairs)."""
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "train_variants"):
            self._check_pairs(dm.train_variants == "pair")

    def _check_pairs(self, has_pairs: bool) -> None:
        weight = self.hparams.get("variant_consistency", 0.0)
        if weight > 0 and not has_pairs:
            raise ConfigError(
                f"model.variant_consistency={weight}: needs pairs of compile variants in the training "
                "batches (data.train_variants=pair)"
            )

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss of ``ContractClassifier``; on a batch of compile-variant pairs, the mean over both
        settings plus the consistency penalty between them."""
        weight = self.hparams.get("variant_consistency", 0.0)
        if "pair_input_ids" not in batch:
            self._check_pairs(False)
            return super().training_loss(batch)
        vuln_a, fam_a = self(batch["input_ids"])
        vuln_b, fam_b = self(batch["pair_input_ids"])
        loss = 0.5 * (self._loss(vuln_a, fam_a, batch) + self._loss(vuln_b, fam_b, batch))
        if weight > 0:
            consistency = bernoulli_symmetric_kl(vuln_a, vuln_b)
            if self._trainer is not None:  # also called outside a Trainer (tests, notebooks)
                self.log("train/variant_kl", consistency, batch_size=self.batch_size_of(batch))
            loss = loss + weight * consistency
        return loss
