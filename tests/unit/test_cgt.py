"""CGT importer on a handful of records written here: pragma handling, compile accounting, partial labels,
clone groups (within CGT and across sources), one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import compose_config, tiny_overrides

from training_pipeline.data.bytecode import ContractBytecodeDataModule
from training_pipeline.data.contracts import ContractDataModule, label_mask
from training_pipeline.data.importers.cgt import (
    CgtConfig,
    close_placeholders,
    compile_plan,
    import_cgt,
    link_zero,
    load_cgt,
)
from training_pipeline.data.importers.store import load_stored
from training_pipeline.data.records import read_records, write_records
from training_pipeline.errors import ConfigError, DataError
from training_pipeline.tasks import train

BODY = "contract Bank {{\n    mapping(address => uint) public balance{n};\n    function put() {body}\n}}\n"
OLD = BODY.format(n="", body="payable { balance[msg.sender] += msg.value; }")
ROWS = [
    # an exact pragma, relaxed to ^0.4.19; its twin differs only in the pragma line: one group
    {
        "id": "source/a.sol:Bank",
        "src": "pragma solidity 0.4.19;\n" + OLD,
        "labels": ["reentrancy"],
        "neg": ["arithmetic"],
    },
    {
        "id": "source/b.sol:Bank",
        "src": "pragma solidity ^0.4.24;\n" + OLD,
        "labels": [],
        "neg": ["reentrancy"],
    },
    # pre-0.4: pragma ^0.3.5 and a bare modifier placeholder; compiled with 0.4.26
    {
        "id": "source/c.sol:Old",
        "src": "pragma solidity ^0.3.5;\ncontract Old {\n  address o;\n"
        "  modifier only { if (msg.sender == o) _ }\n  function k() only { selfdestruct(o); }\n}\n",
        "labels": ["access_control"],
        "neg": None,
    },
    # no pragma and broken: kept with its source, bytecode null, counted as failed
    {"id": "source/d.sol:Broken", "src": "contract Broken { function f( }\n", "labels": [], "neg": ["other"]},
    # 0.6 code: compiled with 0.6.12
    {
        "id": "source/e.sol:New",
        "src": "pragma solidity ^0.6.0;\ncontract New {\n  uint public n;\n"
        "  receive() external payable { n += 1; }\n}\n",
        "labels": ["arithmetic"],
        "neg": ["reentrancy", "other"],
    },
]


def write_cgt(directory: Path, rows: list[dict] = ROWS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        {
            "id": r["id"],
            "source_code": r["src"],
            "labels": r["labels"],
            "vulnerable_lines": {},
            "compiler_version": None,
            "family": "unknown",
        }
        | ({"negative_labels": r["neg"]} if r["neg"] is not None else {})
        for r in rows
    ]
    (directory / "contracts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return directory


@pytest.fixture(scope="module")
def cgt_dir(tmp_path_factory) -> Path:
    return write_cgt(tmp_path_factory.mktemp("cgt_src"))


@pytest.fixture(scope="module")
def cgt_data(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cgt_data")


@pytest.fixture(scope="module")
def imported(cgt_dir: Path, cgt_data: Path) -> tuple[list[dict], dict]:
    return load_stored(import_cgt(CgtConfig(path=str(cgt_dir), n_workers=1), cgt_data))


def test_compile_plan_pragmas() -> None:
    cfg = CgtConfig(path="x")
    text, versions, how = compile_plan("pragma solidity 0.4.19;\ncontract A {}\n", cfg)
    assert (text.splitlines()[0], versions[0], how) == ("pragma solidity ^0.4.19;", "0.4.26", "relaxed")
    assert compile_plan("pragma solidity 0.4.19;\n", CgtConfig(path="x", relax_exact_pragmas=False))[1] == []
    assert compile_plan("contract A {}\n", cfg)[1:] == (["0.4.26"], "no_pragma")
    text, versions, how = compile_plan("pragma solidity ^0.3.5;\ncontract A {}\n", cfg)
    assert (text.splitlines()[0], versions, how) == ("pragma solidity ^0.4.0;", ["0.4.26"], "pre_0.4")
    assert compile_plan("pragma solidity ^ 0.4 .6;\n", cfg)[1][0] == "0.4.26"  # spaced version numbers
    assert compile_plan("pragma solidity^0.4.24;\n", cfg)[1][0] == "0.4.26"  # no space after `solidity`
    assert compile_plan("pragma solidity >=0.4.22 <0.6.0;\n", cfg)[1] == ["0.4.26", "0.5.17"]
    assert compile_plan("// pragma solidity 0.3.1;\npragma solidity ^0.6.2;\n", cfg)[1:] == (
        ["0.6.12"],
        "as_is",
    )
    src = "modifier a { if (x) _ }\nmodifier b {\n  _\n}\nmodifier c { _; }\nfunction f(uint _) {}\n"
    fixed, n = close_placeholders(src)
    assert n == 2 and fixed.count("_;") == 3 and fixed.count("\n") == src.count("\n")


def test_import_compiles_and_counts(imported) -> None:
    records, manifest = imported
    by_id = {r["id"]: r for r in records}
    assert sorted(by_id) == [
        "cgt/a.sol:Bank",
        "cgt/b.sol:Bank",
        "cgt/c.sol:Old",
        "cgt/d.sol:Broken",
        "cgt/e.sol:New",
    ]
    assert by_id["cgt/a.sol:Bank"]["compiler_version"] == "0.4.26" and by_id["cgt/a.sol:Bank"]["bytecode"]
    assert by_id["cgt/c.sol:Old"]["bytecode"] and by_id["cgt/e.sol:New"]["compiler_version"] == "0.6.12"
    broken = by_id["cgt/d.sol:Broken"]
    assert broken["bytecode"] is None and broken["source_code"] == ROWS[3]["src"]  # kept, source only
    assert by_id["cgt/a.sol:Bank"]["source_code"].startswith("pragma solidity 0.4.19;")  # stored as written
    c = manifest["compile"]
    assert (c["compiled"], c["failed"]) == (4, 1)
    assert c["per_compiler"] == {"0.4.26": {"compiled": 3, "failed": 1}, "0.6.12": {"compiled": 1}}
    assert c["pragma"] == {"as_is": 2, "no_pragma": 1, "pre_0.4": 1, "relaxed": 1}
    assert "relaxed to a caret" in manifest["pragma_policy"]
    assert manifest["per_class"]["reentrancy"] == {"positive": 1, "negative": 3, "masked": 1}
    # the two Bank copies differ only in their pragma: one group
    assert by_id["cgt/a.sol:Bank"]["group"] == by_id["cgt/b.sol:Bank"]["group"]
    assert manifest["n_groups"] == 4


def test_load_keeps_negative_labels_and_masks(cgt_dir: Path, cgt_data: Path, imported) -> None:
    loaded = load_cgt({"path": str(cgt_dir), "n_workers": 1, "n_folds": 3}, cgt_data)
    by_id = {r["id"]: r for r in loaded.records}
    assert by_id["cgt/a.sol:Bank"]["negative_labels"] == ["arithmetic"]
    assert by_id["cgt/c.sol:Old"].get("negative_labels") is None  # no field: fully assessed
    assert label_mask(by_id["cgt/c.sol:Old"]) == [1.0] * 9
    assessed = [i for i, v in enumerate(label_mask(by_id["cgt/e.sol:New"])) if v]
    assert len(assessed) == 3
    assert loaded.version.startswith("sha256:")


def test_cgt_mixed_with_a_file_groups_cross_source_clones(
    cgt_dir: Path, cgt_data: Path, tmp_path: Path
) -> None:
    # a file record holding Bank with yet another pragma and its names changed: the same group as CGT's pair
    src = "pragma solidity ^0.4.21;\n" + OLD.replace("Bank", "Vault").replace("put", "deposit")
    extra = [
        {"id": f"f{i}", "source_code": f"contract F{i} {{ uint x = {i}; }}", "bytecode": f"0x60{i:02x}"}
        for i in range(6)
    ]
    rows = [{"id": "clone", "source_code": src, "bytecode": "0x6001", "labels": ["reentrancy"]}, *extra]
    (tmp_path / "f.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cgt = {"path": str(cgt_dir), "n_workers": 1, "n_folds": 3}
    for fold in range(3):
        dm = ContractDataModule(
            data_dir=str(cgt_data),
            sources=["file", "cgt"],
            path=str(tmp_path / "f.jsonl"),
            cgt=cgt,
            split={"n_folds": 3},
            fold=fold,
            eval_sources=["cgt"],
        )
        records, names = dm.load_records()
        group = {r["id"]: r["group"] for r in records}
        assert group["clone"] == group["cgt/a.sol:Bank"] == group["cgt/b.sol:Bank"]
        split = {r["id"]: s for r, s in zip(records, names, strict=True)}
        assert split["clone"] == split["cgt/a.sol:Bank"] or split["cgt/a.sol:Bank"] == "test"
        assert "cgt/d.sol:Broken" not in group  # no bytecode: not usable by the bytecode view
        assert all(r["origin"] == "cgt" for r, s in zip(records, names, strict=True) if s == "test")


def test_bytecode_batches_carry_the_cgt_mask(cgt_dir: Path, cgt_data: Path) -> None:
    dm = ContractBytecodeDataModule(
        data_dir=str(cgt_data),
        sources=["cgt"],
        split={"n_folds": 3},
        cgt={"path": str(cgt_dir), "n_workers": 1, "n_folds": 3},
        batch_size=8,
        eval_split="all",
    )
    dm.setup()
    batch = next(iter(dm.test_dataloader()))
    masks = {
        dm.records[i]["id"]: m.tolist()
        for i, m in zip(batch["index"].tolist(), batch["label_mask"], strict=True)
    }
    assert masks["cgt/c.sol:Old"] == [1.0] * 9 and sum(masks["cgt/e.sol:New"]) == 3


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"^{tmp_path}/none: no such CGT file \(data.cgt.path"):
        import_cgt(CgtConfig(path=str(tmp_path / "none")), tmp_path)
    bad = write_cgt(tmp_path / "bad", [{**ROWS[0], "neg": ["arithmetic", "overflow"]}])
    with pytest.raises(
        DataError, match=r"record 1 \(id 'source/a.sol:Bank'\) negative_labels: unknown label"
    ):
        import_cgt(CgtConfig(path=str(bad), compile=False), tmp_path)
    both = write_cgt(tmp_path / "both", [{**ROWS[0], "neg": ["reentrancy"]}])
    with pytest.raises(DataError, match=r"\['reentrancy'\] are in both labels and negative_labels"):
        import_cgt(CgtConfig(path=str(both), compile=False), tmp_path)
    with pytest.raises(ConfigError, match=r"data.cgt: .*unexpected keyword argument 'pth'"):
        ContractDataModule(data_dir=str(tmp_path), sources=["cgt"], cgt={"path": "x", "pth": "y"})
    with pytest.raises(ConfigError, match=r"data.cgt.fallback_compiler='0.4.19'"):
        CgtConfig(path="x", fallback_compiler="0.4.19")


def test_library_placeholders_link_to_the_zero_address() -> None:
    old = "__SafeMath" + "_" * 30  # 0.4: the name padded to 40 characters
    new = "__$" + "ab" * 17 + "$__"  # 0.5+: a hash between $ signs
    code, n = link_zero(f"6060{old}6001{new}00")
    assert n == 2 and code == "6060" + "0" * 40 + "6001" + "0" * 40 + "00"
    assert link_zero("0x6001") == ("0x6001", 0)


def test_negative_labels_round_trip_through_interchange_files(tmp_path: Path) -> None:
    records = [
        {"id": "a", "labels": ["reentrancy"], "negative_labels": ["arithmetic"]},
        {"id": "b", "labels": []},
    ]
    for suffix in (".jsonl", ".parquet"):
        back = {r["id"]: r for r in read_records(write_records(records, tmp_path / f"r{suffix}"))}
        assert back["a"]["negative_labels"] == ["arithmetic"] and "negative_labels" not in back["b"]


def test_train_on_corpus_and_cgt_tests_on_cgt(tmp_path: Path, data_dir: Path) -> None:
    rows = [
        {"id": f"source/t{i}.sol:T{i}", "labels": ["reentrancy"] if i % 3 == 0 else [],
         "neg": None if i % 4 == 0 else (["arithmetic"] if i % 3 == 0 else ["arithmetic", "reentrancy"]),
         "src": f"pragma solidity ^0.4.24;\ncontract T{i} {{\n  uint x = {i};\n"
                f"  function f() public {{ x = x + {i * 7}; }}\n}}\n"}
        for i in range(20)
    ]  # fmt: skip
    cgt = write_cgt(tmp_path / "cgt", rows)
    overrides = [
        *tiny_overrides(data_dir),
        "trainer.max_epochs=1",
        "data.sources=[corpus,cgt]",
        "data.eval_sources=[cgt]",
        f"data.cgt.path={cgt}",
        "data.cgt.n_workers=1",
        "~callbacks.rich_progress_bar",
    ]
    cfg = compose_config("train.yaml", overrides, tmp_path / "run")
    metrics, _ = train(cfg)
    assert 0.0 <= metrics["test/f1_macro"] <= 1.0 and torch.isfinite(torch.tensor(metrics["train/loss"]))
    lines = [json.loads(x) for x in (tmp_path / "run" / "test_predictions.jsonl").read_text().splitlines()]
    assert lines and all(x["id"].startswith("cgt/") and len(x["probs"]) == 9 for x in lines)
    partial = {f"cgt/t{i}.sol:T{i}" for i in range(20) if i % 4}
    assert all(("unassessed" in x) == (x["id"] in partial) for x in lines)
