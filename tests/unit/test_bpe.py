"""The Solidity BPE: normalization keeps lines, training on given sources, caching, state round trips."""

from __future__ import annotations

import pytest

from training_pipeline.data import bpe
from training_pipeline.data.bpe import (
    BpeConfig,
    SourceTokenizer,
    cached_bpe,
    normalize_source,
    offsets_to_lines,
    tokenizer_key,
)

SOURCE = """pragma solidity ^0.4.24;
// reentrancy bug below: the comment names the label
contract Bank {   /* a block
   comment over two lines */ mapping(address => uint)   balances;
    string url = "http://example.org"; // trailing
    function withdraw(uint amount) public {
        msg.sender.call.value(amount)();
    }
}
"""


def sources(n: int = 20) -> list[str]:
    return [SOURCE.replace("Bank", f"Bank{i}").replace("amount", f"amount{i % 3}") for i in range(n)]


def test_normalization_strips_comments_and_keeps_every_line() -> None:
    norm = normalize_source(SOURCE)
    assert norm.count("\n") == SOURCE.count("\n")
    assert "reentrancy" not in norm and "block" not in norm and "trailing" not in norm
    lines = norm.split("\n")
    # the code after the block comment stays on line 4
    assert lines[3] == "mapping(address => uint) balances;"
    assert lines[4] == 'string url = "http://example.org";'  # // inside a string is not a comment
    assert lines[6] == "msg.sender.call.value(amount)();"  # indentation dropped, line kept


def test_comments_can_be_kept() -> None:
    norm = normalize_source(SOURCE, strip_comments=False)
    assert "reentrancy bug below" in norm and norm.count("\n") == SOURCE.count("\n")


def test_offsets_map_tokens_to_original_lines() -> None:
    text = "a b\n\nccc dd\n"
    assert offsets_to_lines(text, [(0, 1), (1, 3), (4, 5), (5, 9), (9, 12)]).tolist() == [1, 1, 2, 3, 3]


def test_trained_tokenizer_encodes_with_lines(tmp_path) -> None:
    tok = cached_bpe(sources(), [f"c{i}" for i in range(20)], "v1", BpeConfig(vocab_size=400), tmp_path)
    ids, lines = tok.encode_lines([SOURCE])
    assert len(ids[0]) == len(lines[0]) > 10
    pieces = tok.tokenizer.convert_ids_to_tokens(ids[0])
    call_lines = {line for p, line in zip(pieces, lines[0], strict=True) if "call" in p}
    assert call_lines == {7}  # msg.sender.call is on line 7 of the original source
    assert max(lines[0]) <= SOURCE.count("\n") + 1
    special = tok.special_ids()
    assert (special["cls"], special["pad"], special["sep"], special["mask"]) == (0, 1, 2, 4)


def test_tokenizer_is_cached_by_data_version_ids_and_config(tmp_path, monkeypatch) -> None:
    ids = [f"c{i}" for i in range(20)]
    cfg = BpeConfig(vocab_size=400)
    first = cached_bpe(sources(), ids, "v1", cfg, tmp_path)
    monkeypatch.setattr(bpe, "train_bpe", lambda *a, **k: pytest.fail("retrained a cached tokenizer"))
    again = cached_bpe(sources(), ids, "v1", cfg, tmp_path)
    assert again.fingerprint() == first.fingerprint()
    assert (tmp_path / tokenizer_key("v1", ids, cfg) / "meta.json").exists()
    keys = {
        tokenizer_key("v1", ids, cfg),
        tokenizer_key("v2", ids, cfg),
        tokenizer_key("v1", ids[:-1], cfg),
        tokenizer_key("v1", ids, BpeConfig(vocab_size=500)),
        tokenizer_key("v1", ids, BpeConfig(vocab_size=400, strip_comments=False)),
    }
    assert len(keys) == 5
    assert tokenizer_key("v1", list(reversed(ids)), cfg) == tokenizer_key("v1", ids, cfg)  # order-free


def test_state_round_trip_without_files(tmp_path) -> None:
    tok = cached_bpe(sources(), [f"c{i}" for i in range(20)], "v1", BpeConfig(vocab_size=400), tmp_path)
    state = {**tok.state_dict(), "json": tok.tokenizer_json(), "dir": str(tmp_path / "gone")}
    back = SourceTokenizer.from_state_dict(state)
    assert back.encode_lines([SOURCE]) == tok.encode_lines([SOURCE])
    assert back.fingerprint() == tok.fingerprint()


def test_saved_tokenizer_reloads_with_auto_tokenizer_offline(tmp_path, monkeypatch) -> None:
    from transformers import AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tok = cached_bpe(sources(), [f"c{i}" for i in range(20)], "v1", BpeConfig(vocab_size=400), tmp_path / "c")
    tok.save(tmp_path / "saved")
    auto = AutoTokenizer.from_pretrained(str(tmp_path / "saved"), local_files_only=True)
    text = normalize_source(SOURCE)
    assert auto(text, add_special_tokens=False)["input_ids"] == tok.encode_lines([SOURCE])[0][0]


def test_vocab_size_is_checked() -> None:
    from training_pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="vocab_size"):
        BpeConfig(vocab_size=100)
