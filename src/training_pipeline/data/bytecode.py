"""LightningDataModule over contract runtime bytecode, tokenized into opcode ids."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from training_pipeline import taxonomy
from training_pipeline.data.contracts import SPLITS, ColumnDataset, ContractDataModule, label_columns
from training_pipeline.data.evm import EvmTokenizer
from training_pipeline.data.featurizers import BytecodeFeaturizer, pad_sequences
from training_pipeline.utils.checks import config_dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenizerConfig:
    """``data.tokenizer.*``: opcode tokenizer options."""

    push_buckets: int | None = None
    strip_metadata: bool = True


class TokenizedContracts(ColumnDataset):
    """Per contract: opcode ids (``input_ids``), multi-hot labels and their assessed mask, family index and
    record index."""

    def lengths(self) -> list[int]:
        """Opcode count per contract (for length-bucketed batches)."""
        return [len(x) for x in self.columns["input_ids"]]


def collate(batch: list[dict[str, Any]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence of the batch (not to max_length: most contracts are far shorter)."""
    ids = [b["input_ids"] for b in batch]
    return {
        "input_ids": pad_sequences(ids, pad_id),
        "lengths": torch.tensor([len(x) for x in ids]),
        **label_columns(batch),
    }


class ContractBytecodeDataModule(ContractDataModule):
    """Contracts' runtime bytecode → opcode ids, from any contract source (generated corpus by default).

    Records, sources and grouped splits come from ``ContractDataModule``. The tokenizer is fixed (no
    fitting), so nothing leaks from val/test into the features.
    """

    needs = "bytecode"
    collate_fn = staticmethod(collate)

    def __init__(
        self,
        *args: Any,
        tokenizer: dict | None = None,
        max_length: int = 8192,
        truncation: str = "head_tail",
        length_buckets: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.tokenizer_cfg = config_dataclass(TokenizerConfig, tokenizer, "data.tokenizer")
        self.featurizer = BytecodeFeaturizer(EvmTokenizer(**vars(self.tokenizer_cfg)), max_length, truncation)
        self.length_buckets = length_buckets

    @property
    def tokenizer(self) -> EvmTokenizer:
        return self.featurizer.tokenizer

    def use_tokenizer_state(self, state: dict[str, Any]) -> None:
        """Featurize with a trained model's tokenizer settings (eval and predict)."""
        f = self.featurizer
        self.featurizer = BytecodeFeaturizer(EvmTokenizer.from_state_dict(state), f.max_length, f.truncation)

    def featurize(self, records: list[dict[str, Any]]) -> None:
        """Opcode ids of every record, split into the datasets of ``self.splits``."""
        ids = [self.featurizer.encode(r["bytecode"], source=f"record {r['id']!r}") for r in records]
        labels = np.array([taxonomy.multi_hot(r["labels"]) for r in records], dtype=np.float32)
        masks = self.mask_matrix()
        families = self.family_index()
        for split in (*SPLITS, "all"):
            idx = self.indices(split)
            self.splits[split] = TokenizedContracts(
                input_ids=[ids[i] for i in idx],
                labels=labels[idx],
                label_mask=masks[idx],
                family=families[idx],
                index=idx,
            )

    # -- what the model needs to know -----------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.featurizer.vocab_size

    def model_kwargs(self) -> dict[str, Any]:
        """Dimensions and label maps the model is built with (saved in its checkpoint)."""
        return {
            **self.label_kwargs(),
            "vocab_size": self.vocab_size,
            "tokenizer_state": self.tokenizer.state_dict(),
        }
