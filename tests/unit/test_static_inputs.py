"""What Slither analyses for a contract, as its user would run it: CGT's and SolidiFI's original text (their
importers rewrite it), an npm contract in its package tree, else the record's text; the same inputs in the
pipeline's static-analysis view and in the real-world benchmark's "aggregator + Slither" rows."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from training_pipeline.data.weak_labels import sources
from training_pipeline.data.weak_labels.cache import FindingsCache
from training_pipeline.data.weak_labels.features import static_feature_names
from training_pipeline.data.weak_labels.slither import source_sha256
from training_pipeline.pipeline import static
from training_pipeline.scan import benchmark
from training_pipeline.scan.inputs import ScanInput
from training_pipeline.scan.models import StaticView, load_static_view
from training_pipeline.scan.scanner import Scanner

ORIGINAL = "contract A { // @vulnerable_at_lines: 3\n function f() public { now; } }"
REWRITTEN = "contract A { //\n function f() public { now; } }"
NPM_ID = "npm:pkg@1.0.0:contracts/X.sol:X"


@pytest.fixture
def cgt_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "cgt"
    folder.mkdir()
    row = {"id": "source/a.sol", "source_code": ORIGINAL}
    (folder / "contracts.jsonl").write_text(json.dumps(row) + "\n")
    return folder


@pytest.fixture
def fake_trees(monkeypatch: pytest.MonkeyPatch) -> None:
    """npm contracts located in a package tree without installing one."""
    monkeypatch.setattr(sources, "locate_real_code", lambda rows, *a: [r.update(path="/p") for r in rows])
    monkeypatch.setattr(sources, "tree_sources", lambda rows: [f"tree of {r['id']}" for r in rows])


def _records() -> list[dict]:
    return [
        {"id": "cgt/a.sol", "origin": "cgt", "source_code": REWRITTEN},
        {"id": "cgt/b.sol", "origin": "cgt", "source_code": "contract B {}"},  # not in the file: its own text
        {"id": "gen-1", "origin": "corpus", "source_code": "contract G {}"},
        {"id": NPM_ID, "origin": "real_code", "source_code": "contract X {}"},
        {"id": "gen-2", "origin": "corpus", "source_code": None},
    ]


def test_analysis_inputs_are_what_slither_analyses(cgt_dir: Path, fake_trees: None) -> None:
    out = sources.analysis_inputs(_records(), {"cgt": {"path": str(cgt_dir)}, "data_dir": "/data"})
    assert out["cgt/a.sol"] == ORIGINAL  # the dataset's text, not the importer's rewrite
    assert out["cgt/b.sol"] == "contract B {}" and out["gen-1"] == "contract G {}"
    assert out[NPM_ID] == f"tree of {NPM_ID}"  # in its package tree, with its imports
    assert "gen-2" not in out  # nothing to analyse


def _timestamp_cache(root: Path, text: str) -> FindingsCache:
    cache = FindingsCache(root)
    finding = {"check": "timestamp", "impact": "Low", "confidence": "Medium", "lines": [2]}
    cache.put({"sha256": source_sha256(text), "status": "ok", "findings": [finding]})
    return cache


def test_static_view_reads_given_inputs_from_the_cache_only(tmp_path: Path, monkeypatch) -> None:
    """With ``inputs`` the view looks up what Slither analysed (the original text), not the scanned rewrite;
    ``fill=False`` never analyses: an input without a cached analysis has the view masked."""
    never = lambda *a, **k: pytest.fail("analysed")  # noqa: E731
    monkeypatch.setattr("training_pipeline.scan.models.label_sources", never)
    view = StaticView(_timestamp_cache(tmp_path, ORIGINAL), inputs={"a": ORIGINAL}, fill=False)
    items = [ScanInput("a", source_code=REWRITTEN), ScanInput("b", source_code="contract B {}")]
    items.append(ScanInput("c"))
    out = view.predict(items)
    assert out[0]["predicted"] == ["time_manipulation"]
    assert out[0]["probs"]["time_manipulation:present"] == 1.0
    assert not any(k.startswith("detector:") for k in out[0]["probs"])  # only what its aggregator learnt
    assert out[1] is None and out[2] is None
    assert StaticView(view.cache, fill=False).predict(items[:1]) == [None]  # the rewrite was never analysed


def test_static_view_gives_the_per_detector_features_its_aggregator_learnt(tmp_path: Path) -> None:
    names = [*static_feature_names(), "detector:timestamp", "detector:tx-origin"]
    views = {"bytecode": ["reentrancy"], "static": names}
    learnt = SimpleNamespace(hparams=SimpleNamespace(view_features=views))
    plain = SimpleNamespace(hparams=SimpleNamespace(view_features={"static": static_feature_names()}))
    info = {"artifacts": {"static_analysis": {"cache_dir": str(tmp_path)}}}
    view = load_static_view(info, learnt)
    assert view.detectors == ["timestamp", "tx-origin"] and load_static_view(info, plain).detectors == []
    _timestamp_cache(tmp_path, ORIGINAL)
    view.fill = False
    (out,) = view.predict([ScanInput("a", source_code=ORIGINAL)])
    assert list(out["probs"]) == names  # exactly the aggregator's features, in its order
    assert out["probs"]["detector:timestamp"] == 1.0 and out["probs"]["detector:tx-origin"] == 0.0


def test_pipeline_static_view_covers_every_contract_stage(tmp_path: Path, monkeypatch, cgt_dir, fake_trees):
    """The pipeline's static view reads every contract stage's records (real ones too), each once."""

    def records_of(block):
        rows = [r for r in _records() if r["id"] in block["ids"]]
        return rows, ["train"] * len(rows)

    configs = []
    for name, ids in (("bytecode", ["cgt/a.sol", "gen-1"]), ("source", ["cgt/a.sol", NPM_ID, "cgt/b.sol"])):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"data:\n  ids: {ids}\n  data_dir: /data\n  cgt:\n    path: {cgt_dir}\n")
        configs.append(path)
    monkeypatch.setattr(static, "config_records", records_of)
    inputs = static.stage_analysis_inputs(configs, {"cgt/a.sol", "gen-1", NPM_ID})
    assert inputs == {"cgt/a.sol": ORIGINAL, "gen-1": "contract G {}", NPM_ID: f"tree of {NPM_ID}"}
    cfg = {"enabled": True, "fill": False, "cache_dir": str(tmp_path / "cache")}
    _timestamp_cache(tmp_path / "cache", ORIGINAL)
    feats = static.static_view(cfg, inputs, Console(file=open("/dev/null", "w")))  # noqa: SIM115
    assert feats["cgt/a.sol"]["time_manipulation:present"] == 1.0
    assert feats["gen-1"] is None and feats[NPM_ID] is None  # never analysed: masked


def test_benchmark_adds_slither_to_the_aggregator_only_when_it_learnt_that_view(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmark, "set_analysis_inputs", lambda *a: {"a": ORIGINAL})
    scanner = Scanner([], None, "run", {"path": "run"})
    run = tmp_path / "run"
    run.mkdir()
    (run / "pipeline.json").write_text(json.dumps({"status": "completed", "artifacts": {"base_models": {}}}))
    assert benchmark.static_scanner(scanner, run, [], {}, None) is None
    artifacts = {"base_models": {}, "static_analysis": {"cache_dir": str(tmp_path / "cache")}}
    (run / "pipeline.json").write_text(json.dumps({"status": "completed", "artifacts": artifacts}))
    with_static = benchmark.static_scanner(scanner, run, [], {}, None)
    (view,) = with_static.views
    assert isinstance(view, StaticView) and not view.fill and view.inputs == {"a": ORIGINAL}
    assert view.cache.root == tmp_path / "cache" and with_static.models["static_analysis"] is True


def test_scanning_without_the_static_view_it_learnt_warns(caplog) -> None:
    from training_pipeline.scan.scanner import warn_static_masked

    with caplog.at_level("WARNING"):
        warn_static_masked(True, True, "run")
        warn_static_masked(False, False, "run")
    assert not caplog.records
    with caplog.at_level("WARNING"):
        warn_static_masked(True, False, "outputs/pipeline/x")
    assert "outputs/pipeline/x" in caplog.text and "--static-analysis" in caplog.text
    assert "flag more audited code" in caplog.text  # no aggregator known: thresholds tuned with the view only

    class Tuned:  # an aggregator whose thresholds were tuned with and without the static view
        view_names = ["bytecode", "static"]
        optional_index = [1]

    caplog.clear()
    with caplog.at_level("WARNING"):
        warn_static_masked(True, False, "run", Tuned())
    assert "keep the false-alarm budget" in caplog.text and "flag more" not in caplog.text
    Tuned.optional_index = []  # one from before optional_views
    caplog.clear()
    with caplog.at_level("WARNING"):
        warn_static_masked(True, False, "run", Tuned())
    assert "flag more audited code" in caplog.text
