"""Featurizers: one input → the arrays a model reads, shared by the datamodules (training, evaluation) and the
scanner (one contract at a time), so a scanned contract is featurized exactly as the training data was.

* ``BytecodeFeaturizer``: runtime bytecode → opcode ids (``data/evm.py``'s tokenizer), truncated.
* ``SourceFeaturizer``: Solidity source → overlapping BPE windows and the source line of every token.
* ``TransactionFeaturizer``: a transaction history → per-transaction features, standardized with statistics
  fitted on the training split only, cut to ``max_length`` transactions.

Each one's state is a plain JSON-able dict (``to_state()`` / ``from_state()``): the tokenizer or normalizer
and the options that shape the features, what a model package ships beside the weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from training_pipeline import taxonomy
from training_pipeline.data.bpe import SourceTokenizer
from training_pipeline.data.evm import EvmTokenizer
from training_pipeline.errors import ConfigError, DataError
from training_pipeline.utils.checks import config_dataclass


def pad_sequences(seqs: Sequence[np.ndarray], pad_id: int = 0) -> torch.Tensor:
    """(N, longest) int64 ids, each sequence padded with ``pad_id`` to the longest of the batch."""
    longest = max(len(s) for s in seqs)
    ids = np.full((len(seqs), longest), pad_id, dtype=np.int64)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = s
    return torch.from_numpy(ids)


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"data.{name}={value!r}: expected one of {tuple(choices)}")


def _cut_options(data_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The options of a data config that say how long sequences are cut when a trained model reads them
    (absent: the featurizer's default): ``eval_max_length`` where set, since a scan is never training."""
    out = {k: data_cfg[k] for k in ("max_length", "truncation") if k in data_cfg}
    if data_cfg.get("eval_max_length") is not None:
        out["max_length"] = data_cfg["eval_max_length"]
    return out


def _cut_state(featurizer: Any) -> dict[str, Any]:
    return {"max_length": featurizer.max_length, "truncation": featurizer.truncation}


def _check_kind(state: Mapping[str, Any], kind: str) -> None:
    if state.get("kind") != kind:
        raise DataError(f"featurizer state of kind {state.get('kind')!r}: expected {kind!r}")


# -- bytecode ---------------------------------------------------------------------------------------------
BYTECODE_TRUNCATIONS = ("head", "head_tail")


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


class BytecodeFeaturizer:
    """Runtime bytecode → opcode ids over a fixed vocabulary (nothing fitted), ``max_length`` at most."""

    kind = "bytecode"

    def __init__(
        self, tokenizer: EvmTokenizer | None = None, max_length: int = 8192, truncation: str = "head_tail"
    ) -> None:
        _check_choice("truncation", truncation, BYTECODE_TRUNCATIONS)
        self.tokenizer = tokenizer or EvmTokenizer()
        self.max_length, self.truncation = max_length, truncation

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_id

    def encode(self, bytecode: str | bytes, source: str = "bytecode") -> np.ndarray:
        """Opcode ids (int32) of one contract's runtime bytecode; ``source`` names it in errors."""
        return truncate(self.tokenizer.encode(bytecode, source=source), self.max_length, self.truncation)

    def batch(self, ids: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """Model inputs of several encoded contracts: ids padded to the longest, and their lengths."""
        return {"input_ids": pad_sequences(ids, self.pad_id), "lengths": torch.tensor([len(x) for x in ids])}

    def to_state(self) -> dict[str, Any]:
        """JSON-able state: the featurizer rebuilt by ``from_state`` gives the same features."""
        return {"kind": self.kind, "tokenizer": self.tokenizer.state_dict(), **_cut_state(self)}

    @classmethod
    def from_checkpoint_state(cls, data_cfg: Mapping[str, Any], tokenizer_state: Mapping[str, Any]):
        """The featurizer a model was trained with: its data config's options, its checkpoint's tokenizer."""
        return cls(EvmTokenizer.from_state_dict(dict(tokenizer_state)), **_cut_options(data_cfg))

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> BytecodeFeaturizer:
        """The featurizer of a ``to_state()`` dict."""
        _check_kind(state, cls.kind)
        tokenizer = EvmTokenizer.from_state_dict(dict(state["tokenizer"]))
        return cls(tokenizer, int(state["max_length"]), state["truncation"])


# -- source -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WindowConfig:
    """``data.window.*``: overlapping token windows over a contract (sizes include <s> and </s>)."""

    size: int = 256
    stride: int = 192
    max_windows: int = 12  # more are thinned to this many, spread evenly from head to tail
    max_batch_windows: int = 96  # a batch stops growing at this many windows: bounded memory
    eval_max_windows: int | None = None  # val, test, predict and scans (None: max_windows): train on fewer

    def __post_init__(self) -> None:
        if self.size < 8 or not 0 < self.stride <= self.size - 2:
            raise ConfigError(f"data.window: need size >= 8 and 0 < stride <= size - 2, got {self}")
        for key in ("max_windows", "eval_max_windows"):
            n = getattr(self, key)
            if n is not None and not 1 <= n <= self.max_batch_windows:
                raise ConfigError(f"data.window: need 1 <= {key} <= max_batch_windows, got {n}")

    def limit(self, train: bool = False) -> int:
        """How many windows a contract keeps: ``max_windows`` in training, else ``eval_max_windows``."""
        return self.max_windows if train or self.eval_max_windows is None else self.eval_max_windows


def window_starts(n_tokens: int, content: int, stride: int, max_windows: int) -> list[int]:
    """Start offsets of windows of ``content`` tokens covering ``n_tokens``; the last one ends at the tail."""
    if n_tokens <= content:
        return [0]
    starts = list(range(0, n_tokens - content, stride)) + [n_tokens - content]
    if len(starts) > max_windows:
        pick = np.linspace(0, len(starts) - 1, max_windows).round().astype(int)
        starts = [starts[i] for i in pick]
    return starts


def make_windows(
    ids: Sequence[int],
    lines: Sequence[int],
    cfg: WindowConfig,
    cls_id: int,
    sep_id: int,
    train: bool = False,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``<s> tokens </s>`` windows and their token lines (0 for special tokens), at most ``cfg.limit(train)``
    of them."""
    content = cfg.size - 2
    ids, lines = np.asarray(ids, dtype=np.int64), np.asarray(lines, dtype=np.int32)
    win_ids, win_lines = [], []
    for s in window_starts(len(ids), content, cfg.stride, cfg.limit(train)):
        win_ids.append(np.concatenate([[cls_id], ids[s : s + content], [sep_id]]).astype(np.int64))
        win_lines.append(np.concatenate([[0], lines[s : s + content], [0]]).astype(np.int32))
    return win_ids, win_lines


def pad_windows(windows: Sequence[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask), padded to the longest window of the batch."""
    ids = pad_sequences(windows, pad_id)
    mask = torch.zeros_like(ids)
    for row, w in enumerate(windows):
        mask[row, : len(w)] = 1
    return ids, mask


def batch_windows(
    windows: Sequence[Sequence[np.ndarray]], lines: Sequence[Sequence[np.ndarray]], pad_id: int
) -> dict[str, torch.Tensor]:
    """Several contracts' windows flattened and padded: ``input_ids``, ``attention_mask``, ``token_lines``
    (the source line of each token, 0 for specials and padding) and ``window_owner`` (the contract of each
    window, so the model pools them into one prediction per contract)."""
    ids, mask = pad_windows([w for ws in windows for w in ws], pad_id)
    token_lines = torch.zeros_like(ids, dtype=torch.int32)
    row = 0
    for ls in lines:
        for wl in ls:
            token_lines[row, : len(wl)] = torch.from_numpy(wl)
            row += 1
    owner = torch.tensor([i for i, ws in enumerate(windows) for _ in ws], dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "token_lines": token_lines, "window_owner": owner}


class SourceFeaturizer:
    """Solidity source → BPE windows (``<s> … </s>``) and the 1-based source line of every token."""

    kind = "source"

    def __init__(self, tokenizer: SourceTokenizer, window: WindowConfig | None = None) -> None:
        self.tokenizer, self.window = tokenizer, window or WindowConfig()

    @property
    def special_ids(self) -> dict[str, int]:
        return self.tokenizer.special_ids()

    @property
    def pad_id(self) -> int:
        return self.special_ids["pad"]

    def tokenize(self, sources: Sequence[str]) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids and token lines of several sources, in memory (the datamodules cache theirs on disk)."""
        return self.tokenizer.encode_lines(list(sources))

    def windows(
        self, ids: Sequence[int], lines: Sequence[int], train: bool = False
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """One contract's tokens cut into windows: (window ids, window token lines); ``train``: as many as
        training keeps (``max_windows``), else as many as inference does (``eval_max_windows``)."""
        special = self.special_ids
        return make_windows(ids, lines, self.window, special["cls"], special["sep"], train)

    def encode(self, source: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Windows and window token lines of one contract's source."""
        (ids,), (lines,) = self.tokenize([source])
        return self.windows(ids, lines)

    def batch(self, windows: Sequence[Sequence[np.ndarray]], lines: Sequence[Sequence[np.ndarray]]) -> dict:
        """Model inputs of several encoded contracts (see ``batch_windows``)."""
        return batch_windows(windows, lines, self.pad_id)

    def to_state(self) -> dict[str, Any]:
        """JSON-able state: the featurizer rebuilt by ``from_state`` gives the same features."""
        tokenizer = self.tokenizer.state_dict()
        trained = self.tokenizer.tokenizer_json()
        if trained:
            tokenizer["json"] = trained
        return {"kind": self.kind, "tokenizer": tokenizer, "window": asdict(self.window)}

    @classmethod
    def from_checkpoint_state(cls, data_cfg: Mapping[str, Any], tokenizer_state: Mapping[str, Any]):
        """The featurizer a model was trained with: its data config's windows, its checkpoint's tokenizer."""
        window = config_dataclass(WindowConfig, data_cfg.get("window"), "data.window")
        return cls(SourceTokenizer.from_state_dict(dict(tokenizer_state)), window)

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SourceFeaturizer:
        """The featurizer of a ``to_state()`` dict."""
        _check_kind(state, cls.kind)
        tokenizer = SourceTokenizer.from_state_dict(dict(state["tokenizer"]))
        return cls(tokenizer, WindowConfig(**state["window"]))


# -- transactions -----------------------------------------------------------------------------------------
TX_TRUNCATIONS = ("tail", "head", "head_tail")
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


def featurize(history: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    """Indices of the transactions a history of ``length`` keeps under ``max_length``.

    ``tail`` keeps the latest transactions (what a monitor sees), ``head`` the first, ``head_tail`` the first
    quarter and the last three quarters of the budget."""
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
        """Mean and standard deviation over the rows of ``arrays`` (the training split's transactions)."""
        rows = np.concatenate(arrays, axis=0).astype(np.float64)
        self.mean = rows.mean(0).astype(np.float32)
        std = rows.std(0)
        self.std = np.where(std < 1e-6, 1.0, std).astype(np.float32)  # a constant feature stays as it is
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Standardized ``x`` (rows of transactions, columns of features)."""
        if not self.fitted:
            raise RuntimeError("FeatureNormalizer.transform before fit")
        return ((x - self.mean) / self.std).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        """Feature names, means and standard deviations, JSON-able."""
        return {"names": self.names, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> FeatureNormalizer:
        """A fitted normalizer from ``state_dict()``; features of another version are refused."""
        if list(state["names"]) != list(NUMERIC_FEATURES):
            raise DataError(
                f"normalizer state has features {state['names']}; this version computes {NUMERIC_FEATURES}"
            )
        return cls(state["names"], state["mean"], state["std"])


def batch_histories(items: Sequence[Mapping[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Model inputs of several encoded histories, padded to the longest; ``mask`` marks real steps."""
    longest = max(len(x["method"]) for x in items)
    n, f = len(items), items[0]["numeric"].shape[1]
    numeric = np.zeros((n, longest, f), dtype=np.float32)
    method = np.zeros((n, longest), dtype=np.int64)
    role = np.zeros((n, longest), dtype=np.int64)
    mask = np.zeros((n, longest), dtype=bool)
    for row, x in enumerate(items):
        t = len(x["method"])
        numeric[row, :t], method[row, :t], role[row, :t] = x["numeric"], x["method"], x["role"]
        mask[row, :t] = True
    return {
        "numeric": torch.from_numpy(numeric),
        "method": torch.from_numpy(method),
        "role": torch.from_numpy(role),
        "mask": torch.from_numpy(mask),
        "lengths": torch.tensor([len(x["method"]) for x in items]),
    }


class TransactionFeaturizer:
    """A transaction history → standardized numeric features, method and sender-role ids per transaction.

    Features are computed on the whole history, then cut to ``max_length`` transactions (``positions`` says
    which were kept), so running quantities (balance, sender counts, positions) still describe all of it.
    """

    kind = "transactions"

    def __init__(
        self, normalizer: FeatureNormalizer | None = None, max_length: int = 256, truncation: str = "tail"
    ) -> None:
        _check_choice("truncation", truncation, TX_TRUNCATIONS)
        if max_length < 8:
            raise ConfigError(f"data.max_length={max_length}: need at least 8 transactions")
        self.normalizer = normalizer or FeatureNormalizer()
        self.max_length, self.truncation = max_length, truncation

    @property
    def fitted(self) -> bool:
        return self.normalizer.fitted

    def features(self, history: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Unnormalized features of the kept transactions: numeric, method, role and their positions."""
        numeric, methods, roles = featurize(history)
        keep = keep_positions(len(methods), self.max_length, self.truncation)
        return {"numeric": numeric[keep], "method": methods[keep], "role": roles[keep], "positions": keep}

    def fit(self, features: Sequence[Mapping[str, np.ndarray]]) -> TransactionFeaturizer:
        """Fit the normalizer on ``features`` (the training histories' only: nothing leaks from val/test)."""
        self.normalizer.fit([f["numeric"] for f in features])
        return self

    def transform(self, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``features`` with the numeric columns standardized."""
        return {**features, "numeric": self.normalizer.transform(features["numeric"])}

    def encode(self, history: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Standardized features of one history."""
        return self.transform(self.features(history))

    def batch(self, items: Sequence[Mapping[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        """Model inputs of several encoded histories (see ``batch_histories``)."""
        return batch_histories(items)

    def to_state(self) -> dict[str, Any]:
        """JSON-able state: the featurizer rebuilt by ``from_state`` gives the same features."""
        return {"kind": self.kind, "normalizer": self.normalizer.state_dict(), **_cut_state(self)}

    @classmethod
    def from_checkpoint_state(cls, data_cfg: Mapping[str, Any], normalizer_state: Mapping[str, Any]):
        """The featurizer a model was trained with: its data config's cut, its checkpoint's statistics."""
        return cls(FeatureNormalizer.from_state_dict(normalizer_state), **_cut_options(data_cfg))

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> TransactionFeaturizer:
        """The featurizer of a ``to_state()`` dict."""
        _check_kind(state, cls.kind)
        normalizer = FeatureNormalizer.from_state_dict(state["normalizer"])
        return cls(normalizer, int(state["max_length"]), state["truncation"])
