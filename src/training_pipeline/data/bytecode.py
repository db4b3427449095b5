"""LightningDataModule over contract runtime bytecode, tokenized into opcode ids."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Sampler

from training_pipeline import taxonomy
from training_pipeline.data.evm import EvmTokenizer
from training_pipeline.data.splits import SplitConfig, split_names, stable_fold
from training_pipeline.utils.errors import ConfigError, DataError

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


class LengthBucketSampler(Sampler[list[int]]):
    """Shuffled batches of similar length: sorts within random pools of 50 batches, then shuffles batches."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, pool: int = 50) -> None:
        self.lengths, self.batch_size, self.seed, self.pool, self.epoch = (
            list(lengths),
            batch_size,
            seed,
            pool,
            0,
        )

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        self.epoch += 1
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        span = self.batch_size * self.pool
        batches = []
        for start in range(0, len(order), span):
            chunk = sorted(order[start : start + span], key=self.lengths.__getitem__)
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        return iter(batches)

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size


class ContractBytecodeDataModule(LightningDataModule):
    """Contracts' runtime bytecode → opcode ids, from the generated corpus or an interchange file (``path``).

    Splits are grouped (a contract, its safe twin and template siblings share a fold); ``split.strategy``
    picks random folds or leave-families-out. The tokenizer is fixed (no fitting), so nothing leaks.
    """

    def __init__(
        self,
        data_dir: str,
        path: str | None = None,
        corpus: dict | None = None,
        split: dict | None = None,
        fold: int = 0,
        tokenizer: dict | None = None,
        max_length: int = 8192,
        truncation: str = "head_tail",
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool = False,
        length_buckets: bool = True,
        eval_split: str = "test",
    ) -> None:
        super().__init__()
        from training_pipeline.corpus.build import CorpusConfig

        try:
            self.corpus_cfg = CorpusConfig(**dict(corpus or {})) if path is None else None
            self.split_cfg = SplitConfig(**dict(split or {}))
            self.tokenizer_cfg = TokenizerConfig(**dict(tokenizer or {}))
        except TypeError as exc:  # an unexpected keyword: a misspelled config key
            raise ConfigError(f"data config: {exc}".replace(".__init__()", ":")) from None
        if truncation not in TRUNCATIONS:
            raise ConfigError(f"data.truncation={truncation!r}: expected one of {TRUNCATIONS}")
        if eval_split not in ("test", "val", "train", "all"):
            raise ConfigError(f"eval split {eval_split!r}: expected test, val, train or all")
        self.data_dir, self.path, self.fold = Path(data_dir), path, fold
        self.max_length, self.truncation, self.batch_size = max_length, truncation, batch_size
        self.num_workers, self.pin_memory, self.length_buckets = num_workers, pin_memory, length_buckets
        self.eval_split = eval_split
        self.tokenizer = EvmTokenizer(**vars(self.tokenizer_cfg))
        self.class_names = list(taxonomy.VULNERABILITY_CLASSES)
        self.family_names = list(taxonomy.FAMILIES)
        self.records: list[dict[str, Any]] = []
        self.splits: dict[str, TokenizedContracts] = {}
        self.data_version: str | None = None
        self._corpus_path: Path | None = None

    def use_tokenizer_state(self, state: dict[str, Any]) -> None:
        """Featurize with a trained model's tokenizer settings (eval and predict)."""
        self.tokenizer = EvmTokenizer.from_state_dict(state)

    # -- data ---------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.path is not None:
            if not Path(self.path).exists():
                raise DataError(f"{self.path}: no such data file (data.path)")
            return
        from training_pipeline.corpus.build import build_corpus

        self._corpus_path = build_corpus(self.corpus_cfg, self.data_dir)

    def _load_records(self) -> list[dict[str, Any]]:
        if self.path is not None:
            import hashlib

            from training_pipeline.data.records import read_records

            records = read_records(self.path, require_bytecode=True)
            self.data_version = "sha256:" + hashlib.sha256(Path(self.path).read_bytes()).hexdigest()
            for r in records:
                if "fold" not in r:
                    r["fold"] = stable_fold(
                        str(r.get("group") or r["id"]), self.split_cfg.n_folds, self.split_cfg.seed
                    )
            return records
        from training_pipeline.corpus.build import build_corpus, load_corpus, load_manifest

        path = self._corpus_path or build_corpus(self.corpus_cfg, self.data_dir)
        self.data_version = "sha256:" + load_manifest(path)["content_hash"]
        ds = load_corpus(path).remove_columns(["source_code"])
        records = ds.to_list()
        for r in records:
            r["vulnerable_lines"] = json.loads(r["vulnerable_lines"])
        return records

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.records = self._load_records()
        fams = [r.get("family") for r in self.records]
        if self.split_cfg.strategy == "leave_families_out":
            missing = set(self.split_cfg.holdout_families) - set(fams)
            if missing:
                raise ConfigError(f"data.split.holdout_families: {sorted(missing)} not in the data")
        names = split_names([int(r["fold"]) for r in self.records], fams, self.split_cfg, self.fold)
        if self.path is not None and all("split" in r for r in self.records):
            names = [r["split"] for r in self.records]  # a file that fixes its own split keeps it
        ids = [self._encode(r) for r in self.records]
        labels = np.array([taxonomy.multi_hot(r["labels"]) for r in self.records], dtype=np.float32)
        fam_index = {f: i for i, f in enumerate(self.family_names)}
        families = np.array([fam_index.get(f, -100) for f in fams], dtype=np.int64)
        for split in ("train", "val", "test", "all"):
            idx = np.arange(len(self.records)) if split == "all" else np.flatnonzero(np.array(names) == split)
            self.splits[split] = TokenizedContracts([ids[i] for i in idx], labels[idx], families[idx], idx)
        sizes = {s: len(d) for s, d in self.splits.items()}
        log.info(
            "Data %s: %s (fold %d, %s split)", self.data_version, sizes, self.fold, self.split_cfg.strategy
        )
        if self.path is None or self.eval_split != "all":
            empty = [s for s in ("train", "val", "test") if sizes[s] == 0]
            if empty:
                raise DataError(f"split(s) {empty} are empty: use more contracts or another split/fold")

    def _encode(self, record: dict[str, Any]) -> np.ndarray:
        ids = self.tokenizer.encode(record["bytecode"], source=f"record {record['id']!r}")
        return truncate(ids, self.max_length, self.truncation)

    # -- what the model needs to know -----------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def pos_weight(self) -> list[float]:
        """neg/pos per class on the training split, clipped to [1, 50] (1 for classes never seen)."""
        y = self.splits["train"].labels
        pos = y.sum(0)
        weight = np.where(pos > 0, (len(y) - pos) / np.maximum(pos, 1), 1.0)
        return np.clip(weight, 1.0, 50.0).round(3).tolist()

    def model_kwargs(self) -> dict[str, Any]:
        """Dimensions and label maps the model is built with (saved in its checkpoint)."""
        self.setup()
        present = self.splits["train"].labels.sum(0) > 0
        return {
            "vocab_size": self.vocab_size,
            "class_names": self.class_names,
            "family_names": self.family_names,
            "pos_weight": self.pos_weight(),
            "metric_classes": [c for c, p in zip(self.class_names, present, strict=True) if p],
            "tokenizer_state": self.tokenizer.state_dict(),
        }

    # -- loaders ----------------------------------------------------------------------------------------
    def _loader(self, split: str, train: bool = False) -> DataLoader:
        data = self.splits[split]
        common = {
            "collate_fn": collate,
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.num_workers > 0,
        }
        distributed = self.trainer is not None and self.trainer.world_size > 1
        if train and self.length_buckets and not distributed:
            return DataLoader(
                data, batch_sampler=LengthBucketSampler(data.lengths(), self.batch_size), **common
            )
        return DataLoader(data, batch_size=self.batch_size, shuffle=train, **common)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.eval_split)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.eval_split)
