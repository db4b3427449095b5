"""``data.eval_max_length``: training rows cut to ``max_length``, validation, test and scans read up to the
longer ``eval_max_length`` (a long contract's middle is scored, training steps stay as cheap)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import file_bytecode_module

from training_pipeline.data.featurizers import BytecodeFeaturizer, truncate
from training_pipeline.errors import ConfigError


def write_records(path: Path, variants: bool = False) -> Path:
    rows = []
    for i in range(30):  # 2 * (i + 1) + 1 opcodes: 3 to 61, push operands dropped
        row = {
            "id": f"c{i}",
            "bytecode": "0x" + "60016002" * (i + 1) + "00",
            "labels": ["reentrancy"] * (i % 2),
        }
        if variants:
            row["bytecode_variants"] = {
                "o0": row["bytecode"],
                "o1-r200": "0x" + "6001600356" * (i + 1) + "00",
            }
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def longest(dm, split: str) -> int:
    data = dm.splits[split]
    return max(len(data[k]["input_ids"]) for k in range(len(data)))


def ids(dm, split: str) -> dict[int, list[int]]:
    data = dm.splits[split]
    return {int(data[k]["index"]): list(data[k]["input_ids"]) for k in range(len(data))}


@pytest.mark.parametrize("strategy", ["head", "head_tail"])
def test_cutting_a_longer_cut_is_the_same_as_cutting_once(strategy: str) -> None:
    rng = np.random.default_rng(0)
    for n in (5, 40, 41, 97, 300):
        x = rng.integers(0, 100, n)
        for long, short in ((64, 16), (48, 17), (33, 32), (16, 16)):
            assert np.array_equal(
                truncate(truncate(x, long, strategy), short, strategy), truncate(x, short, strategy)
            )


def test_training_rows_are_cut_and_the_other_splits_read_further(tmp_path: Path) -> None:
    records = write_records(tmp_path / "c.jsonl")
    short = file_bytecode_module(tmp_path / "a", records, max_length=16)
    long = file_bytecode_module(tmp_path / "b", records, max_length=16, eval_max_length=48)
    whole = file_bytecode_module(tmp_path / "c", records, max_length=48)
    assert ids(long, "train") == ids(short, "train")  # the training rows of max_length=16, to the opcode
    for split in ("val", "test", "all"):
        assert ids(long, split) == ids(whole, split)  # what max_length=48 reads
        assert longest(long, split) == 48 and longest(short, split) == 16
    assert long.featurizer.max_length == 48  # the featurizer a trained model scans with


def test_variant_pairs_are_cut_for_training_only(tmp_path: Path) -> None:
    records = write_records(tmp_path / "c.jsonl", variants=True)
    dm = file_bytecode_module(
        tmp_path, records, max_length=16, eval_max_length=64, train_variants="pair", val_variants=True
    )
    train = dm.splits["train"]
    assert max(max(len(train[k]["input_ids"]), len(train[k]["pair_ids"])) for k in range(len(train))) == 16
    val = dm.splits["val"]
    assert max(len(val[k]["input_ids"]) for k in range(len(val))) > 16  # both variants, read further


def test_a_scan_reads_the_evaluation_length_of_the_data_config() -> None:
    tokenizer = BytecodeFeaturizer().tokenizer.state_dict()
    code = "0x" + "60016002" * 40 + "00"  # 81 opcodes
    cfg = {"max_length": 16, "truncation": "head_tail"}
    assert len(BytecodeFeaturizer.from_checkpoint_state(cfg, tokenizer).encode(code)) == 16
    scan = BytecodeFeaturizer.from_checkpoint_state({**cfg, "eval_max_length": 64}, tokenizer)
    assert len(scan.encode(code)) == 64
    assert (
        len(
            BytecodeFeaturizer.from_checkpoint_state({**cfg, "eval_max_length": None}, tokenizer).encode(code)
        )
        == 16
    )


@pytest.mark.parametrize(
    "kw, match",
    [
        (
            {"max_length": 64, "eval_max_length": 32},
            r"data.eval_max_length=32: shorter than data.max_length=64",
        ),
        ({"eval_max_length": "long"}, r"data.eval_max_length='long': expected a positive number"),
        ({"max_length": 0}, r"data.max_length=0: expected a positive number"),
    ],
)
def test_bad_lengths_are_one_clear_error(tmp_path: Path, kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        file_bytecode_module(tmp_path, write_records(tmp_path / "c.jsonl"), **kw)
