"""Data quality report: counts, lengths, duplicates, co-occurrence, the group-leak check, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY_CORPUS

from training_pipeline.data.quality import (
    check_report,
    era,
    quality_report,
    render_markdown,
    slither_predictions,
    write_report,
)
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
    for section in (
        "## Splits",
        "## Counts",
        "## Lengths",
        "## Duplicates",
        "## Label co-occurrence",
        "## Sources",
    ):
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
            "--slither-cache",
            str(tmp_path / "no_slither_cache"),
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
    text = (out / "report.md").read_text()
    assert text.startswith("# Data quality report") and "## Sources" in text
    assert report["by_source"]["corpus"]["records"] == TINY_CORPUS
    assert report["by_source"]["corpus"]["classes"]["reentrancy"]["masked"] == 0  # fully assessed
    assert "Slither agreement: skipped" in text and not report["slither"]["sources"]


@pytest.fixture
def two_sources() -> list[dict]:
    """CGT-like records (partial labels) and real_code-like ones (unlabeled), one group shared across them."""
    cgt = [
        # reentrancy positive, arithmetic assessed negative, every other class masked
        {
            **_record("c1", "g1", ["reentrancy"], origin="cgt", version="0.4.26"),
            "negative_labels": ["arithmetic"],
        },
        {
            **_record("c2", "g2", ["arithmetic"], origin="cgt", version="0.4.26", bytecode=None),
            "negative_labels": ["reentrancy", "access_control"],
        },
        {**_record("c3", "g3", [], origin="cgt", version="0.5.17"), "negative_labels": ["reentrancy"]},
    ]
    cgt[1]["bytecode"] = None  # did not compile: source only
    cgt[2]["source_code"] = "contract D {\n}\n"  # 3 lines
    real = [
        {**_record("r1", "g1", [], origin="real_code", version="0.8.20"), "unlabeled": True},
        {
            **_record("r2", "g4", [], origin="real_code", version="0.6.12", bytecode="0x" + "60" * 10),
            "unlabeled": True,
            # o1-r200 changes the code; o1-r1000 builds the same code with another metadata tail
            "bytecode_variants": {
                "o0": "0x" + "60" * 10,
                "o1-r200": "0x" + "60" * 6,
                "o1-r1000": "0x" + "60" * 10 + _META,
            },
        },
    ]
    return cgt + real


def test_per_source_counts_side_by_side(two_sources) -> None:
    report = quality_report(two_sources, ["train", "val", "test", "train", "test"])
    cgt, real = report["by_source"]["cgt"], report["by_source"]["real_code"]
    assert list(report["by_source"]) == ["cgt", "real_code"]
    assert (cgt["records"], cgt["groups"], cgt["assessed"], cgt["unassessed"]) == (3, 3, 3, 0)
    assert (real["records"], real["groups"], real["assessed"], real["unassessed"]) == (2, 2, 0, 2)
    assert cgt["classes"]["reentrancy"] == {"positive": 1, "negative": 2, "masked": 0}
    assert cgt["classes"]["arithmetic"] == {"positive": 1, "negative": 1, "masked": 1}
    assert cgt["classes"]["access_control"] == {"positive": 0, "negative": 1, "masked": 2}
    assert cgt["classes"]["other"] == {"positive": 0, "negative": 0, "masked": 3}
    assert all(c == {"positive": 0, "negative": 0, "masked": 2} for c in real["classes"].values())
    assert cgt["eras"] == {"0.4": 2, "0.5": 1} and real["eras"] == {"0.6": 1, "0.8": 1}
    assert cgt["compile"] == {
        "with_source": 3,
        "with_bytecode": 2,
        "without_bytecode": 1,
        "single_build": 2,
        "variants": {},
        "variant_median_bytes": {},
        "variant_same_as_o0": {},
    }
    assert real["compile"]["variants"] == {"o0": 1, "o1-r1000": 1, "o1-r200": 1}
    assert real["compile"]["single_build"] == 1
    assert real["compile"]["variant_median_bytes"] == {"o0": 10.0, "o1-r1000": 10.0 + 53, "o1-r200": 6.0}
    assert real["compile"]["variant_same_as_o0"] == {"o1-r1000": 1, "o1-r200": 0}
    assert cgt["sizes"]["source_lines"] == {"n": 3, "min": 3.0, "median": 4.0, "p90": 4.0, "max": 4.0}
    # r1: 0x6080 + "r1" (2 + 2 bytes); r2: 10 bytes
    assert real["sizes"]["bytecode_bytes"] == {"n": 2, "min": 4.0, "median": 7.0, "p90": 9.4, "max": 10.0}
    x = report["cross_source_clones"]
    assert (x["groups"], x["records"], x["by_sources"]) == (1, 2, {"cgt+real_code": 1})
    assert x["examples"] == [{"group": "g1", "records": {"cgt": ["c1"], "real_code": ["r1"]}}]
    assert report["splits"]["ok"]  # g1 spans two sources but one split

    text = render_markdown(report)
    for section in (
        "## Sources",
        "### Classes",
        "### Eras",
        "### Compile settings",
        "### Sizes",
        "### Cross-source",
    ):
        assert section in text
    assert "| reentrancy | 1 / 2 / 0 | 0 / 0 / 2 |" in text
    assert "| without bytecode | 1 | 0 |" in text and "| variant `o1-r200` | 0 | 1 |" in text
    assert "| variant `o1-r200`: median bytes | – | 6 |" in text
    assert "| variant `o1-r1000`: same code as `o0` | – | 1 |" in text
    assert "| bytecode bytes | 2: 4 / 4 / 4 / 4 | 2: 4 / 7 / 9.4 / 10 |" in text
    assert "| `g1` | cgt: `c1`; real_code: `r1` |" in text
    assert "Slither agreement: skipped" in text  # no predictions given: one line, no table


def test_slither_agreement_per_source_over_assessed_classes(two_sources) -> None:
    predicted = [["reentrancy", "other"], None, ["reentrancy", "arithmetic"], ["reentrancy"], []]
    report = quality_report(two_sources, ["train"] * 5, predicted, "from a test")
    sl = report["slither"]
    assert list(sl["sources"]) == ["cgt"]  # real_code assesses nothing: no agreement to measure
    assert sl["sources"]["cgt"]["coverage"] == {"contracts": 3, "analysed": 2, "not_analysed": 1}
    per_class = sl["sources"]["cgt"]["per_class"]
    # c1: reentrancy TP, arithmetic TN ("other" masked: not counted); c3: reentrancy FP
    assert {k: per_class["reentrancy"][k] for k in ("tp", "fp", "fn", "tn")} == {
        "tp": 1,
        "fp": 1,
        "fn": 0,
        "tn": 0,
    }
    assert per_class["reentrancy"]["precision"] == 0.5 and per_class["reentrancy"]["recall"] == 1.0
    assert per_class["arithmetic"]["assessed"] == 1 and per_class["arithmetic"]["tn"] == 1
    assert per_class["other"]["assessed"] == 0
    text = render_markdown(report)
    assert "### Slither agreement" in text and "| reentrancy | 2 | 0.500 | 1.000 | 0.667 |" in text
    assert "| micro (all classes) | 3 | 0.500 | 1.000 | 0.667 |" in text


def test_slither_predictions_without_a_cache_is_a_note(two_sources, tmp_path: Path) -> None:
    predictions, note = slither_predictions(two_sources, tmp_path / "no_cache")
    assert predictions is None and note.startswith("Slither agreement: skipped") and "\n" not in note


def test_skipped_records_count_in_the_compile_table_only(two_sources) -> None:
    used, skipped = (
        [r for r in two_sources if r.get("bytecode")],
        [r for r in two_sources if not r.get("bytecode")],
    )
    report = quality_report(used, ["train"] * len(used), skipped=skipped)
    cgt = report["by_source"]["cgt"]
    assert (cgt["loaded"], cgt["skipped"], cgt["records"]) == (3, 1, 2)
    assert (cgt["compile"]["with_bytecode"], cgt["compile"]["without_bytecode"]) == (2, 1)
    assert cgt["classes"]["arithmetic"] == {
        "positive": 0,
        "negative": 1,
        "masked": 1,
    }  # c2 is not in the splits
    assert "| skipped (no model input) | 1 | 0 |" in render_markdown(report)
