"""The scanner without trained runs: which pipeline it picks, what a model reads (from its class), merging
the views given by flags, and a scan featurized in memory that does not depend on the batch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import tiny_detector

from training_pipeline import taxonomy
from training_pipeline.errors import UserError
from training_pipeline.models.aggregator import Aggregator
from training_pipeline.models.behavior_model import BehaviorModel
from training_pipeline.models.bytecode_detector import BytecodeDetector
from training_pipeline.models.code_analyzer import CodeAnalyzer
from training_pipeline.pipeline.run_dirs import latest_pipeline, latest_pipeline_dir, read_manifest
from training_pipeline.scan import Scanner, read_inputs
from training_pipeline.scan.models import MODEL_OPTIONS, BaseView, spec_of

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HEXES = [str(p) for p in sorted((FIXTURES / "evm").glob("*.hex"))]


def pipeline_dir(base: Path, name: str, mtime: float, **info) -> Path:
    root = base / name
    root.mkdir(parents=True)
    manifest = root / "pipeline.json"
    manifest.write_text(json.dumps({"artifacts": {"base_models": {}}, **info}))
    os.utime(manifest, (mtime, mtime))
    return root


def test_the_default_pipeline_is_the_newest_completed_by_recorded_finish_time(tmp_path: Path) -> None:
    pipeline_dir(tmp_path, "old-format", 1_700_000_000)  # no status or finish time: by modification time
    newest = pipeline_dir(
        tmp_path, "newest", 1_000, status="completed", finished_at="2030-01-01T00:00:00+00:00"
    )
    pipeline_dir(tmp_path, "failed", 4_000_000_000, status="failed", finished_at="2031-01-01T00:00:00+00:00")
    rerun = pipeline_dir(tmp_path, "rerun", 1_000, finished_at="2032-01-01T00:00:00+00:00")
    (rerun / "status.json").write_text(json.dumps({"state": "running"}))  # a rerun of it is under way
    (tmp_path / "half-written").mkdir()
    (tmp_path / "half-written" / "pipeline.json").write_text("{")
    assert latest_pipeline_dir(tmp_path) == newest
    root, finished = latest_pipeline(tmp_path)
    assert root == newest and finished == pytest.approx(1893456000.0)
    (newest / "pipeline.json").write_text(json.dumps({"artifacts": {"base_models": {}}}))
    os.utime(newest / "pipeline.json", (1_000, 1_000))
    assert latest_pipeline_dir(tmp_path).name == "old-format"
    with pytest.raises(UserError, match="did not complete"):
        read_manifest(tmp_path / "failed")
    with pytest.raises(UserError, match="no completed pipeline run"):
        latest_pipeline_dir(tmp_path / "empty")


def test_what_a_model_reads_follows_from_its_class() -> None:
    assert [spec_of(c).view for c in (BytecodeDetector, CodeAnalyzer, BehaviorModel)] == [
        "bytecode",
        "source",
        "behavior",
    ]
    assert spec_of(BehaviorModel).kind == "anomaly_classes" and spec_of(CodeAnalyzer).needs == "source_code"
    assert MODEL_OPTIONS == {
        "bytecode": "bytecode_detector",
        "source": "code_analyzer",
        "behavior": "behavior_model",
    }
    with pytest.raises(UserError, match="use --pipeline-dir"):
        spec_of(Aggregator)
    with pytest.raises(UserError, match="not a bytecode detector"):
        spec_of(torch.nn.Module)


def test_flags_add_views_to_the_one_positional_contract() -> None:
    (item,) = read_inputs([HEXES[0]], transactions=str(FIXTURES / "tx_csv" / "transactions.csv"))
    assert item.bytecode and item.tx_path and item.address and item.address.startswith("0x")
    with pytest.raises(UserError, match="at most one positional input"):
        read_inputs(HEXES[:2], bytecode=HEXES[2])
    with pytest.raises(UserError, match="nothing to scan"):
        read_inputs([])


def test_a_scan_featurizes_in_memory_and_reports_every_input() -> None:
    model = tiny_detector()
    items = read_inputs(HEXES)
    view = BaseView.of(model, {"batch_size": 1, "max_length": 512})
    reports = Scanner([view]).scan(items)
    assert [r["input"] for r in reports] == HEXES
    for item, report, out in zip(items, reports, view.predict(items), strict=True):
        ids = torch.as_tensor(view.featurizer.encode(item.bytecode), dtype=torch.long)[None]
        expected = model.predict_proba(ids)[0].tolist()
        assert list(out["probs"].values()) == expected  # the model on the featurizer's ids, nothing else
        assert report["calibrated"] is False and len(report["vulnerabilities"]) == len(expected)
    batched = BaseView.of(model, {"batch_size": 4, "max_length": 512}).predict(items)
    assert [len(o["probs"]) for o in batched] == [len(taxonomy.VULNERABILITY_CLASSES)] * len(items)
    source_only = read_inputs([HEXES[0]])
    source_only[0].bytecode, source_only[0].source_code = None, "contract A {}"
    with pytest.raises(UserError, match="no input has a view these models read"):
        Scanner([BaseView.of(model, {})]).scan(source_only)
