"""Importers: SolidiFI (fixture in the benchmark's format), slither-audited (tiny parquet/JSONL written here),
annotated folders (converter and CLI)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from training_pipeline.data.importers import annotated, solidifi
from training_pipeline.data.importers.slither_audited import SlitherAuditedConfig, import_slither_audited
from training_pipeline.data.importers.store import load_stored
from training_pipeline.data.records import read_records
from training_pipeline.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
BLOCKS = OmegaConf.load(ROOT / "conf" / "data" / "_contracts.yaml")
SOLIDIFI_MAP = OmegaConf.to_container(BLOCKS.solidifi.label_map)
SLITHER_MAP = OmegaConf.to_container(BLOCKS.slither_audited.label_map)
# Independent of the importer's own rule: fragments of SolidiFI's injected names.
LEAK = re.compile(
    r"re_ent|intou|tmstmp|txorigin|unchk|uncheck|_TOD|\bTOD\d|\bbugv?_|vundflw|undrflow|ovrflow"
)


def shared_import_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir per session for the fixture imports, so the tiny SolidiFI set compiles once."""
    return tmp_path_factory.getbasetemp() / "imported_fixtures"


def import_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = solidifi.SolidifiConfig(path=str(FIXTURES / "solidifi"), label_map=SOLIDIFI_MAP)
    base = shared_import_dir(tmp_path_factory)
    return solidifi.import_solidifi(cfg, base, cache_dir=base / "solc_cache")


@pytest.fixture(scope="module")
def solidifi_import(tmp_path_factory) -> tuple[list[dict], dict]:
    return load_stored(import_fixture(tmp_path_factory))


# -- SolidiFI ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    ["bug_unchk_send13", "play_TOD13", "counter_re_ent7", "bug_tmstmp", "bug_intou", "bug_txorigin"]
    + ["unhandledsend_unchk14", "withdraw_balances_re_ent", "vundflw1", "transfer_undrflow", "bugv_tmstmp4"]
    + ["withdraw_ovrflow", "my_func_uncheck36", "owner_txorigin1", "lockTime_intou5"],
)
def test_leaky_names_are_recognized(name: str) -> None:
    assert solidifi.is_leaky(name)


@pytest.mark.parametrize(
    "name", ["ReentrancyGuard", "nonReentrant", "are_entered", "balances", "TODO", "debug"]
)
def test_ordinary_names_are_kept(name: str) -> None:
    assert not solidifi.is_leaky(name)


def test_renaming_is_consistent_and_keeps_lines() -> None:
    source = (
        "uint sym1;\nuint bug_tmstmp3 = 1; // bug_tmstmp3\nfunction play_TOD3() { bug_tmstmp3 += sym1; }\n"
    )
    out, renames = solidifi.neutralize_identifiers(source)
    assert renames == {"bug_tmstmp3": 3, "play_TOD3": 1}
    assert out == "uint sym1;\nuint sym2 = 1; // sym2\nfunction sym3() { sym2 += sym1; }\n"
    assert not solidifi.leaky_identifiers(out)


def test_buglog_is_decoded_and_checked(tmp_path: Path) -> None:
    assert solidifi.decode_buglog(b"loc,length,bug type\n3,2,Re+AC0-erntrancy\n").endswith("Re-erntrancy\n")
    log = tmp_path / "BugLog_1.csv"
    log.write_bytes(b"loc,length,bug type,approach\n3,2,Re+AC0-erntrancy,x\n9,1,Re+AC0-erntrancy,x\n")
    assert solidifi.read_buglog(log, "Re-entrancy", 10) == [3, 4, 9]
    with pytest.raises(DataError, match=r"BugLog_1.csv:3: lines 9..9 are outside the contract \(1..8\)"):
        solidifi.read_buglog(log, "Re-entrancy", 8)
    with pytest.raises(DataError, match="does not match its folder 'TOD'"):
        solidifi.read_buglog(log, "TOD", 10)


def test_fixture_import(solidifi_import) -> None:
    records, manifest = solidifi_import
    assert len(records) == 6 and manifest["n_groups"] == 2
    assert {r["group"] for r in records} == {"base_1", "base_2"}
    assert manifest["per_label"] == {"(none)": 0, "front_running": 2, "reentrancy": 2, "time_manipulation": 2}
    assert manifest["compile"]["failures"] == 0 and all(r["bytecode"].startswith("0x60") for r in records)
    assert manifest["renamed_identifiers"] == 15 and manifest["blanked_comments"] == 6
    assert {r["contract_name"] for r in records if r["group"] == "base_1"} == {"TinyToken"}
    by_id = {r["id"]: r for r in records}
    reent = by_id["solidifi/Re-entrancy/buggy_1"]
    assert reent["labels"] == ["reentrancy"] and reent["compiler_version"] == "0.5.17"
    assert reent["vulnerable_lines"] == {"reentrancy": [*range(19, 27), *range(37, 45)]}


def test_fixture_import_keeps_lines_and_leaks_nothing(solidifi_import) -> None:
    records, _ = solidifi_import
    for r in records:
        folder, name = r["id"].split("/")[1:]
        original = (FIXTURES / "solidifi" / "buggy_contracts" / folder / f"{name}.sol").read_text()
        old, new = original.split("\n"), r["source_code"].split("\n")
        assert len(old) == len(new), r["id"]
        injected = set(next(iter(r["vulnerable_lines"].values())))
        # lines outside the snippets are untouched but for label-bearing comments
        assert all(
            o == n
            for i, (o, n) in enumerate(zip(old, new, strict=True), 1)
            if i not in injected and "//" not in o
        )
        assert not solidifi.leaky_identifiers(r["source_code"]) and not LEAK.search(r["source_code"]), r["id"]
        assert "//bug" not in r["source_code"] and "limit the withdrawal" not in r["source_code"]
        assert '"https://example.org//token"' in r["source_code"] or r["group"] == "base_2"


def test_import_is_stored_once(tmp_path_factory, monkeypatch) -> None:
    first = import_fixture(tmp_path_factory)
    monkeypatch.setattr(solidifi, "_build", lambda *a, **k: pytest.fail("rebuilt an unchanged import"))
    assert import_fixture(tmp_path_factory) == first
    assert first.parent == shared_import_dir(tmp_path_factory) / "imported" / "solidifi"


def test_solidifi_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"^/nowhere/solidifi: no such SolidiFI folder \(data.solidifi.path\)$"
    ):
        solidifi.find_files(solidifi.SolidifiConfig(path="/nowhere/solidifi", label_map=SOLIDIFI_MAP))
    with pytest.raises(DataError, match=r"bug folder\(s\) \['TOD'\] have no taxonomy label"):
        partial = {k: v for k, v in SOLIDIFI_MAP.items() if k != "TOD"}
        solidifi.find_files(solidifi.SolidifiConfig(path=str(FIXTURES / "solidifi"), label_map=partial))
    with pytest.raises(ConfigError, match="unknown label"):
        solidifi.SolidifiConfig(path="x", label_map={"TOD": "frontrunning"})
    with pytest.raises(ConfigError, match="compiler_version"):
        solidifi.SolidifiConfig(path="x", label_map=SOLIDIFI_MAP, compiler_version="0.5.0")


# -- slither-audited -------------------------------------------------------------------------------------
def slither_rows() -> dict[str, list[dict]]:
    code_a, code_b = "0x6080604052600a", "0x6080604052600b"
    src = "pragma solidity ^0.5.0;\ncontract C {{ uint x{}; }}\n"
    return {
        "train": [
            {"address": "0xA1", "source_code": src.format(1), "bytecode": code_a, "slither": [3, 1]},
            {"address": "0xB2", "source_code": src.format(2), "bytecode": code_b, "slither": [4]},
            {"address": "0xC3", "source_code": src.format(3), "bytecode": "0x", "slither": [0]},
        ],
        "validation": [
            {
                "address": "0xE5",
                "source_code": "contract E {\n // slither-disable-next-line reentrancy-eth\n uint e; }\n",
                "bytecode": "0x6080604052600e",
                "slither": [2],
            }
        ],
        "test": [{"address": "0xD4", "source_code": src.format(1), "bytecode": code_a, "slither": [5]}],
    }


def write_parquet(directory: Path, rows: dict[str, list[dict]]) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, items in rows.items():
        pq.write_table(pa.Table.from_pylist(items), directory / f"{split}.parquet")
        files[split] = str(directory / f"{split}.parquet")
    return files


def slither_cfg(**kw) -> SlitherAuditedConfig:
    return SlitherAuditedConfig(label_map=SLITHER_MAP, **kw)


def test_slither_audited_from_parquet(tmp_path: Path) -> None:
    files = write_parquet(tmp_path / "in", slither_rows())
    records, manifest = load_stored(import_slither_audited(slither_cfg(data_files=files), tmp_path / "data"))
    by_id = {r["id"]: r for r in records}
    assert sorted(by_id) == ["0xb2", "0xd4", "0xe5"]  # 0x row dropped; 0xa1 collapsed into its test twin
    assert by_id["0xd4"]["labels"] == ["arithmetic", "reentrancy", "unchecked_low_level_calls"]
    assert (
        by_id["0xd4"]["split"] == "test" and by_id["0xe5"]["split"] == "val" and by_id["0xb2"]["labels"] == []
    )
    assert by_id["0xe5"]["labels"] == ["other"] and "slither-disable" not in by_id["0xe5"]["source_code"]
    assert by_id["0xe5"]["source_code"].count("\n") == 3
    assert manifest["duplicates_collapsed"] == 1 and manifest["label_conflicts"] == 1
    assert manifest["duplicate_clusters_across_dataset_splits"] == 1
    assert manifest["empty_bytecode_dropped"] == 1 and manifest["blanked_comments"] == 1


def test_slither_audited_options(tmp_path: Path) -> None:
    rows = slither_rows()
    rows["train"].append(
        {"address": "0xF6", "source_code": "", "bytecode": "0x60016002", "slither": [6, 8, 7]}
    )
    files = write_parquet(tmp_path / "in", rows)
    cfg = slither_cfg(
        data_files=files, config_name="small-multilabel", drop_empty_bytecode=False, use_dataset_splits=False
    )
    records, manifest = load_stored(import_slither_audited(cfg, tmp_path / "data"))
    by_id = {r["id"]: r for r in records}
    assert by_id["0xc3"]["bytecode"] is None and manifest["empty_bytecode"] == 1
    assert by_id["0xf6"]["labels"] == ["bad_randomness", "other"]  # locked-ether, double-spending -> other
    assert all("split" not in r for r in records)


def test_slither_audited_from_a_directory_of_jsonl(tmp_path: Path) -> None:
    for split, items in slither_rows().items():
        (tmp_path / "big-multilabel" / split).mkdir(parents=True)
        (tmp_path / "big-multilabel" / split / "part0.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in items)
        )
    records, _ = load_stored(import_slither_audited(slither_cfg(data_files=str(tmp_path)), tmp_path / "data"))
    assert len(records) == 3


def test_slither_audited_bad_inputs(tmp_path: Path) -> None:
    rows = slither_rows()
    rows["train"][0]["slither"] = [9]
    files = write_parquet(tmp_path / "in", rows)
    with pytest.raises(DataError, match=r"train.parquet row 1: unknown slither label 9"):
        import_slither_audited(slither_cfg(data_files=files), tmp_path / "data")
    with pytest.raises(DataError, match=r"^/nowhere/test.parquet: no such file"):
        import_slither_audited(slither_cfg(data_files={"test": "/nowhere/test.parquet"}), tmp_path / "data")
    with pytest.raises(ConfigError, match="config_name"):
        slither_cfg(config_name="all-multilabel")
    with pytest.raises(ConfigError, match=r"missing \['safe'\]"):
        SlitherAuditedConfig(
            label_map={
                "big-multilabel": {k: v for k, v in SLITHER_MAP["big-multilabel"].items() if k != "safe"}
            }
        )


# -- annotated folders -------------------------------------------------------------------------------------
def annotated_copy(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "contracts"
    shutil.copytree(FIXTURES / "annotated" / "contracts", folder)
    return folder, tmp_path / "labels.csv"


def test_annotated_convert() -> None:
    records, stats = annotated.convert(
        FIXTURES / "annotated" / "contracts", FIXTURES / "annotated" / "labels.csv"
    )
    by_id = {r["id"]: r for r in records}
    assert sorted(by_id) == ["legacy.sol", "token.sol", "vault.sol"]
    assert stats == {"records": 3, "unreferenced_files": 1, "blanked_comments": 1}
    assert (
        by_id["vault.sol"]["vulnerable_lines"] == {"reentrancy": [13]}
        and "<yes>" not in by_id["vault.sol"]["source_code"]
    )
    assert by_id["token.sol"]["vulnerable_lines"] == {"access_control": [7, 8, 9]}
    assert by_id["legacy.sol"]["labels"] == [] and by_id["legacy.sol"]["vulnerable_lines"] is None
    json_records, _ = annotated.convert(
        FIXTURES / "annotated" / "contracts", FIXTURES / "annotated" / "labels.json"
    )
    vault = next(r for r in json_records if r["id"] == "vault.sol")
    assert vault["vulnerable_lines"] == {"reentrancy": [13], "unchecked_low_level_calls": [13, 14]}


@pytest.mark.parametrize(
    ("labels", "setup", "message"),
    [
        ("path,label,lines\nmissing.sol,reentrancy,1\n", None, r"labels.csv:2: missing.sol: no such file in"),
        (
            "path,label,lines\nvault.sol,re-entrancy,13\n",
            None,
            r"labels.csv:2: unknown label\(s\) 're-entrancy'",
        ),
        (
            "path,label,lines\nvault.sol,reentrancy,99\n",
            None,
            r"labels.csv:2: line 99 is outside .*vault.sol \(1..18\)",
        ),
        ("path,label,lines\nempty.sol,other,\n", ("empty.sol", " \n"), r"empty.sol: empty file"),
        (
            "path,label,lines\nnotes.sol,other,\n",
            ("notes.sol", "just some notes\n"),
            r"notes.sol: not Solidity",
        ),
        ("path,label,lines\n../x.sol,other,\n", None, r"labels.csv:2: ../x.sol is outside"),
        ("file,label\nvault.sol,other\n", None, r"labels.csv: expected a CSV header with path,label"),
        ("path,label,lines\nvault.sol,safe,3\n", None, r"marked clean \(safe\) but lists lines"),
    ],
)
def test_annotated_bad_input_is_one_line_error(tmp_path: Path, labels, setup, message) -> None:
    folder, labels_path = annotated_copy(tmp_path)
    labels_path.write_text(labels)
    if setup:
        (folder / setup[0]).write_text(setup[1])
    out = tmp_path / "out.jsonl"
    with pytest.raises(DataError, match=message) as exc:
        annotated.convert(folder, labels_path)
    assert "\n" not in str(exc.value)
    assert _cli(folder, labels_path, out).returncode == 2 and not out.exists()


def test_annotated_pragma_without_bundled_compiler(tmp_path: Path) -> None:
    folder, labels_path = annotated_copy(tmp_path)
    (folder / "old.sol").write_text("pragma solidity 0.3.6;\ncontract Old {}\n")
    labels_path.write_text("path,label,lines\nold.sol,other,\n")
    records, _ = annotated.convert(folder, labels_path)
    with pytest.raises(DataError, match=r"old.sol: no bundled solc satisfies pragma solidity 0.3.6"):
        annotated.compile_records(records)


def _cli(folder: Path, labels: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "import_annotated.py"), str(folder), "--labels", str(labels)]
        + ["--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_annotated_cli_compiles_and_refuses_to_overwrite(tmp_path: Path, tmp_path_factory) -> None:
    folder, labels = FIXTURES / "annotated" / "contracts", FIXTURES / "annotated" / "labels.csv"
    out = tmp_path / "contracts.jsonl"
    cache = shared_import_dir(tmp_path_factory) / "solc_cache"
    done = _cli(folder, labels, out, "--compile", "--cache-dir", str(cache))
    assert done.returncode == 0, done.stderr
    by_id = {r["id"]: r for r in read_records(out)}
    assert by_id["legacy.sol"]["compiler_version"] == "0.5.17"  # 0.4.26 rejects `address payable`
    assert by_id["vault.sol"]["compiler_version"] == "0.5.17" and by_id["vault.sol"]["bytecode"].startswith(
        "0x60"
    )
    before = out.read_text()
    again = _cli(folder, labels, out)
    assert (
        again.returncode == 2
        and again.stderr.strip().count("\n") == 0
        and "refusing to overwrite" in again.stderr
    )
    assert out.read_text() == before
    assert _cli(folder, labels, out, "--force").returncode == 0
    assert read_records(out)[0]["bytecode"] is None
