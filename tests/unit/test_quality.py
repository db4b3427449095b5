"""Data quality report: counts, lengths, duplicates, co-occurrence, the group-leak check, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY_CORPUS

from training_pipeline.data.quality import check_report, era, quality_report, render_markdown, write_report
from training_pipeline.errors import DataError

# a solc CBOR metadata tail: {"ipfs": <34 bytes>, "solc": <3 bytes>} + its 2-byte length
_CBOR = "a264697066735822" + "11" * 34 + "64736f6c6343" + "000426"
_META = _CBOR + f"{len(_CBOR) // 2:04x}"


def _record(rid: str, group: str, labels: list[str], **kw) -> dict:
    return {
        "id": rid,
        "group": group,
        "labels": labels,
        "family": kw.get("family", "wallet"),
        "compiler_version": kw.get("version", "0.8.26"),
        "source_code": kw.get("source", f"contract C {{\n  uint x = {len(rid) * ord(rid[0])};\n}}\n"),
        "bytecode": kw.get("bytecode", "0x6080" + rid.encode().hex()),
        "origin": kw.get("origin", "corpus"),
        "fold": kw.get("fold", 0),
    }


@pytest.fixture
def records() -> tuple[list[dict], list[str]]:
    recs = [
        _record("a", "g1", ["reentrancy"], fold=0),
        # a formatting clone of "a", in its group
        _record("a2", "g1", ["reentrancy"], fold=0),
        _record("b", "g2", ["reentrancy", "arithmetic"], version="0.4.26", family="token", fold=1),
        _record("c", "g3", [], version="0.4.26", family="token", origin="solidifi", fold=2),
        # same code as "c" but another metadata hash, in another group and split: reported, not a leak
        _record("d", "g4", ["arithmetic"], bytecode="0x6080" + _META, fold=3),
        _record("e", "g5", ["arithmetic"], bytecode="0x6080" + _META.replace("11", "22"), fold=4),
    ]
    recs[1]["source_code"] = recs[0]["source_code"].replace("uint x", "uint   x").replace(";", ";  // note")
    return recs, ["train", "train", "train", "val", "test", "train"]


def test_counts_lengths_and_cooccurrence(records) -> None:
    recs, splits = records
    report = quality_report(recs, splits)
    c = report["counts"]
    assert report["n_records"] == 6 and report["n_groups"] == 5
    assert c["per_label"] == {"(none)": 1, "arithmetic": 3, "reentrancy": 3}
    assert c["per_family"] == {"token": 2, "wallet": 4}
    assert c["per_era"] == {"0.4": 2, "0.8": 4}
    assert c["per_source"] == {"corpus": 5, "solidifi": 1}
    assert c["per_split"] == {"train": 4, "val": 1, "test": 1}
    assert c["per_split_label"]["train"] == {"arithmetic": 2, "reentrancy": 3}
    assert c["multi_label"] == 1
    assert report["lengths"]["source_lines"]["median"] == 4.0
    co = report["label_cooccurrence"]
    i, j = co["labels"].index("arithmetic"), co["labels"].index("reentrancy")
    assert (
        co["matrix"][i][i] == 3 and co["matrix"][j][j] == 3 and co["matrix"][i][j] == co["matrix"][j][i] == 1
    )
    assert era("v0.5.17+commit.d19bba13") == "0.5" and era(None) == "unknown"


def test_duplicates_are_found(records) -> None:
    recs, splits = records
    d = quality_report(recs, splits)["duplicates"]
    assert d["normalized_source"] == {
        "sets": 1,
        "records": 2,
        "largest": 2,
        "across_groups": 0,
        "across_splits": 0,
        "examples_across_splits": [],
    }
    assert d["exact_bytecode"]["sets"] == 0
    stripped = d["bytecode_without_metadata"]
    assert (stripped["sets"], stripped["across_groups"], stripped["across_splits"]) == (1, 1, 1)
    assert stripped["examples_across_splits"] == [["d", "e"]]
    assert d["groups_with_several_records"] == 1


def test_a_planted_group_leak_is_detected(records) -> None:
    recs, splits = records
    report = quality_report(recs, splits)
    check_report(report)  # clean
    assert report["splits"]["ok"] and "OK: no split shares a group" in render_markdown(report)
    leaky = [*splits[:1], "val", *splits[2:]]  # "a2" moves to val while "a" (same group) stays in train
    report = quality_report(recs, leaky)
    assert report["splits"]["shared_groups"]["train&val"] == 1
    assert report["splits"]["shared_group_examples"] == {"train&val": ["g1"]}
    with pytest.raises(DataError, match="group leak"):
        check_report(report)
    assert "FAILED" in render_markdown(report)
    recs[1]["fold"] = 3  # one group, two folds: some fold's splits would share it
    report = quality_report(recs, splits)
    assert report["splits"]["groups_in_several_folds"] == 1 and not report["splits"]["ok"]


def test_report_files(records, tmp_path: Path) -> None:
    md = write_report(quality_report(*records), tmp_path, {"sources": ["corpus"]})
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["sources"] == ["corpus"] and data["n_records"] == 6
    text = md.read_text()
    for section in ("## Splits", "## Counts", "## Lengths", "## Duplicates", "## Label co-occurrence"):
        assert section in text


def test_build_corpus_script_prints_and_writes_the_report(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "build_corpus.py"),
            f"paths.data_dir={data_dir}",
            f"data.corpus.n_contracts={TINY_CORPUS}",
            "--report-dir",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no split shares a group" in proc.stdout and "Duplicates" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["n_records"] == TINY_CORPUS and report["splits"]["ok"]
    assert (out / "report.md").read_text().startswith("# Data quality report")
