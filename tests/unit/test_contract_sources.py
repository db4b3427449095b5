"""ContractDataModule with the imported sources: clones grouped across sources, fixed splits kept,
eval_sources / val_sources restricting the test / validation split, config typos rejected."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from training_pipeline.data.bytecode import ContractBytecodeDataModule
from training_pipeline.data.contracts import ContractDataModule
from training_pipeline.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "data" / "_contracts.yaml"))
SOLIDIFI = {
    "path": str(ROOT / "tests" / "fixtures" / "solidifi"),
    "label_map": BLOCKS["solidifi"]["label_map"],
    "n_folds": 3,
}
SPLIT = {"n_folds": 3}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    # the same dir test_importers uses: the tiny SolidiFI import is compiled and stored once per session
    return tmp_path_factory.getbasetemp() / "imported_fixtures"


def write_slither(directory: Path, extra_test_rows: list[dict] = ()) -> dict:
    src = "pragma solidity ^0.5.0;\ncontract S {{ uint v = {}; }}\n"  # literals differ: no clones
    rows = {
        "train": [
            {
                "address": f"0x{i}",
                "source_code": src.format(i),
                "bytecode": f"0x60{i:02x}",
                "slither": [i % 6],
            }
            for i in range(1, 5)
        ],
        "validation": [
            {"address": "0x10", "source_code": src.format(10), "bytecode": "0x6010", "slither": [3]}
        ],
        "test": [
            {"address": "0x11", "source_code": src.format(11), "bytecode": "0x6011", "slither": [1]},
            *extra_test_rows,
        ],
    }
    directory.mkdir(parents=True, exist_ok=True)
    for split, items in rows.items():
        pq.write_table(pa.Table.from_pylist(items), directory / f"{split}.parquet")
    return {**BLOCKS["slither_audited"], "data_files": str(directory)}


def module(data_dir: Path, sources: list[str], slither: dict | None = None, cls=ContractDataModule, **kw):
    return cls(
        data_dir=str(data_dir), sources=sources, solidifi=SOLIDIFI, slither_audited=slither, split=SPLIT, **kw
    )


def assert_no_straddling(records: list[dict], names: list[str]) -> dict[str, set[str]]:
    by_group: dict[str, set[str]] = defaultdict(set)
    for r, s in zip(records, names, strict=True):
        if s != "unused":
            by_group[r["group"]].add(s)
    assert all(len(s) == 1 for s in by_group.values()), {g: s for g, s in by_group.items() if len(s) > 1}
    return by_group


def test_solidifi_groups_by_base_contract(data_dir: Path) -> None:
    for fold in range(3):
        records, names = module(data_dir, ["solidifi"], fold=fold).load_records()
        assert len(records) == 6 and {r["group"] for r in records} == {"solidifi:base_1", "solidifi:base_2"}
        assert_no_straddling(records, names)


def test_clones_across_sources_share_one_split(data_dir: Path, tmp_path: Path) -> None:
    solidifi_records, _ = module(data_dir, ["solidifi"]).load_records()
    piggy = next(r for r in solidifi_records if r["id"] == "solidifi/TOD/buggy_2")
    # the same contract with its own names changed and reformatted: a near-duplicate, in slither's test split
    clone_src = piggy["source_code"].replace("Piggy", "Jar").replace("total", "sum").replace("\n", "\n\n")
    clone = {"address": "0xc1", "source_code": clone_src, "bytecode": "0x60c1", "slither": [5]}
    slither = write_slither(tmp_path / "slither", [clone])
    for fold in range(3):
        records, names = module(data_dir, ["slither_audited", "solidifi"], slither, fold=fold).load_records()
        groups = assert_no_straddling(records, names)
        group_of = {r["id"]: r["group"] for r in records}
        clone_group = group_of["0xc1"]
        assert {group_of[f"solidifi/{f}/buggy_2"] for f in ("TOD", "Re-entrancy")} == {clone_group}
        assert groups[clone_group] == {
            "test"
        }  # the fixed split of the slither clone wins for the whole group
        split_of = dict(zip((r["id"] for r in records), names, strict=True))
        assert split_of["0x10"] == "val" and split_of["0x1"] == "train"  # the dataset's own splits are kept


def test_eval_sources_restrict_the_test_split(data_dir: Path, tmp_path: Path) -> None:
    slither = write_slither(tmp_path / "slither")
    seen_test = set()
    for fold in range(3):
        dm = module(data_dir, ["slither_audited", "solidifi"], slither, eval_sources=["solidifi"], fold=fold)
        records, names = dm.load_records()
        test = [r for r, s in zip(records, names, strict=True) if s == "test"]
        assert all(r["origin"] == "solidifi" for r in test)
        assert dict(zip((r["id"] for r in records), names, strict=True))["0x11"] == "unused"
        seen_test |= {r["group"] for r in test}
    assert seen_test == {"solidifi:base_1", "solidifi:base_2"}


def test_val_sources_restrict_the_validation_split(data_dir: Path, tmp_path: Path) -> None:
    slither = write_slither(tmp_path / "slither")
    both = module(data_dir, ["slither_audited", "solidifi"], slither)
    records, before = both.load_records()
    pairs = zip(records, before, strict=True)
    moved = {r["id"] for r, s in pairs if s == "val" and r["origin"] != "solidifi"}
    assert moved  # the slither row of its own validation split
    dm = module(data_dir, ["slither_audited", "solidifi"], slither, val_sources=["solidifi"])
    records, names = dm.load_records()
    split_of = dict(zip((r["id"] for r in records), names, strict=True))
    assert {split_of[i] for i in moved} == {"train"}  # other sources' validation rows join training
    val = [r for r, s in zip(records, names, strict=True) if s == "val"]
    assert val and all(r["origin"] == "solidifi" for r in val)
    tests_before = [r["id"] for r, s in zip(records, before, strict=True) if s == "test"]
    assert all(split_of[i] == "test" for i in tests_before)  # the test split does not move
    assert_no_straddling(records, names)
    with pytest.raises(ConfigError, match="data.val_sources"):
        module(data_dir, ["solidifi"], val_sources=["cgt"])


def test_bytecode_datamodule_on_mixed_sources(data_dir: Path, tmp_path: Path) -> None:
    slither = write_slither(tmp_path / "slither")
    dm = module(
        data_dir, ["slither_audited", "solidifi"], slither, cls=ContractBytecodeDataModule, batch_size=2
    )
    dm.setup()
    assert sum(len(dm.indices(s)) for s in ("train", "val", "test")) == 12
    assert next(iter(dm.train_dataloader())) is not None


@pytest.mark.parametrize(
    ("source", "block", "message"),
    [
        ("solidifi", {**SOLIDIFI, "pth": "x"}, r"data.solidifi: .*unexpected keyword argument 'pth'"),
        ("slither_audited", {"config_nam": "big-multilabel"}, r"data.slither_audited: .*'config_nam'"),
    ],
)
def test_misspelled_key_in_a_source_block_is_a_config_error(data_dir: Path, source, block, message) -> None:
    with pytest.raises(ConfigError, match=message):  # when the datamodule is built, before any data loads
        ContractDataModule(data_dir=str(data_dir), sources=[source], split=SPLIT, **{source: block})


def test_missing_solidifi_folder_is_a_data_error(tmp_path: Path) -> None:
    dm = ContractDataModule(
        data_dir=str(tmp_path), sources=["solidifi"], solidifi={**SOLIDIFI, "path": str(tmp_path / "none")}
    )
    with pytest.raises(DataError, match=rf"^{tmp_path}/none: no such SolidiFI folder"):
        dm.load_records()
