"""Transaction histories → per-transaction feature sequences, and the LightningDataModule over them.

Histories come from the simulator (``corpus/txsim.py``, one per contract of the generated corpus, split by
the corpus's grouped folds) or from explorer CSV exports (``data/tx_csv.py``, ``data=behavior_csv``).

Per transaction: time and block deltas, value, gas used, success, internal calls, the contract's balance
change, its running balance and the fraction of it moved, token amount, how often the sender was seen
before and the position in the history (numeric, log-scaled, then standardized with statistics fitted on
the training split only and saved in the model's checkpoint), plus the method category and sender role
(embedded by the model).

Long histories are cut to ``max_length`` transactions *after* the features are computed, so running
quantities (balance, sender counts, positions) still describe the whole history. ``truncation=tail`` (the
default) keeps the latest transactions, what a monitor sees; ``head`` keeps the first; ``head_tail`` keeps
the first quarter and the last three quarters of the budget. Transactions cut away are out of the
per-transaction metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from training_pipeline import taxonomy
from training_pipeline.data.contracts import SplitDataModule, make_loader
from training_pipeline.errors import ConfigError, DataError
from training_pipeline.utils.checks import config_dataclass
from training_pipeline.utils.splits import SplitConfig, split_names, stable_fold

log = logging.getLogger(__name__)

TRUNCATIONS = ("tail", "head", "head_tail")
SPLITS = ("test", "val", "train", "all")
NUMERIC_FEATURES: tuple[str, ...] = (
    "log_time_delta",
    "log_block_delta",
    "log_value",
    "log_gas_used",
    "success",
    "log_internal_calls",
    "balance_delta",  # signed log
    "log_balance",
    "balance_fraction",  # the share of the balance this transaction moved, in [-1, 1]
    "log_token_amount",
    "log_sender_seen",  # the sender's earlier transactions in this history
    "log_position",
)
METHOD_INDEX = {m: i + 1 for i, m in enumerate(taxonomy.METHOD_CATEGORIES)}  # 0 = padding
ROLE_INDEX = {r: i + 1 for i, r in enumerate(taxonomy.SENDER_ROLES)}
MILLI_ETHER = 1e-3


def _slog(x: np.ndarray, scale: float) -> np.ndarray:
    """Signed log: sign(x) * log1p(|x| / scale), for heavy-tailed amounts of either sign."""
    return np.sign(x) * np.log1p(np.abs(x) / scale)


def featurize(history: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(numeric (T, F) float32 before normalization, method ids (T,), role ids (T,)) of one history."""
    ts = np.asarray(history["timestamp"], dtype=np.float64)
    block = np.asarray(history["block"], dtype=np.float64)
    delta = np.asarray(history["balance_delta"], dtype=np.float64)
    balance = np.cumsum(delta)
    before = balance - delta
    moved = delta / np.maximum(before + np.maximum(delta, 0.0), 1e-12)
    seen: dict[str, int] = {}
    sender_seen = np.empty(len(ts))
    for i, s in enumerate(history["sender"]):
        sender_seen[i] = seen.get(s, 0)
        seen[s] = seen.get(s, 0) + 1
    numeric = np.stack(
        [
            np.log1p(np.maximum(np.diff(ts, prepend=ts[:1]), 0.0)),
            np.log1p(np.maximum(np.diff(block, prepend=block[:1]), 0.0)),
            np.log1p(np.maximum(np.asarray(history["value"], dtype=np.float64), 0.0) / MILLI_ETHER),
            np.log1p(np.asarray(history["gas_used"], dtype=np.float64)),
            np.asarray(history["success"], dtype=np.float64),
            np.log1p(np.asarray(history["internal_calls"], dtype=np.float64)),
            _slog(delta, MILLI_ETHER),
            _slog(balance, MILLI_ETHER),
            np.clip(moved, -1.0, 1.0),
            np.log1p(np.maximum(np.asarray(history["token_amount"], dtype=np.float64), 0.0)),
            np.log1p(sender_seen),
            np.log1p(np.arange(len(ts), dtype=np.float64)),
        ],
        axis=1,
    ).astype(np.float32)
    methods = np.array(
        [METHOD_INDEX.get(m, METHOD_INDEX["other"]) for m in history["method"]], dtype=np.int64
    )
    roles = np.array([ROLE_INDEX.get(r, ROLE_INDEX["new_account"]) for r in history["sender_role"]])
    return numeric, methods, roles.astype(np.int64)


def keep_positions(length: int, max_length: int, strategy: str) -> np.ndarray:
    """Indices of the transactions a history of ``length`` keeps under ``max_length`` (see module doc)."""
    if length <= max_length:
        return np.arange(length)
    if strategy == "tail":
        return np.arange(length - max_length, length)
    if strategy == "head":
        return np.arange(max_length)
    head = max_length // 4
    return np.concatenate([np.arange(head), np.arange(length - (max_length - head), length)])


class FeatureNormalizer:
    """Per-feature standardization; fitted on training transactions only, saved with the model."""

    def __init__(
        self,
        names: Sequence[str] = NUMERIC_FEATURES,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        self.names = list(names)
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.std = None if std is None else np.asarray(std, dtype=np.float32)

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    def fit(self, arrays: Sequence[np.ndarray]) -> FeatureNormalizer:
        rows = np.concatenate(arrays, axis=0).astype(np.float64)
        self.mean = rows.mean(0).astype(np.float32)
        std = rows.std(0)
        self.std = np.where(std < 1e-6, 1.0, std).astype(np.float32)  # a constant feature stays as it is
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if not self.fitted:
            raise RuntimeError("FeatureNormalizer.transform before fit")
        return ((x - self.mean) / self.std).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"names": self.names, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> FeatureNormalizer:
        if list(state["names"]) != list(NUMERIC_FEATURES):
            raise DataError(
                f"normalizer state has features {state['names']}; this version computes {NUMERIC_FEATURES}"
            )
        return cls(state["names"], state["mean"], state["std"])


class TransactionSequences(Dataset):
    """Normalized feature sequences, method and role ids, history class and per-transaction flags."""

    def __init__(self, items: list[dict[str, np.ndarray]], index: np.ndarray) -> None:
        self.items, self.index = items, index

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**self.items[i], "index": int(self.index[i])}

    def lengths(self) -> list[int]:
        return [len(x["method"]) for x in self.items]

    @property
    def labels(self) -> np.ndarray:
        return np.array([int(x["label"]) for x in self.items], dtype=np.int64)


def collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Pad to the batch's longest history; ``mask`` marks real transactions, ``tx_labels`` is -1 elsewhere."""
    longest = max(len(b["method"]) for b in batch)
    n, f = len(batch), batch[0]["numeric"].shape[1]
    numeric = np.zeros((n, longest, f), dtype=np.float32)
    method = np.zeros((n, longest), dtype=np.int64)
    role = np.zeros((n, longest), dtype=np.int64)
    tx = np.full((n, longest), -1.0, dtype=np.float32)
    mask = np.zeros((n, longest), dtype=bool)
    for row, b in enumerate(batch):
        t = len(b["method"])
        numeric[row, :t], method[row, :t], role[row, :t] = b["numeric"], b["method"], b["role"]
        tx[row, :t], mask[row, :t] = b["tx_labels"], True
    return {
        "numeric": torch.from_numpy(numeric),
        "method": torch.from_numpy(method),
        "role": torch.from_numpy(role),
        "mask": torch.from_numpy(mask),
        "lengths": torch.tensor([len(b["method"]) for b in batch]),
        "labels": torch.tensor([int(b["label"]) for b in batch], dtype=torch.long),
        "tx_labels": torch.from_numpy(tx),
        "index": torch.tensor([b["index"] for b in batch], dtype=torch.long),
    }


@dataclass(frozen=True)
class Batching:
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
        from training_pipeline.corpus.build import CorpusConfig
        from training_pipeline.corpus.txsim import SimConfig

        self.corpus_cfg = config_dataclass(CorpusConfig, corpus, "data.corpus") if path is None else None
        self.sim_cfg = config_dataclass(SimConfig, sim, "data.sim") if path is None else None
        self.split_cfg = config_dataclass(SplitConfig, split, "data.split")
        if path is not None and labels_path is None:
            raise ConfigError("data.labels_path: required with data.path (a CSV of address,label)")
        if truncation not in TRUNCATIONS:
            raise ConfigError(f"data.truncation={truncation!r}: expected one of {TRUNCATIONS}")
        if max_length < 8:
            raise ConfigError(f"data.max_length={max_length}: need at least 8 transactions")
        if eval_split not in SPLITS:
            raise ConfigError(f"eval split {eval_split!r}: expected test, val, train or all")
        from training_pipeline.data.tx_csv import _check_mode

        _check_mode(on_bad_rows)
        self.data_dir, self.path, self.labels_path = Path(data_dir), path, labels_path
        self.internal_path, self.token_path, self.label_map = internal_path, token_path, dict(label_map or {})
        self.on_bad_rows, self.fold = on_bad_rows, fold
        self.max_length, self.truncation, self.eval_split = max_length, truncation, eval_split
        self.batching = Batching(batch_size, num_workers, pin_memory, length_buckets)
        self.batch_size = batch_size
        self.class_names = list(taxonomy.ANOMALY_TYPES)
        self.normalizer = FeatureNormalizer()
        self.records: list[dict[str, Any]] = []
        self.splits: dict[str, TransactionSequences] = {}
        self.positions: list[np.ndarray] = []  # per record: which transactions its sequence kept
        self.data_version: str | None = None
        self.import_report: dict[str, Any] | None = None
        self._histories_path: Path | None = None

    def use_normalizer_state(self, state: dict[str, Any]) -> None:
        """Normalize with a trained model's statistics (eval and predict): nothing is refitted."""
        self.normalizer = FeatureNormalizer.from_state_dict(state)

    # -- data ---------------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.path is not None:
            for p in (self.path, self.labels_path, self.internal_path, self.token_path):
                if p is not None and not Path(p).exists():
                    raise DataError(f"{p}: no such file or folder (data.*path)")
            return
        from training_pipeline.corpus.txsim import build_histories

        self._histories_path = build_histories(self.corpus_cfg, self.sim_cfg, self.data_dir)

    def _load(self) -> list[dict[str, Any]]:
        if self.path is not None:
            from training_pipeline.data.tx_csv import files_version, import_histories

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
        from training_pipeline.corpus.txsim import build_histories, load_histories, load_manifest

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
        raw, self.positions = [], []
        truncated = 0
        for r in self.records:
            numeric, methods, roles = featurize(r)
            keep = keep_positions(len(methods), self.max_length, self.truncation)
            truncated += len(keep) < len(methods)
            self.positions.append(keep)
            raw.append(
                {
                    "numeric": numeric[keep],
                    "method": methods[keep],
                    "role": roles[keep],
                    "tx_labels": np.asarray(r["anomaly"], dtype=np.float32)[keep],
                    "label": label_index[r["label"]],
                }
            )
        idx = {s: np.flatnonzero(np.array(names) == s) for s in ("train", "val", "test")}
        idx["all"] = np.arange(len(self.records))
        sizes = {s: len(i) for s, i in idx.items()}
        if self.path is None or self.eval_split != "all":
            empty = [s for s in ("train", "val", "test") if sizes[s] == 0]
            if empty:
                raise DataError(f"split(s) {empty} are empty: use more histories or another split/fold")
        if not self.normalizer.fitted:
            self.normalizer.fit([raw[i]["numeric"] for i in idx["train"]])
        for item in raw:
            item["numeric"] = self.normalizer.transform(item["numeric"])
        for split, ids in idx.items():
            self.splits[split] = TransactionSequences([raw[i] for i in ids], ids)
        log.info(
            "Transaction histories %s: %s (fold %d, %s split), %d truncated to the %s %d",
            self.data_version,
            sizes,
            self.fold,
            self.split_cfg.strategy,
            truncated,
            self.truncation,
            self.max_length,
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
