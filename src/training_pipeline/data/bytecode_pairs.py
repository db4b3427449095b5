"""Pairs of one contract's bytecode under two compile settings, for self-supervised (contrastive) pretraining.

The optimizer rewrites a contract's bytecode without changing what it does, so the optimizer-off and
optimizer-on builds of one contract (``bytecode_variants``: ``o0``, ``o1-r200``, ...) are a positive pair
and the other contracts of the batch are negatives. No label is read.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from training_pipeline.data.bytecode import ContractBytecodeDataModule, record_variants
from training_pipeline.data.contracts import SPLITS
from training_pipeline.data.featurizers import pad_sequences
from training_pipeline.errors import ConfigError, DataError

log = logging.getLogger(__name__)


class VariantPairs(Dataset):
    """Per contract, the opcode ids of two or more compile variants; an item is one pair of them.

    ``random_pairs``: each access draws two different variants (torch's RNG, so seeded runs repeat and
    every epoch draws anew); otherwise the first two, in the order given (a fixed pair for evaluation).
    """

    def __init__(
        self, variants: Sequence[list[np.ndarray]], index: Sequence[int], random_pairs: bool
    ) -> None:
        self.variants, self.index, self.random_pairs = list(variants), list(index), random_pairs

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        options = self.variants[i]
        a, b = torch.randperm(len(options))[:2].tolist() if self.random_pairs else (0, 1)
        return {"ids_a": options[a], "ids_b": options[b], "index": self.index[i]}

    def lengths(self) -> list[int]:
        """The longest variant per contract (for length-bucketed batches)."""
        return [max(len(x) for x in options) for options in self.variants]


def collate_pairs(batch: list[dict[str, Any]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Both sides of the pairs padded to their longest: ``input_ids_a``, ``input_ids_b``, and ``index``."""
    return {
        "input_ids_a": pad_sequences([b["ids_a"] for b in batch], pad_id),
        "input_ids_b": pad_sequences([b["ids_b"] for b in batch], pad_id),
        "index": torch.tensor([b["index"] for b in batch], dtype=torch.long),
    }


class ContractBytecodePairsDataModule(ContractBytecodeDataModule):
    """Compile-variant pairs of contract bytecode: records, sources and grouped splits as for the detector.

    Training items pair two different variants of one training record, drawn anew every epoch; val and test
    items are the fixed pair ``val_pair`` (optimizer off vs on by default). Records with fewer than two
    variants (or lacking ``val_pair``) are left out of their split and counted in the log; a training split
    with no pair at all is a DataError. Test records never reach the training split (grouped splits).
    """

    needs_labels = False  # label-free: real_code alone is enough
    collate_fn = staticmethod(collate_pairs)

    def __init__(self, *args: Any, val_pair: Sequence[str] = ("o0", "o1-r200"), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.variant is not None or self.train_variants:
            raise ConfigError(
                "data.variant / data.train_variants: not for variant pairs (every variant already pairs up); "
                "leave them null / false"
            )
        val_pair = list(val_pair)
        if len(val_pair) != 2 or len(set(val_pair)) != 2:
            raise ConfigError(
                f"data.val_pair={val_pair}: expected two different variant keys, e.g. [o0, o1-r200]"
            )
        self.val_pair = val_pair

    def featurize(self, records: list[dict[str, Any]]) -> None:
        """Opcode ids of the variants each split pairs up (train: every variant, cut to ``max_length``; else
        ``val_pair``, up to ``eval_max_length``), each variant encoded once."""
        encoded: dict[tuple[int, str], np.ndarray] = {}

        def encode(i: int, key: str) -> np.ndarray:
            if (i, key) not in encoded:
                code = record_variants(records[i])[key]
                encoded[i, key] = self.featurizer.encode(code, source=f"record {records[i]['id']!r}")
            return encoded[i, key]

        for split in (*SPLITS, "all"):
            variants, index = [], []
            idx = self.indices(split)
            for i in map(int, idx):
                codes = record_variants(records[i])
                keys = sorted(codes) if split == "train" else [k for k in self.val_pair if k in codes]
                if len(keys) >= 2:
                    cut = self._train_cut if split == "train" else (lambda x: x)
                    variants.append([cut(encode(i, k)) for k in keys])
                    index.append(i)
            wanted = "two compile variants" if split == "train" else f"variants {self.val_pair}"
            log.info(
                "Variant pairs, %s: %d records (%d left out: they lack %s)",
                split,
                len(index),
                len(idx) - len(index),
                wanted,
            )
            if split in ("train", "val") and not index:
                have = sorted({k for r in records for k in record_variants(r)})
                raise DataError(
                    f"data.sources {list(self.sources)}: no {split} record has {wanted} (variants found: "
                    f"{', '.join(have) or 'none'}); build the data with several compile_variants, e.g. "
                    "data.corpus.compile_variants=[{optimize:false},{optimize:true,runs:200}]"
                )
            self.splits[split] = VariantPairs(variants, index, random_pairs=split == "train")

    def model_kwargs(self) -> dict[str, Any]:
        """Vocabulary and tokenizer state the encoder is built with (saved in its checkpoint); no labels."""
        return {"vocab_size": self.vocab_size, "tokenizer_state": self.tokenizer.state_dict()}
