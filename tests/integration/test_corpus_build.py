"""The stored corpus: built once per config, grouped splits, manifest, export to a file and training on it;
the configured data exported with its splits."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY_CORPUS, compose_config, tiny_overrides
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import open_dict

from training_pipeline.corpus import build
from training_pipeline.corpus.build import CorpusConfig, build_corpus, corpus_key, load_corpus, load_manifest
from training_pipeline.data.bytecode import ContractBytecodeDataModule
from training_pipeline.data.contracts import label_mask
from training_pipeline.data.quality import load_configured_records
from training_pipeline.data.records import read_records, write_records
from training_pipeline.errors import ConfigError
from training_pipeline.tasks import train


@pytest.fixture(scope="module")
def corpus(data_dir: Path) -> Path:
    return build_corpus(CorpusConfig(n_contracts=TINY_CORPUS), data_dir)


def test_unchanged_config_reuses_the_stored_corpus(corpus: Path, data_dir: Path, monkeypatch) -> None:
    def no_build(*args, **kwargs):
        raise AssertionError("rebuilt although the config did not change")

    monkeypatch.setattr(build, "_build", no_build)
    assert (
        build_corpus(CorpusConfig(n_contracts=TINY_CORPUS, n_workers=1), data_dir) == corpus
    )  # workers: no content
    assert corpus_key(CorpusConfig(n_contracts=TINY_CORPUS, seed=1)) != corpus.name


def test_manifest_matches_the_data(corpus: Path) -> None:
    manifest = load_manifest(corpus)
    ds = load_corpus(corpus)
    assert manifest["n_records"] == len(ds) == TINY_CORPUS
    counts = manifest["counts"]
    assert sum(counts["per_family"].values()) == TINY_CORPUS
    assert counts["per_label"]["(none)"] == sum(1 for lbls in ds["labels"] if not lbls)
    assert set(counts["per_compiler_version"]) == set(CorpusConfig().compiler_versions)
    assert all(code.startswith("0x") and len(code) > 100 for code in ds["bytecode"])


def test_groups_never_straddle_splits(cfg_train) -> None:
    for fold in range(5):
        with open_dict(cfg_train):
            cfg_train.data.fold = fold
        dm = instantiate(cfg_train.data, _convert_="all")
        dm.prepare_data()
        dm.setup()
        groups = {s: {dm.records[i]["group"] for i in dm.splits[s].index} for s in ("train", "val", "test")}
        assert not groups["train"] & groups["val"] and not groups["train"] & groups["test"]
        assert not groups["val"] & groups["test"]
        assert sum(len(dm.splits[s]) for s in ("train", "val", "test")) == TINY_CORPUS


def test_leave_families_out_needs_a_known_family(cfg_train) -> None:
    with open_dict(cfg_train):
        cfg_train.data.split.strategy = "leave_families_out"
        cfg_train.data.split.holdout_families = ["casino"]
    dm = instantiate(cfg_train.data, _convert_="all")
    with pytest.raises(ConfigError, match="casino"):
        dm.setup()


def test_misspelled_corpus_key_is_an_error(cfg_train) -> None:
    with open_dict(cfg_train):
        cfg_train.data.corpus.n_contract = 5
    with pytest.raises(
        InstantiationException, match="CorpusConfig: got an unexpected keyword argument 'n_contract'"
    ):
        instantiate(cfg_train.data, _convert_="all")


def test_export_and_train_on_an_interchange_file(corpus: Path, tmp_path: Path, data_dir: Path) -> None:
    rows = load_corpus(corpus).to_list()
    for r in rows:
        r["vulnerable_lines"] = json.loads(r["vulnerable_lines"])
    path = write_records(rows, tmp_path / "corpus.parquet")
    back = read_records(path)
    assert [r["id"] for r in back] == [r["id"] for r in rows]
    assert back[0]["vulnerable_lines"] == rows[0]["vulnerable_lines"]
    cfg = compose_config(
        "train.yaml",
        [
            *tiny_overrides(data_dir, corpus=False),
            "data=bytecode_file",
            f"data.path={path}",
            "trainer.max_epochs=1",
            "~callbacks.rich_progress_bar",
        ],
        tmp_path / "run",
    )
    metrics, objects = train(cfg)
    assert objects["datamodule"].data_version.startswith("sha256:")
    assert 0.0 <= metrics["test/f1_macro"] <= 1.0
    # grouped folds from the file's `group` field: twins stay together
    dm = objects["datamodule"]
    assert not {dm.records[i]["group"] for i in dm.splits["train"].index} & {
        dm.records[i]["group"] for i in dm.splits["test"].index
    }


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_export_data_keeps_every_split_and_label_state(
    corpus: Path, tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    """--export-data writes the mixed sources as one file that a run elsewhere splits the same way."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from build_corpus import main
    finally:
        sys.path.pop(0)
    extra = [  # npm-like records without labels, and one CGT-like with a partial label
        {"id": f"npm{i}", "group": f"pkg{i}", "bytecode": "0x6080" + f"{i:04x}" * 8, "unlabeled": True}
        for i in range(12)
    ]
    extra.append(
        {"id": "cgt0", "bytecode": "0x60806040", "labels": ["reentrancy"], "negative_labels": ["arithmetic"]}
    )
    path = write_records(extra, tmp_path / "extra.jsonl")
    overrides = [
        *tiny_overrides(data_dir),
        "data.sources=[corpus,file]",
        f"data.path={path}",
        "data.eval_sources=[corpus]",  # the file's test records are unused: not written
    ]
    out = tmp_path / f"export{suffix}"
    assert main([*overrides, "--export-data", str(out), "--no-report"]) == 0
    records, split_of, _ = load_configured_records(overrides)
    expected = {r["id"]: s for r, s in zip(records, split_of, strict=True) if s != "unused"}
    assert len(expected) < len(records)  # some file record fell in the test split

    back = {r["id"]: r for r in read_records(out)}
    assert {rid: r["split"] for rid, r in back.items()} == expected
    assert all(back[f"npm{i}"]["unlabeled"] for i in range(12) if f"npm{i}" in back)
    assert not any(r.get("unlabeled") for rid, r in back.items() if not rid.startswith("npm"))
    if "cgt0" in back:
        assert back["cgt0"]["negative_labels"] == ["arithmetic"]

    dm = ContractBytecodeDataModule(data_dir=str(data_dir), sources=["file"], path=str(out))
    again, names = dm.load_records()
    assert {r["id"]: s for r, s in zip(again, names, strict=True)} == expected
    original = {r["id"]: label_mask(r) for r in records}
    assert any(m == [0.0] * len(m) for m in original.values())  # the npm records assess nothing
    for r in again:  # the label state training reads is the one the original sources gave
        assert label_mask(r) == original[r["id"]]

    capsys.readouterr()
    assert main([*overrides, "--export-data", str(out), "--no-report"]) == 2  # never overwrites unasked
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refusing to overwrite" in err[0]
