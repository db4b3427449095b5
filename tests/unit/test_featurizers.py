"""Featurizers: one input at a time, the same features as the datamodules, state that survives JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training_pipeline.data.bpe import BpeConfig, SourceTokenizer, normalize_source, train_bpe
from training_pipeline.data.evm import EvmTokenizer
from training_pipeline.data.featurizers import (
    BytecodeFeaturizer,
    SourceFeaturizer,
    TransactionFeaturizer,
    WindowConfig,
    truncate,
)
from training_pipeline.data.source import tokenize_sources
from training_pipeline.data.tx_csv import import_histories, import_history
from training_pipeline.errors import ConfigError, DataError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HEXES = sorted((FIXTURES / "evm").glob("*.hex"))
TX = FIXTURES / "tx_csv"
SOURCE = """pragma solidity ^0.8.0;
// a comment that must not reach the model
contract Vault {
    mapping(address => uint256) balances;
    function withdraw(uint256 amount) public {
        (bool ok, ) = msg.sender.call{value: amount}("");
        require(ok);
        balances[msg.sender] -= amount;
    }
}
"""


def roundtrip(featurizer):
    """A featurizer rebuilt from its state after a trip through JSON (what a model package ships)."""
    return type(featurizer).from_state(json.loads(json.dumps(featurizer.to_state())))


def test_bytecode_featurizer_is_the_tokenizer_then_truncation() -> None:
    tok = EvmTokenizer(push_buckets=9)
    feat = BytecodeFeaturizer(tok, max_length=64, truncation="head_tail")
    code = HEXES[0].read_text().strip()
    assert np.array_equal(feat.encode(code), truncate(tok.encode(code), 64, "head_tail"))
    assert len(feat.encode(code)) == 64
    again = roundtrip(feat)
    assert again.max_length == 64 and again.vocab_size == feat.vocab_size
    assert all(np.array_equal(feat.encode(h.read_text()), again.encode(h.read_text())) for h in HEXES)
    batch = feat.batch([feat.encode(h.read_text()) for h in HEXES[:2]])
    assert batch["input_ids"].shape == (2, 64) and batch["lengths"].tolist() == [64, 64]
    with pytest.raises(ConfigError, match="truncation"):
        BytecodeFeaturizer(tok, truncation="middle")


def test_bytecode_featurizer_from_a_checkpoint_keeps_the_data_options() -> None:
    state = EvmTokenizer(push_buckets=33).state_dict()
    feat = BytecodeFeaturizer.from_checkpoint_state({"max_length": 100, "truncation": "head"}, state)
    assert (feat.max_length, feat.truncation, feat.tokenizer.push_buckets) == (100, "head", 33)
    assert BytecodeFeaturizer.from_checkpoint_state({}, state).max_length == BytecodeFeaturizer().max_length


@pytest.fixture(scope="module")
def source_featurizer() -> SourceFeaturizer:
    cfg = BpeConfig(vocab_size=300, min_frequency=1)
    tok = SourceTokenizer(train_bpe([normalize_source(SOURCE)] * 3, cfg), True, {"kind": "bpe"})
    return SourceFeaturizer(tok, WindowConfig(size=16, stride=8, max_windows=4, max_batch_windows=8))


def test_source_featurizer_matches_the_datamodules_bulk_tokenizing(source_featurizer) -> None:
    ids, lines = tokenize_sources(["a", "b"], [SOURCE, SOURCE[:80]], source_featurizer.tokenizer, None, 1)
    assert source_featurizer.tokenize([SOURCE, SOURCE[:80]]) == (ids, lines)
    windows, win_lines = source_featurizer.encode(SOURCE)
    assert len(windows) == 4 and all(len(w) <= 16 for w in windows)
    assert 2 not in set(np.concatenate(win_lines).tolist())  # line 2 is a comment: blanked
    batch = source_featurizer.batch([windows, windows[:1]], [win_lines, win_lines[:1]])
    assert batch["window_owner"].tolist() == [0, 0, 0, 0, 1]
    assert batch["input_ids"].shape == batch["attention_mask"].shape == batch["token_lines"].shape


def test_source_featurizer_state_carries_the_trained_tokenizer(source_featurizer) -> None:
    again = roundtrip(source_featurizer)
    assert again.window == source_featurizer.window
    for a, b in zip(again.encode(SOURCE), source_featurizer.encode(SOURCE), strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    with pytest.raises(DataError, match="kind"):
        SourceFeaturizer.from_state({**source_featurizer.to_state(), "kind": "bytecode"})


def test_transaction_featurizer_fits_on_what_it_is_given_and_survives_json() -> None:
    histories, _ = import_histories(TX / "transactions.csv", TX / "labels.csv")
    feat = TransactionFeaturizer(max_length=8, truncation="tail")
    raw = [feat.features(h) for h in histories]
    assert all(len(f["method"]) == min(8, len(h["method"])) for f, h in zip(raw, histories, strict=True))
    feat.fit(raw[:2])  # "train" only
    rows = np.concatenate([feat.transform(f)["numeric"] for f in raw[:2]])
    assert np.allclose(rows.mean(0), 0, atol=1e-5)
    again = roundtrip(feat)
    for h in histories:
        assert np.array_equal(feat.encode(h)["numeric"], again.encode(h)["numeric"])
    batch = again.batch([again.encode(h) for h in histories])
    assert batch["mask"].sum(1).tolist() == batch["lengths"].tolist()
    with pytest.raises(ConfigError, match="max_length"):
        TransactionFeaturizer(max_length=2)


def test_one_history_is_imported_without_a_labels_file() -> None:
    histories, _ = import_histories(TX / "transactions.csv", TX / "labels.csv")
    address = histories[1]["contract_id"]
    one = import_history(TX / "transactions.csv", address.upper().replace("0X", "0x"))
    assert one["hash"] == histories[1]["hash"] and one["method"] == histories[1]["method"]
    assert one["label"] == "normal" and set(one["anomaly"]) == {0}
    with pytest.raises(DataError, match="no transactions of 0x" + "1" * 40):
        import_history(TX / "transactions.csv", "0x" + "1" * 40)
    with pytest.raises(DataError, match="not a 0x-address"):
        import_history(TX / "transactions.csv", "vault")
