"""Compile variants of the real sources: CGT records compiled under several optimizer settings (one record,
one group), evaluated on one of them (``data.variant``), and ``bytecode_variants`` through interchange files
(the `file` source). Tiny fixtures, bundled compilers only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_cgt import write_cgt
from test_compile_variants import make_records

from training_pipeline.data.bytecode import ContractBytecodeDataModule
from training_pipeline.data.importers.cgt import CgtConfig, import_cgt
from training_pipeline.data.importers.store import load_stored
from training_pipeline.data.records import read_records, write_records
from training_pipeline.errors import ConfigError, DataError

VARIANTS = [{"optimize": False}, {"optimize": True, "runs": 200}, {"optimize": True, "runs": 1000}]
KEYS = ["o0", "o1-r200", "o1-r1000"]
# twelve distinct contracts (twelve groups); the optimizer folds `x * 2 * 3` and trims the dispatcher
ROWS = [
    {
        "id": f"source/v{i}.sol:V{i}",
        "src": f"pragma solidity ^0.4.24;\ncontract V{i} {{\n  uint public x = {i};\n"
        f"  function f(uint y) public {{ x = x * 2 * 3 + y + {i}; }}\n}}\n",
        "labels": ["arithmetic"] if i % 2 else [],
        "neg": ["reentrancy"] if i % 2 else ["arithmetic", "reentrancy"],
    }
    for i in range(12)
]


@pytest.fixture(scope="module")
def cgt_block(tmp_path_factory) -> dict:
    path = write_cgt(tmp_path_factory.mktemp("cgt_variants_src"), ROWS)
    return {"path": str(path), "n_workers": 1, "n_folds": 3, "compile_variants": VARIANTS}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cgt_variants_data")


def datamodule(cgt_block: dict, data_dir: Path, **kwargs) -> ContractBytecodeDataModule:
    dm = ContractBytecodeDataModule(
        data_dir=str(data_dir), sources=["cgt"], split={"n_folds": 3}, cgt=cgt_block, **kwargs
    )
    dm.setup()
    return dm


def test_each_cgt_record_holds_every_variant(cgt_block: dict, data_dir: Path) -> None:
    records, manifest = load_stored(import_cgt(CgtConfig(**cgt_block), data_dir))
    assert len(records) == 12
    for r in records:
        assert list(r["bytecode_variants"]) == KEYS  # the configured order; the first is `bytecode`
        assert r["bytecode"] == r["bytecode_variants"]["o0"]
        assert r["bytecode_variants"]["o1-r200"] != r["bytecode_variants"]["o0"]
    assert {k: v["records"] for k, v in manifest["compile"]["variants"].items()} == dict.fromkeys(KEYS, 12)
    assert manifest["compile"]["variant_failed"] == 0
    assert manifest["config"]["compile_variants"][1] == {"optimize": True, "runs": 200, "evm_version": None}


def test_default_variants_keep_the_store_key_and_bad_ones_name_the_key() -> None:
    plain = CgtConfig(path="x")
    assert (
        CgtConfig(path="x", compile_variants=[{"optimize": False}]).content_fields() == plain.content_fields()
    )
    assert "compile_variants" not in plain.content_fields()
    assert CgtConfig(path="x", compile_variants=VARIANTS).content_fields() != plain.content_fields()
    with pytest.raises(ConfigError, match=r"^data.cgt.compile_variants: bad entry"):
        CgtConfig(path="x", compile_variants=[{"optimise": True}])
    with pytest.raises(ConfigError, match=r"^data.cgt.compile_variants: repeated variants"):
        CgtConfig(path="x", compile_variants=[{"optimize": False}, {"optimize": False, "runs": 5}])


def test_variants_of_one_cgt_record_share_its_group_and_split(cgt_block: dict, data_dir: Path) -> None:
    dm = datamodule(cgt_block, data_dir, train_variants=True)
    by_id = {r["id"]: (r, s) for r, s in zip(dm.records, dm.split_of, strict=True)}
    extra = [(r, s) for r, s in by_id.values() if r.get("compile_variant")]
    train = [r for r, s in by_id.values() if s == "train" and not r.get("compile_variant")]
    assert train and len(extra) == 2 * len(train)  # o1-r200 and o1-r1000 of every training contract
    for r, split in extra:
        original, original_split = by_id[r["augmented_from"]]
        assert split == original_split == "train" and r["group"] == original["group"]
        assert r["bytecode"] == original["bytecode_variants"][r["compile_variant"]]
    assert not any("~" in dm.records[i]["id"] for s in ("val", "test", "all") for i in dm.splits[s].index)


def test_variant_o1_r200_evaluates_cgt_on_the_optimized_build(cgt_block: dict, data_dir: Path) -> None:
    dm = datamodule(cgt_block, data_dir, variant="o1-r200")
    for split in ("val", "test"):
        for i, ids in zip(dm.splits[split].index, dm.splits[split].columns["input_ids"], strict=True):
            r = dm.records[i]
            np.testing.assert_array_equal(ids, dm.featurizer.encode(r["bytecode_variants"]["o1-r200"]))
            assert not np.array_equal(ids, dm.featurizer.encode(r["bytecode"]))  # the optimizer changed it
    for i, ids in zip(dm.splits["train"].index, dm.splits["train"].columns["input_ids"], strict=True):
        np.testing.assert_array_equal(ids, dm.featurizer.encode(dm.records[i]["bytecode"]))  # o0 trains


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_file_source_round_trips_variants(tmp_path: Path, suffix: str) -> None:
    records = make_records()
    records[0]["bytecode_variants"] = {
        k: v.upper().replace("0X", "0x") for k, v in records[0]["bytecode_variants"].items()
    }
    records[1]["bytecode_variants"]["o1-r1000"] = None  # did not compile: left out
    del records[2]["bytecode_variants"]
    back = read_records(write_records(records, tmp_path / f"r{suffix}"))
    assert back[0]["bytecode_variants"] == make_records()[0]["bytecode_variants"]  # lower-case 0x-hex
    assert list(back[1]["bytecode_variants"]) == ["o0", "o1-r200"] and "bytecode_variants" not in back[2]
    dm = ContractBytecodeDataModule(
        data_dir=str(tmp_path), sources=["file"], path=str(tmp_path / f"r{suffix}"), variant="o1-r200"
    )
    dm.setup()
    for split in ("val", "test"):
        for i, ids in zip(dm.splits[split].index, dm.splits[split].columns["input_ids"], strict=True):
            r = dm.records[i]
            code = (r.get("bytecode_variants") or {}).get("o1-r200") or r["bytecode"]
            np.testing.assert_array_equal(ids, dm.featurizer.encode(code))


@pytest.mark.parametrize(
    ("variants", "match"),
    [
        ({"o1-r200": "0x60zz"}, r"\(id 'c1'\) bytecode_variants\['o1-r200'\]"),
        ({"o1-r200": "0x601"}, r"\(id 'c1'\) bytecode_variants\['o1-r200'\]"),
        ({"o1-r200": 5}, r"\(id 'c1'\) bytecode_variants\['o1-r200'\]"),
        (["0x6001"], r"\(id 'c1'\): 'bytecode_variants' must map"),
        ("{not json", r"\(id 'c1'\): 'bytecode_variants' is not a JSON map"),
        ({"": "0x6001"}, r"\(id 'c1'\): 'bytecode_variants' has an empty"),
    ],
)
def test_malformed_variants_are_one_line_errors(tmp_path: Path, variants, match: str) -> None:
    row = {"id": "c1", "bytecode": "0x6001", "labels": [], "bytecode_variants": variants}
    (tmp_path / "bad.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=match) as err:
        read_records(tmp_path / "bad.jsonl")
    assert "bad.jsonl record 1" in str(err.value) and "\n" not in str(err.value)
