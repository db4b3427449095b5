"""The LightningDataModule over transaction histories: per-transaction feature sequences, history classes and
per-transaction anomaly flags.

Histories come from the simulator (``corpus/txsim.py``, one per contract of the generated corpus, split by
the corpus's grouped folds) or from explorer CSV exports (``data/tx_csv.py``, ``data=behavior_csv``). The
features (``data/featurizers.py``, ``TransactionFeaturizer``) are standardized with statistics fitted on the
training split only and saved in the model's checkpoint; transactions cut away by ``max_length`` are out of
the per-transaction metrics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from training_pipeline import taxonomy
from training_pipeline.corpus.build import CorpusConfig
from training_pipeline.corpus.txsim import SimConfig, build_histories, load_histories, load_manifest
from training_pipeline.data.contracts import SplitDataModule, make_loader
from training_pipeline.data.featurizers import (
    NUMERIC_FEATURES,
    FeatureNormalizer,
    TransactionFeaturizer,
    batch_histories,
)
from training_pipeline.data.tx_csv import check_bad_row_mode, files_version, import_histories
from training_pipeline.errors import ConfigError, DataError
from training_pipeline.utils.checks import config_dataclass
from training_pipeline.utils.splits import SplitConfig, split_names, stable_fold

log = logging.getLogger(__name__)

SPLITS = ("test", "val", "train", "all")


class TransactionSequences(Dataset):
    """Normalized feature sequences, method and role ids, history class and per-transaction flags."""

    def __init__(self, items: list[dict[str, np.ndarray]], index: np.ndarray) -> None:
        self.items, self.index = items, index

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**self.items[i], "index": int(self.index[i])}

    def lengths(self) -> list[int]:
        """Transaction count per history (for length-bucketed batches)."""
        return [len(x["method"]) for x in self.items]

    @property
    def labels(self) -> np.ndarray:
        return np.array([int(x["label"]) for x in self.items], dtype=np.int64)


def collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Pad to the batch's longest history; ``mask`` marks real transactions, ``tx_labels`` is -1 elsewhere."""
    inputs = batch_histories(batch)
    tx = np.full(tuple(inputs["mask"].shape), -1.0, dtype=np.float32)
    for row, b in enumerate(batch):
        tx[row, : len(b["method"])] = b["tx_labels"]
    return {
        **inputs,
        "labels": torch.tensor([int(b["label"]) for b in batch], dtype=torch.long),
        "tx_labels": torch.from_numpy(tx),
        "index": torch.tensor([b["index"] for b in batch], dtype=torch.long),
    }


@dataclass(frozen=True)
class Batching:
    """Loader options of the transaction datamodule."""

    batch_size: int
    num_workers: int
    pin_memory: bool
    length_buckets: bool


class TransactionDataModule(SplitDataModule):
    """Transaction histories → normalized feature sequences, history classes and per-transaction flags.

    ``path=None``: simulated histories of the generated corpus (``corpus``/``sim`` blocks), cached under
    ``data/behavior/<key>/``; splits follow the corpus's grouped folds (``split.strategy`` random or
    leave_families_out, as for the contract models), so every model of a contract sees it on the same side.
    ``path=...``: explorer CSV exports with a labels file (``data/tx_csv.py``); folds hash the ``group``
    (default: the address) unless the labels file fixes a ``split``.
    """

    def __init__(
        self,
        data_dir: str,
        path: str | None = None,
        labels_path: str | None = None,
        internal_path: str | None = None,
        token_path: str | None = None,
        label_map: dict[str, str] | None = None,
        on_bad_rows: str = "drop",
        corpus: dict | None = None,
        sim: dict | None = None,
        split: dict | None = None,
        fold: int = 0,
        max_length: int = 256,
        truncation: str = "tail",
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool = False,
        length_buckets: bool = True,
        eval_split: str = "test",
    ) -> None:
        super().__init__()
        self.corpus_cfg = config_dataclass(CorpusConfig, corpus, "data.corpus") if path is None else None
        self.sim_cfg = config_dataclass(SimConfig, sim, "data.sim") if path is None else None
        self.split_cfg = config_dataclass(SplitConfig, split, "data.split")
        if path is not None and labels_path is None:
            raise ConfigError("data.labels_path: required with data.path (a CSV of address,label)")
        self.featurizer = TransactionFeaturizer(FeatureNormalizer(), max_length, truncation)
        if eval_split not in SPLITS:
            raise ConfigError(f"eval split {eval_split!r}: expected test, val, train or all")
        check_bad_row_mode(on_bad_rows)
        self.data_dir, self.path, self.labels_path = Path(data_dir), path, labels_path
        self.internal_path, self.token_path, self.label_map = internal_path, token_path, dict(label_map or {})
        self.on_bad_rows, self.fold = on_bad_rows, fold
        self.eval_split = eval_split
        self.batching = Batching(batch_size, num_workers, pin_memory, length_buckets)
        self.batch_size = batch_size
        self.class_names = list(taxonomy.ANOMALY_TYPES)
        self.records: list[dict[str, Any]] = []
        self.splits: dict[str, TransactionSequences] = {}
        self.positions: list[np.ndarray] = []  # per record: which transactions its sequence kept
        self.data_version: str | None = None
        self.import_report: dict[str, Any] | None = None
        self._histories_path: Path | None = None

    @property
    def normalizer(self) -> FeatureNormalizer:
        return self.featurizer.normalizer

    def use_normalizer_state(self, state: dict[str, Any]) -> None:
        """Normalize with a trained model's statistics (eval and predict): nothing is refitted."""
        f = self.featurizer
        self.featurizer = TransactionFeaturizer(
            FeatureNormalizer.from_state_dict(state), f.max_length, f.truncation
        )

    # -- data ---------------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.path is not None:
            for p in (self.path, self.labels_path, self.internal_path, self.token_path):
                if p is not None and not Path(p).exists():
                    raise DataError(f"{p}: no such file or folder (data.*path)")
            return
        self._histories_path = build_histories(self.corpus_cfg, self.sim_cfg, self.data_dir)

    def _load(self) -> list[dict[str, Any]]:
        if self.path is not None:
            records, report = import_histories(
                self.path,
                self.labels_path,
                self.internal_path,
                self.token_path,
                self.label_map,
                self.on_bad_rows,
            )
            self.import_report = report.as_dict()
            self.data_version = files_version(
                self.path, self.labels_path, self.internal_path, self.token_path
            )
            for r in records:
                r["fold"] = stable_fold(str(r["group"]), self.split_cfg.n_folds, self.split_cfg.seed)
            return records
        path = self._histories_path or build_histories(self.corpus_cfg, self.sim_cfg, self.data_dir)
        self.data_version = "sha256:" + load_manifest(path)["content_hash"]
        return load_histories(path)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        if self.path is None and self.corpus_cfg.n_folds != self.split_cfg.n_folds:
            raise ConfigError(
                f"data.corpus.n_folds={self.corpus_cfg.n_folds} but data.split.n_folds="
                f"{self.split_cfg.n_folds}: the folds are the corpus's"
            )
        self.records = self._load()
        fams = [r.get("family") for r in self.records]
        if self.split_cfg.strategy == "leave_families_out":
            missing = set(self.split_cfg.holdout_families) - set(fams)
            if missing:
                raise ConfigError(f"data.split.holdout_families: {sorted(missing)} not in the data")
        names = split_names([int(r["fold"]) for r in self.records], fams, self.split_cfg, self.fold)
        names = [r.get("split") or n for r, n in zip(self.records, names, strict=True)]  # a fixed split wins
        label_index = {c: i for i, c in enumerate(self.class_names)}
        raw = [self.featurizer.features(r) for r in self.records]
        self.positions = [f.pop("positions") for f in raw]
        truncated = sum(
            len(keep) < len(r["method"]) for keep, r in zip(self.positions, self.records, strict=True)
        )
        for f, keep, r in zip(raw, self.positions, self.records, strict=True):
            f["tx_labels"] = np.asarray(r["anomaly"], dtype=np.float32)[keep]
            f["label"] = label_index[r["label"]]
        idx = {s: np.flatnonzero(np.array(names) == s) for s in ("train", "val", "test")}
        idx["all"] = np.arange(len(self.records))
        sizes = {s: len(i) for s, i in idx.items()}
        if self.path is None or self.eval_split != "all":
            empty = [s for s in ("train", "val", "test") if sizes[s] == 0]
            if empty:
                raise DataError(f"split(s) {empty} are empty: use more histories or another split/fold")
        if not self.featurizer.fitted:
            self.featurizer.fit([raw[i] for i in idx["train"]])
        raw = [self.featurizer.transform(f) for f in raw]
        for split, ids in idx.items():
            self.splits[split] = TransactionSequences([raw[i] for i in ids], ids)
        log.info(
            "Transaction histories %s: %s (fold %d, %s split), %d truncated to the %s %d",
            self.data_version,
            sizes,
            self.fold,
            self.split_cfg.strategy,
            truncated,
            self.featurizer.truncation,
            self.featurizer.max_length,
        )

    # -- what the model needs to know ---------------------------------------------------------------------
    def class_weights(self) -> list[float]:
        """Inverse class frequency on the training split (mean 1 over present classes), in [0.2, 10]."""
        counts = np.bincount(self.splits["train"].labels, minlength=len(self.class_names)).astype(float)
        present = counts > 0
        w = np.ones(len(counts))
        w[present] = counts[present].sum() / (present.sum() * counts[present])
        return np.clip(w, 0.2, 10.0).round(4).tolist()

    def tx_pos_weight(self) -> float:
        """neg/pos over the training split's labelled transactions, clipped to [1, 50]."""
        flags = np.concatenate([x["tx_labels"] for x in self.splits["train"].items])
        pos, neg = float((flags == 1).sum()), float((flags == 0).sum())
        return float(np.clip(neg / max(pos, 1.0), 1.0, 50.0).round(3)) if pos else 1.0

    def model_kwargs(self) -> dict[str, Any]:
        """Dimensions, label maps, loss weights and the normalizer state the model is built with."""
        self.setup()
        return {
            "class_names": self.class_names,
            "feature_names": list(NUMERIC_FEATURES),
            "n_methods": len(taxonomy.METHOD_CATEGORIES) + 1,
            "n_roles": len(taxonomy.SENDER_ROLES) + 1,
            "class_weights": self.class_weights(),
            "tx_pos_weight": self.tx_pos_weight(),
            "normalizer_state": self.normalizer.state_dict(),
        }

    # -- loaders ------------------------------------------------------------------------------------------
    def _loader(self, split: str, train: bool = False) -> DataLoader:
        b = self.batching
        return make_loader(
            self.splits[split],
            b.batch_size,
            collate,
            b.num_workers,
            b.pin_memory,
            train=train,
            length_buckets=b.length_buckets,
            distributed=self.trainer is not None and self.trainer.world_size > 1,
        )

    # -- identifiers for predictions ----------------------------------------------------------------------
    def tx_refs(self, index: int) -> list[str | int]:
        """Per kept transaction of record ``index``: its hash when imported, else its position."""
        rec, keep = self.records[index], self.positions[index]
        hashes = rec.get("hash")
        return [hashes[i] for i in keep] if hashes else keep.tolist()
