"""The interchange format: round trip, checks with clear messages, no clobbering."""

from __future__ import annotations

import json

import pytest

from training_pipeline.data.records import read_records, write_records
from training_pipeline.errors import DataError
from training_pipeline.taxonomy import UnknownLabelError

RECORD = {
    "id": "c1",
    "source_code": "contract A {}",
    "bytecode": "0x6080604052",
    "labels": ["reentrancy"],
    "vulnerable_lines": {"reentrancy": [3]},
    "compiler_version": "0.8.26",
    "family": "vault",
}


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_round_trip(tmp_path, suffix) -> None:
    path = write_records(
        [RECORD, {**RECORD, "id": "c2", "labels": [], "vulnerable_lines": None}], tmp_path / f"r{suffix}"
    )
    back = read_records(path)
    assert [r["id"] for r in back] == ["c1", "c2"]
    assert back[0]["vulnerable_lines"] == {"reentrancy": [3]} and back[1]["labels"] == []
    assert back[0]["bytecode"] == "0x6080604052"


def test_refuses_to_overwrite(tmp_path) -> None:
    path = write_records([RECORD], tmp_path / "r.jsonl")
    before = path.read_text()
    with pytest.raises(DataError, match="refusing to overwrite"):
        write_records([{**RECORD, "id": "other"}], path)
    assert path.read_text() == before


@pytest.mark.parametrize(
    ("row", "error", "match"),
    [
        ({**RECORD, "bytecode": "0x60806"}, DataError, "c1"),
        ({**RECORD, "bytecode": "0xgg"}, DataError, "c1"),
        ({**RECORD, "labels": ["reentrance"]}, UnknownLabelError, "reentrance"),
        ({**RECORD, "id": ""}, DataError, "id"),
    ],
)
def test_bad_records_name_file_and_record(tmp_path, row, error, match) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(error, match=match) as info:
        read_records(path)
    assert "bad.jsonl" in str(info.value) and "\n" not in str(info.value)


def test_missing_empty_and_non_json_files(tmp_path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_records(tmp_path / "none.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="no records"):
        read_records(tmp_path / "empty.jsonl")
    (tmp_path / "x.jsonl").write_text("pragma solidity ^0.8.0;\n")
    with pytest.raises(DataError, match="x.jsonl:1"):
        read_records(tmp_path / "x.jsonl")
    (tmp_path / "c.sol").write_text("contract A {}")
    with pytest.raises(DataError, match="expected a"):
        read_records(tmp_path / "c.sol")


def test_require_bytecode(tmp_path) -> None:
    path = write_records([{**RECORD, "bytecode": None}], tmp_path / "r.jsonl")
    with pytest.raises(DataError, match="no bytecode"):
        read_records(path, require_bytecode=True)
