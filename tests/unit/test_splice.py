"""``data.splice``: training rows inserted into real host contracts (flawed code among code without flaws, as
SolidiFI builds its contracts), labels kept, val/test untouched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import file_bytecode_module

from training_pipeline.data.bytecode import ContractBytecodeDataModule, SplicedContracts, splice
from training_pipeline.errors import ConfigError


def contains(seq: np.ndarray, part: np.ndarray) -> int:
    """Where ``part`` starts in ``seq`` (-1: nowhere)."""
    for k in range(len(seq) - len(part) + 1):
        if np.array_equal(seq[k : k + len(part)], part):
            return k
    return -1


def test_a_guest_goes_whole_into_the_whole_host_when_both_fit() -> None:
    guest, host = np.arange(100, 110), np.arange(1, 41)
    for start, cut in ((0.0, 0.0), (0.3, 0.5), (0.99, 0.999)):
        out = splice(guest, host, max_length=64, start=start, cut=cut)
        at = contains(out, guest)
        assert len(out) == 50 and at >= 0
        assert np.array_equal(np.delete(out, range(at, at + 10)), host)  # the host, in order, around it
    assert contains(splice(guest, host, 64, 0.0, 0.0), guest) == 0
    assert contains(splice(guest, host, 64, 0.0, 0.999), guest) == 40


def test_a_long_host_gives_a_window_of_the_room_left() -> None:
    guest, host = np.arange(100, 110), np.arange(1, 201)
    out = splice(guest, host, max_length=64, start=0.5, cut=0.25)
    at = contains(out, guest)
    assert len(out) == 64 and at == int(0.25 * 55)
    window = np.delete(out, range(at, at + 10))
    assert contains(host, window) == int(0.5 * (200 - 54 + 1))  # one contiguous stretch of the host
    full = np.arange(100, 164)
    assert splice(full, host, max_length=64, start=0.5, cut=0.5) is full  # no room: unchanged


def test_a_variant_pair_is_spliced_into_one_host_at_one_place() -> None:
    class Rows:  # the base dataset: one guest row with a pair of compile variants
        columns = {"index": [0]}
        index = [0]

        def __getitem__(self, i):
            return {"input_ids": np.arange(100, 104), "pair_ids": np.arange(200, 206), "labels": [1.0]}

        def __len__(self):
            return 1

        def lengths(self):
            return [4]

    hosts = [[np.arange(1, 31), np.arange(31, 61)]]  # one host, two compile variants
    data = SplicedContracts(Rows(), np.array([True]), hosts, rate=1.0, max_length=1000, seed=3)
    item = data[0]
    a, b = contains(item["input_ids"], np.arange(100, 104)), contains(item["pair_ids"], np.arange(200, 206))
    assert item["labels"] == [1.0] and a == b >= 0  # labels kept; the same cut in both
    rest = {
        tuple(np.delete(item["input_ids"], range(a, a + 4))),
        tuple(np.delete(item["pair_ids"], range(b, b + 6))),
    }
    assert rest == {tuple(range(1, 31)), tuple(range(31, 61))}  # each in another of the host's variants
    assert SplicedContracts(Rows(), np.array([True]), hosts, rate=0.0, max_length=1000)[0][
        "input_ids"
    ].tolist() == [
        100,
        101,
        102,
        103,
    ]


def write_records(path: Path) -> Path:
    rows = [
        {
            "id": f"c{i}",
            "bytecode": "0x" + "60016002" * (i + 1) + "00",
            "labels": ["reentrancy"] if i % 3 else [],
        }
        for i in range(30)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def module(tmp_path: Path, **kw) -> ContractBytecodeDataModule:
    return file_bytecode_module(tmp_path, write_records(tmp_path / "c.jsonl"), **kw)


def rows(dm: ContractBytecodeDataModule, split: str) -> dict[int, tuple[list[int], list[float]]]:
    data = dm.splits[split]
    return {
        int(data[k]["index"]): (list(data[k]["input_ids"]), list(data[k]["labels"])) for k in range(len(data))
    }


def test_the_datamodule_splices_training_rows_only(tmp_path: Path) -> None:
    plain = module(tmp_path)
    spliced = module(tmp_path, splice={"enabled": True, "rate": 1.0, "guests": ["file"], "hosts": ["file"]})
    before, after = rows(plain, "train"), rows(spliced, "train")
    assert before.keys() == after.keys()
    for i, (ids, labels) in after.items():
        assert len(ids) > len(before[i][0]) and contains(np.array(ids), np.array(before[i][0])) >= 0
        assert labels == before[i][1]
    for split in ("val", "test"):
        assert rows(spliced, split) == rows(plain, split)
    batch = next(iter(spliced.train_dataloader()))  # batches pad the spliced rows like any other
    assert batch["input_ids"].shape[1] == int(batch["lengths"].max())


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"rate": 1.5}, r"data.splice.rate=1.5"),
        ({"hosts": "real_code"}, r"data.splice.hosts='real_code'"),
        (
            {"guests": ["file"], "hosts": ["real_code"]},
            r"data.splice.hosts=\['real_code'\]: no training contract",
        ),
        ({"enable": True}, "enable"),
    ],
)
def test_bad_splice_config_is_one_clear_error(tmp_path: Path, bad: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        module(tmp_path, splice={"enabled": True, **bad})
