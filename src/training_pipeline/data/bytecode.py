"""LightningDataModule over contract runtime bytecode, tokenized into opcode ids."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from training_pipeline import taxonomy
from training_pipeline.data.contracts import SPLITS, ContractDataModule
from training_pipeline.data.evm import EvmTokenizer
from training_pipeline.errors import ConfigError
from training_pipeline.utils.checks import config_dataclass

log = logging.getLogger(__name__)

TRUNCATIONS = ("head", "head_tail")


@dataclass(frozen=True)
class TokenizerConfig:
    """``data.tokenizer.*``: opcode tokenizer options."""

    push_buckets: int | None = None
    strip_metadata: bool = True


def truncate(ids: np.ndarray, max_length: int, strategy: str) -> np.ndarray:
    """Fit a long opcode sequence into ``max_length``.

    ``head`` keeps the beginning (dispatcher and the first functions); ``head_tail`` keeps the first three
    quarters and the last quarter of the budget, so code solc places at the end (internal functions,
    libraries) is seen too. Sequences that fit are untouched.
    """
    if len(ids) <= max_length:
        return ids
    if strategy == "head":
        return ids[:max_length]
    tail = max_length // 4
    return np.concatenate([ids[: max_length - tail], ids[len(ids) - tail :]])


class TokenizedContracts(Dataset):
    """Token ids, multi-hot labels and family index per contract."""

    def __init__(
        self, ids: list[np.ndarray], labels: np.ndarray, families: np.ndarray, index: np.ndarray
    ) -> None:
        self.ids, self.labels, self.families, self.index = ids, labels, families, index

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            "input_ids": self.ids[i],
            "labels": self.labels[i],
            "family": self.families[i],
            "index": self.index[i],
        }

    def lengths(self) -> list[int]:
        return [len(x) for x in self.ids]


def collate(batch: list[dict[str, Any]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence of the batch (not to max_length: most contracts are far shorter)."""
    longest = max(len(b["input_ids"]) for b in batch)
    ids = np.full((len(batch), longest), pad_id, dtype=np.int64)
    for row, b in enumerate(batch):
        ids[row, : len(b["input_ids"])] = b["input_ids"]
    return {
        "input_ids": torch.from_numpy(ids),
        "lengths": torch.tensor([len(b["input_ids"]) for b in batch]),
        "labels": torch.from_numpy(np.stack([b["labels"] for b in batch])),
        "family": torch.tensor([b["family"] for b in batch], dtype=torch.long),
        "index": torch.tensor([b["index"] for b in batch], dtype=torch.long),
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
        if truncation not in TRUNCATIONS:
            raise ConfigError(f"data.truncation={truncation!r}: expected one of {TRUNCATIONS}")
        self.max_length, self.truncation, self.length_buckets = max_length, truncation, length_buckets
        self.tokenizer = EvmTokenizer(**vars(self.tokenizer_cfg))

    def use_tokenizer_state(self, state: dict[str, Any]) -> None:
        """Featurize with a trained model's tokenizer settings (eval and predict)."""
        self.tokenizer = EvmTokenizer.from_state_dict(state)

    def featurize(self, records: list[dict[str, Any]]) -> None:
        ids = [self._encode(r) for r in records]
        labels = np.array([taxonomy.multi_hot(r["labels"]) for r in records], dtype=np.float32)
        families = self.family_index()
        for split in (*SPLITS, "all"):
            idx = self.indices(split)
            self.splits[split] = TokenizedContracts([ids[i] for i in idx], labels[idx], families[idx], idx)

    def _encode(self, record: dict[str, Any]) -> np.ndarray:
        ids = self.tokenizer.encode(record["bytecode"], source=f"record {record['id']!r}")
        return truncate(ids, self.max_length, self.truncation)

    # -- what the model needs to know -----------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def model_kwargs(self) -> dict[str, Any]:
        """Dimensions and label maps the model is built with (saved in its checkpoint)."""
        return {
            **self.label_kwargs(),
            "vocab_size": self.vocab_size,
            "tokenizer_state": self.tokenizer.state_dict(),
        }
