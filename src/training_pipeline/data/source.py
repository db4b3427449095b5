"""LightningDataModules over contract Solidity source: BPE token windows with a source line per token.

``ContractSourceDataModule`` (the code analyzer) keeps a contract's windows together: a batch is a flat list
of windows plus the contract each belongs to, so the model pools them into one prediction per contract.
``ContractSourceMLMDataModule`` (masked-LM pretraining) treats every window as a sample and needs no labels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock
from torch.utils.data import DataLoader, Dataset, Sampler

from training_pipeline.data.bpe import (
    BpeConfig,
    SourceTokenizer,
    cached_bpe,
    load_local_tokenizer,
    load_pretrained_tokenizer,
)
from training_pipeline.data.contracts import (
    SPLITS,
    ColumnDataset,
    ContractDataModule,
    label_columns,
    make_loader,
)
from training_pipeline.data.featurizers import SourceFeaturizer, WindowConfig, batch_windows, pad_windows
from training_pipeline.errors import ConfigError, DataError
from training_pipeline.utils.checkpoints import read_checkpoint
from training_pipeline.utils.checks import config_dataclass

log = logging.getLogger(__name__)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # datasets.map forks after the tokenizer ran

TOKENIZED_FORMAT = 1  # bump when the stored token columns change


class SourceWindows(ColumnDataset):
    """Per contract: its ``windows``, their token ``lines``, labels, their mask and loss weights, family,
    index and vulnerable lines."""

    @property
    def windows(self) -> Sequence[list[np.ndarray]]:
        return self.columns["windows"]

    def n_windows(self) -> list[int]:
        """Window count per contract (for window-budget batches)."""
        return [len(w) for w in self.windows]


class WindowCollator:
    """Flattens a batch of contracts into windows; ``window_owner`` says which contract each belongs to."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            **batch_windows([b["windows"] for b in batch], [b["lines"] for b in batch], self.pad_id),
            **label_columns(batch),
            "vulnerable_lines": [b["vulnerable_lines"] for b in batch],
        }


class WindowBudgetSampler(Sampler[list[int]]):
    """Batches of at most ``batch_size`` contracts and ``max_windows`` windows in all.

    Training shuffles within pools sorted by window count (similar lengths: little padding), then shuffles
    the batches; evaluation keeps the dataset order.
    """

    def __init__(
        self, n_windows: Sequence[int], batch_size: int, max_windows: int, shuffle: bool, seed: int = 0
    ):
        self.n_windows, self.batch_size, self.max_windows = list(n_windows), batch_size, max_windows
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self._len = len(self._batches(list(range(len(self.n_windows)))))

    def _batches(self, order: list[int]) -> list[list[int]]:
        batches, cur, used = [], [], 0
        for i in order:
            w = self.n_windows[i]
            if cur and (len(cur) >= self.batch_size or used + w > self.max_windows):
                batches.append(cur)
                cur, used = [], 0
            cur.append(i)
            used += w
        return [*batches, cur] if cur else batches

    def __iter__(self) -> Iterator[list[int]]:
        order = list(range(len(self.n_windows)))
        if not self.shuffle:
            return iter(self._batches(order))
        rng = random.Random(self.seed + self.epoch)
        self.epoch += 1
        rng.shuffle(order)
        span = self.batch_size * 50
        batches = []
        for start in range(0, len(order), span):
            batches += self._batches(sorted(order[start : start + span], key=self.n_windows.__getitem__))
        rng.shuffle(batches)
        return iter(batches)

    def __len__(self) -> int:
        return self._len


def _tokenize_batch(batch: dict[str, list], tokenizer: SourceTokenizer) -> dict[str, list]:
    ids, lines = tokenizer.encode_lines(batch["source_code"])
    return {"input_ids": ids, "token_lines": lines}


def tokenize_sources(
    ids: Sequence[str],
    sources: Sequence[str],
    tokenizer: SourceTokenizer,
    cache_dir: Path | None,
    num_proc: int,
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids and lines of every source through ``datasets.map`` (batched), cached on disk when asked."""
    import datasets  # heavy (pyarrow, pandas): only the datamodules' bulk tokenizing needs it

    h = hashlib.sha256(f"{TOKENIZED_FORMAT}:{tokenizer.fingerprint()}".encode())
    for rid, src in zip(ids, sources, strict=True):
        h.update(rid.encode() + b"\0" + hashlib.sha256((src or "").encode()).digest())
    key = h.hexdigest()[:16]

    def run() -> datasets.Dataset:
        ds = datasets.Dataset.from_dict({"id": list(ids), "source_code": [s or "" for s in sources]})
        procs = num_proc if num_proc > 1 and len(ids) >= 200 else None  # forking costs more than tiny sets
        return ds.map(
            _tokenize_batch,
            batched=True,
            batch_size=64,
            num_proc=procs,
            fn_kwargs={"tokenizer": tokenizer},
            remove_columns=["source_code"],
            desc="Tokenizing sources",
        )

    if cache_dir is None:
        ds = run()
    else:
        path = Path(cache_dir) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            if (path / "dataset_info.json").exists():
                ds = datasets.load_from_disk(str(path))
                log.info("Tokenized sources %s: reused from %s", key, path)
            else:
                ds = run()
                tmp = path.with_name(path.name + ".tmp")
                ds.save_to_disk(str(tmp))
                tmp.replace(path)
                ds = datasets.load_from_disk(str(path))
    columns = ds.to_dict()
    if columns["id"] != list(ids):
        raise DataError(f"tokenized cache {key}: ids out of order (delete the cache dir)")
    return columns["input_ids"], columns["token_lines"]


def tokenizer_from_artifact(path: str | Path) -> SourceTokenizer:
    """The tokenizer a code_analyzer_mlm checkpoint (``.ckpt``) or an exported model dir was trained with."""
    path = Path(path)
    if path.is_dir():
        meta = path / "source_tokenizer.json"
        state = json.loads(meta.read_text()) if meta.exists() else {}
        strip = state.pop("strip_comments", True)
        if state.get("kind") == "bpe":
            return SourceTokenizer(load_local_tokenizer(path), strip, {**state, "dir": str(path)})
        origin = {"kind": "pretrained", "name_or_path": str(path)}
        return SourceTokenizer(load_pretrained_tokenizer(str(path)), strip, origin)
    if not path.is_file():
        raise ConfigError(f"{path}: no such encoder checkpoint or directory (model.encoder_ckpt)")
    ckpt = read_checkpoint(path)
    state = dict(ckpt.get("hyper_parameters", {}).get("tokenizer_state") or {})
    if ckpt.get("tokenizer_json"):
        state["json"] = ckpt["tokenizer_json"]
    if not state:
        raise ConfigError(f"{path}: this checkpoint carries no tokenizer (not a code model checkpoint?)")
    return SourceTokenizer.from_state_dict(state)


class ContractSourceDataModule(ContractDataModule):
    """Contracts' Solidity source → overlapping BPE windows, from any contract source.

    The BPE is fitted on the training split only (cached per data version, training ids and config), or comes
    from a pretrained model (``tokenizer.pretrained``) or an MLM checkpoint (``tokenizer.from_checkpoint``).
    """

    needs = "source_code"

    def __init__(
        self,
        *args: Any,
        tokenizer: dict | None = None,
        window: dict | None = None,
        num_proc: int = 2,
        cache: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.tokenizer_cfg = config_dataclass(BpeConfig, tokenizer, "data.tokenizer")
        self.window_cfg = config_dataclass(WindowConfig, window, "data.window")
        self.num_proc, self.cache = num_proc, cache
        self.featurizer: SourceFeaturizer | None = None  # once the tokenizer is fitted or given
        self.collate_fn = None

    # -- tokenizer ------------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> SourceTokenizer | None:
        return self.featurizer.tokenizer if self.featurizer is not None else None

    def use_tokenizer_state(self, state: dict[str, Any]) -> None:
        """Featurize with a trained model's tokenizer (eval and predict); state as the checkpoint holds it."""
        self.featurizer = SourceFeaturizer(SourceTokenizer.from_state_dict(state), self.window_cfg)

    def _fit_tokenizer(self, records: list[dict[str, Any]]) -> SourceTokenizer:
        cfg = self.tokenizer_cfg
        if cfg.from_checkpoint:
            return tokenizer_from_artifact(cfg.from_checkpoint)
        if cfg.pretrained:
            name = cfg.pretrained
            tok = SourceTokenizer(load_pretrained_tokenizer(name), cfg.strip_comments, {"kind": "pretrained"})
            tok.origin["name_or_path"] = name
            return tok
        train = [records[i] for i in self.indices("train")]
        return cached_bpe(
            [r["source_code"] for r in train],
            [r["id"] for r in train],
            self.data_version,
            cfg,
            self.data_dir / "tokenizers",
        )

    # -- features -------------------------------------------------------------------------------------
    def featurize(self, records: list[dict[str, Any]]) -> None:
        """BPE windows of every record (the tokenizer fitted on train first), split into datasets."""
        if self.featurizer is None:
            self.featurizer = SourceFeaturizer(self._fit_tokenizer(records), self.window_cfg)
        self.collate_fn = WindowCollator(self.featurizer.pad_id)
        ids, lines = tokenize_sources(
            [r["id"] for r in records],
            [r["source_code"] for r in records],
            self.tokenizer,
            self.data_dir / "tokenized" if self.cache else None,
            self.num_proc,
        )
        self.n_tokens = [len(x) for x in ids]
        windows = [self.featurizer.windows(i, ln) for i, ln in zip(ids, lines, strict=True)]
        train_windows: Sequence | dict = windows
        if self.window_cfg.limit(train=True) != self.window_cfg.limit():  # training keeps fewer (or more)
            train_windows = {
                i: self.featurizer.windows(ids[i], lines[i], train=True)
                for i in self.split_labels("train")["index"]
            }
        vuln = [r.get("vulnerable_lines") or {} for r in records]
        for split in (*SPLITS, "all"):
            columns = self.split_labels(split)
            idx = columns["index"]
            source = train_windows if split == "train" else windows
            self.splits[split] = SourceWindows(
                windows=[source[i][0] for i in idx],
                lines=[source[i][1] for i in idx],
                vulnerable_lines=[vuln[i] for i in idx],
                **columns,
            )
        n_win = [len(w[0]) for w in windows]
        log.info(
            "Source windows: %.0f tokens and %.1f windows per contract (max %d), window %d",
            np.mean(self.n_tokens),
            np.mean(n_win),
            max(n_win),
            self.window_cfg.size,
        )

    def _loader(self, split: str, train: bool = False) -> DataLoader:
        data = self.splits[split]
        distributed = self.trainer is not None and self.trainer.world_size > 1
        common = {
            "collate_fn": self.collate_fn,
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.num_workers > 0,
        }
        if distributed:  # Lightning shards a plain sampler; our batch sampler would not be
            return DataLoader(data, batch_size=self.batch_size, shuffle=train, **common)
        sampler = WindowBudgetSampler(
            data.n_windows(), self.batch_size, self.window_cfg.max_batch_windows, train
        )
        return DataLoader(data, batch_sampler=sampler, **common)

    # -- what the model needs to know -----------------------------------------------------------------
    def tokenizer_kwargs(self) -> dict[str, Any]:
        """Vocabulary, special ids, window size and tokenizer state the model is built with."""
        self.setup()
        special = self.tokenizer.special_ids()
        return {
            "vocab_size": self.tokenizer.vocab_size,
            "pad_token_id": special["pad"],
            "mask_token_id": special["mask"],
            "window_size": self.window_cfg.size,
            "tokenizer_state": self.tokenizer.state_dict(),
            "tokenizer_json": self.tokenizer.tokenizer_json(),
        }

    def model_kwargs(self) -> dict[str, Any]:
        """Label maps, vocabulary and tokenizer the model is built with (saved in its checkpoint)."""
        kwargs = {**self.label_kwargs(), **self.tokenizer_kwargs()}
        kwargs.pop("mask_token_id")
        return kwargs


class WindowSamples(Dataset):
    """Every window of some contracts as its own sample (masked-LM pretraining)."""

    def __init__(self, windows: list[np.ndarray]) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.windows[i]


class MLMCollator:
    """Pads a batch of windows: ``input_ids`` and ``attention_mask``."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[np.ndarray]) -> dict[str, torch.Tensor]:
        ids, mask = pad_windows(batch, self.pad_id)
        return {"input_ids": ids, "attention_mask": mask}


MLM_ON = ("train", "all")


class ContractSourceMLMDataModule(ContractSourceDataModule):
    """Source windows without labels for masked-LM pretraining.

    ``mlm_on=train`` (default) pretrains on the training split's source only; ``all`` adds val and test
    source too (label-free, but the encoder then has seen the test contracts: memorization risk).
    Validation windows (val split) only monitor the masked-token accuracy.
    """

    needs_labels = False  # label-free: real_code alone is enough

    def __init__(self, *args: Any, mlm_on: str = "train", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if mlm_on not in MLM_ON:
            raise ConfigError(f"data.mlm_on={mlm_on!r}: expected one of {MLM_ON}")
        self.mlm_on = mlm_on

    def featurize(self, records: list[dict[str, Any]]) -> None:
        """BPE windows of every record (the tokenizer fitted on train first), split into datasets."""
        super().featurize(records)
        contracts = self.splits
        self.splits = {}
        for split in (*SPLITS, "all"):
            source = "all" if (split == "train" and self.mlm_on == "all") else split
            self.splits[split] = WindowSamples([w for ws in contracts[source].windows for w in ws])
        self.collate_fn = MLMCollator(self.tokenizer.special_ids()["pad"])

    def _loader(self, split: str, train: bool = False) -> DataLoader:
        return make_loader(
            self.splits[split], self.batch_size, self.collate_fn, self.num_workers, self.pin_memory, train
        )

    def model_kwargs(self) -> dict[str, Any]:
        """The tokenizer the masked-LM model is built with."""
        return self.tokenizer_kwargs()
