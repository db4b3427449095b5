"""Slither weak labels as training targets and per-source weights: both ride in the batches' ``loss_weight``
(training only), while ``label_mask`` and with it every val/test metric keep to human labels."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from conftest import file_bytecode_module

from training_pipeline import taxonomy
from training_pipeline.data.bytecode import ContractBytecodeDataModule
from training_pipeline.data.weak_labels.cache import FindingsCache, cached_record_predictions
from training_pipeline.data.weak_labels.mapping import DetectorMapping
from training_pipeline.data.weak_labels.slither import source_sha256
from training_pipeline.errors import ConfigError, DataError
from training_pipeline.metrics.classification import evaluate_multilabel
from training_pipeline.models.bytecode_detector import BytecodeDetector
from training_pipeline.models.code_analyzer import CodeAnalyzer
from training_pipeline.models.contract_classifier import ContractClassifier
from training_pipeline.models.losses import multilabel_loss

CLASSES = list(taxonomy.VULNERABILITY_CLASSES)
REENT, ARITH, FRONT = (CLASSES.index(c) for c in ("reentrancy", "arithmetic", "front_running"))
VERSION = "test"  # the fake cache's Slither version: no Slither needed
FINDINGS = [  # reentrancy (detected), arithmetic (detected, but excluded by default)
    {"check": "reentrancy-eth", "impact": "High", "confidence": "Medium", "lines": [3]},
    {"check": "divide-before-multiply", "impact": "Medium", "confidence": "Medium", "lines": [4]},
]


def source(i: int) -> str:
    return f"pragma solidity ^0.5.0;\ncontract C{i} {{ uint v = {i}; }}\n"


def is_weak(i: int) -> bool:
    """Every third record has no human label at all (like real code); the rest are fully labelled."""
    return i % 3 == 0


def has_findings(i: int) -> bool:
    """Weak records with a cached analysis: all but every fourth."""
    return is_weak(i) and i % 4 != 0


def write_records(path: Path, n: int = 36) -> Path:
    rows = []
    for i in range(n):
        row = {"id": f"c{i}", "bytecode": "0x" + "6001600201" * (i + 1) + "00", "source_code": source(i)}
        row["labels"] = ["reentrancy"] if i % 2 == 0 and not is_weak(i) else []
        if is_weak(i):
            row["negative_labels"] = []  # nothing assessed
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def fill_cache(root: Path, n: int = 36) -> Path:
    cache = FindingsCache(root, version=VERSION)
    for i in range(n):
        if has_findings(i):
            findings = FINDINGS if i % 2 else []  # odd: Slither flags reentrancy; even: a clean run
            cache.put({"sha256": source_sha256(source(i)), "status": "ok", "findings": findings})
    return root


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {"records": write_records(tmp_path / "c.jsonl"), "cache": fill_cache(tmp_path / "cache")}


def weak_cfg(cache: Path, **kw: Any) -> dict[str, Any]:
    return {"enabled": True, "sources": ["file"], "cache_dir": str(cache), "slither_version": VERSION, **kw}


def module(tmp_path: Path, records: Path, **kw: Any) -> ContractBytecodeDataModule:
    return file_bytecode_module(tmp_path, records, batch_size=4, **kw)


def rows_of(dm: ContractBytecodeDataModule, split: str) -> dict[str, dict[str, list[float]]]:
    """Per record id, its ``labels``, ``label_mask`` and ``loss_weight`` as batched by the split's loader."""
    out = {}
    for batch in getattr(dm, f"{split}_dataloader")():
        for row, i in enumerate(batch["index"].tolist()):
            out[dm.records[i]["id"]] = {
                k: batch[k][row].tolist() for k in ("labels", "label_mask", "loss_weight")
            }
    return out


def test_weak_entry_moves_the_loss_by_weight_times_its_term() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 9, generator=g)
    targets = (torch.rand(4, 9, generator=g) > 0.7).float()
    weight = torch.ones(4, 9)
    weight[3] = 0.0  # an unlabeled record ...
    weight[3, REENT] = 0.3  # ... with one weak entry
    flipped = targets.clone()
    flipped[3, REENT] = 1 - targets[3, REENT]
    term = F.binary_cross_entropy_with_logits(logits[3, REENT], flipped[3, REENT]) - (
        F.binary_cross_entropy_with_logits(logits[3, REENT], targets[3, REENT])
    )
    counted = 3 * 9 + 1
    change = multilabel_loss(logits, flipped, None, weight=weight) - multilabel_loss(
        logits, targets, None, weight=weight
    )
    assert torch.allclose(change, 0.3 * term / counted)
    human = weight.clone()
    human[3, REENT] = 1.0  # the same entry as a human label moves the loss 1/0.3 times as much
    human_change = multilabel_loss(logits, flipped, None, weight=human) - multilabel_loss(
        logits, targets, None, weight=human
    )
    assert torch.allclose(change, 0.3 * human_change)


def test_weak_targets_fill_unlabeled_training_rows_only(files: dict[str, Path], tmp_path: Path) -> None:
    plain = module(tmp_path, files["records"])
    weak = module(tmp_path, files["records"], weak_labels=weak_cfg(files["cache"]))
    before, after = rows_of(plain, "train"), rows_of(weak, "train")
    assert before.keys() == after.keys()
    n_weak = 0
    for rid, row in after.items():
        i = int(rid[1:])
        assert row["label_mask"] == before[rid]["label_mask"]  # the human mask never changes
        if not has_findings(i):  # human-labelled, or no cached analysis: untouched (stays masked)
            assert row == before[rid]
            continue
        n_weak += 1
        detected = [c for c in CLASSES if c not in ("arithmetic", "front_running")]
        assert row["loss_weight"] == [pytest.approx(0.3) if c in detected else 0.0 for c in CLASSES]
        assert row["labels"] == [1.0 if (c == "reentrancy" and i % 2) else 0.0 for c in CLASSES]
    assert n_weak > 0


@pytest.mark.parametrize("split", ["val", "test"])
def test_val_and_test_never_see_weak_labels(files: dict[str, Path], tmp_path: Path, split: str) -> None:
    plain = module(tmp_path, files["records"])
    weak = module(tmp_path, files["records"], weak_labels=weak_cfg(files["cache"]))
    rows = rows_of(weak, split)
    assert rows == rows_of(plain, split)
    assert any(has_findings(int(rid[1:])) for rid in rows)  # weak-labelled records are there, masked
    for rid, row in rows.items():
        assert row["loss_weight"] == row["label_mask"]
        if is_weak(int(rid[1:])):
            assert row["label_mask"] == [0.0] * len(CLASSES) and row["labels"] == [0.0] * len(CLASSES)


def tiny_detector(dm: ContractBytecodeDataModule) -> BytecodeDetector:
    torch.manual_seed(0)
    return BytecodeDetector(
        embed_dim=8, channels=8, depth=1, family_loss_weight=0.0, **dm.model_kwargs()
    ).eval()


def test_metrics_and_val_loss_unchanged_train_loss_changed(files: dict[str, Path], tmp_path: Path) -> None:
    assert CodeAnalyzer._loss is ContractClassifier._loss  # both contract models share the weighted loss
    plain = module(tmp_path, files["records"])
    weak = module(tmp_path, files["records"], weak_labels=weak_cfg(files["cache"]))
    model = tiny_detector(plain)

    def losses_and_metrics(
        dm: ContractBytecodeDataModule, split: str
    ) -> tuple[list[float], dict[str, float]]:
        losses, probs, targets, masks = [], [], [], []
        with torch.no_grad():
            for batch in getattr(dm, f"{split}_dataloader")():
                vuln, fam = model._logits(batch)
                losses.append(float(model._loss(vuln, fam, batch)))
                probs.append(torch.sigmoid(vuln))
                targets.append(batch["labels"])
                masks.append(batch["label_mask"])
        p, t, m = torch.cat(probs), torch.cat(targets), torch.cat(masks)
        thr = torch.full((9,), 0.5)
        return losses, evaluate_multilabel(split, p, t, thr, CLASSES, list(range(9)), m)

    for split in ("val", "test"):
        assert losses_and_metrics(weak, split) == losses_and_metrics(plain, split)
    assert losses_and_metrics(weak, "train")[0] != losses_and_metrics(plain, "train")[0]


def test_source_weights_scale_the_loss(files: dict[str, Path], tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="training_pipeline.data.contracts"):
        dm = module(tmp_path, files["records"], source_weights={"file": 0.5, "corpus": 2.0})
    assert "Loss weight share by source (train): file 100.0% (" in caplog.text
    assert "source weight 0.5)" in caplog.text
    g = torch.Generator().manual_seed(0)
    for batch in dm.train_dataloader():
        assert torch.equal(batch["loss_weight"], 0.5 * batch["label_mask"])
        logits = torch.randn(batch["labels"].shape, generator=g)
        full = multilabel_loss(logits, batch["labels"], None, weight=batch["label_mask"])
        assert torch.allclose(
            multilabel_loss(logits, batch["labels"], None, weight=batch["loss_weight"]), 0.5 * full
        )
    for batch in dm.val_dataloader():  # evaluation is never weighted
        assert torch.equal(batch["loss_weight"], batch["label_mask"])


def test_weak_and_source_weights_multiply(files: dict[str, Path], tmp_path: Path) -> None:
    dm = module(
        tmp_path, files["records"], weak_labels=weak_cfg(files["cache"]), source_weights={"file": 0.5}
    )
    weights = {round(w, 6) for row in rows_of(dm, "train").values() for w in row["loss_weight"]}
    assert weights == {0.0, 0.5, 0.15}  # unassessed, human x 0.5, weak 0.3 x 0.5


def test_audited_code_becomes_negatives_at_its_weight(files, tmp_path: Path, monkeypatch) -> None:
    """Records of an audited source that nobody labelled train as negatives on every class at the weight;
    labelled records, weak entries (which come first) and every val/test metric are untouched."""
    from training_pipeline.data import contracts

    monkeypatch.setattr(contracts, "AUDITED_SOURCES", frozenset({"file"}))  # these records stand in for npm
    dm = module(tmp_path, files["records"], audited_negative_weight=0.2)
    plain = module(tmp_path, files["records"])
    rows = rows_of(dm, "train")
    for rid, row in rows.items():
        if is_weak(int(rid[1:])):
            assert row["loss_weight"] == [pytest.approx(0.2)] * len(CLASSES) and set(row["labels"]) == {0.0}
        else:
            assert row["loss_weight"] == [1.0] * len(CLASSES)
    assert any(is_weak(int(rid[1:])) for rid in rows)
    assert rows_of(dm, "val") == rows_of(plain, "val")
    weak = weak_cfg(files["cache"])
    both = module(tmp_path, files["records"], weak_labels=weak, audited_negative_weight=0.2)
    weights = {round(w, 6) for row in rows_of(both, "train").values() for w in row["loss_weight"]}
    assert weights == {1.0, 0.3, 0.2}  # human, weak (first), audited negative where Slither said nothing


def test_classes_without_a_slither_detector_stay_masked(files: dict[str, Path], tmp_path: Path) -> None:
    assert "front_running" not in DetectorMapping.from_config().detected_classes
    dm = module(tmp_path, files["records"], weak_labels=weak_cfg(files["cache"], exclude_classes=[]))
    weak_rows = [row for rid, row in rows_of(dm, "train").items() if has_findings(int(rid[1:]))]
    assert weak_rows and all(row["loss_weight"][FRONT] == 0.0 for row in weak_rows)
    # not excluded any more, arithmetic is assessed, and Slither's divide-before-multiply makes it positive
    assert all(row["loss_weight"][ARITH] == pytest.approx(0.3) for row in weak_rows)
    assert any(row["labels"][ARITH] == 1.0 for row in weak_rows)


def test_files_analysed_in_place_are_found_by_record_id(tmp_path: Path) -> None:
    cache = FindingsCache(tmp_path, version=VERSION)
    text = source(1)
    cache.put(
        {
            "sha256": "f" * 64,  # an input-set key: only the tree on disk could recompute it
            "key_kind": "input_set",
            "record_id": "npm:pkg@1.0.0:A.sol:A",
            "source_sha256": source_sha256(text),
            "status": "ok",
            "findings": FINDINGS[:1],
        }
    )
    mapping = DetectorMapping.from_config()
    found, changed, other = cached_record_predictions(
        [
            {"id": "npm:pkg@1.0.0:A.sol:A", "source_code": text},
            {"id": "npm:pkg@1.0.0:A.sol:A", "source_code": text + "// edited\n"},  # stale: not used
            {"id": "npm:pkg@1.0.0:B.sol:B", "source_code": text},
        ],
        cache,
        mapping,
    )
    assert found is not None and found.labels == ["reentrancy"]
    assert changed is None and other is None


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"source_weights": {"corpuss": 0.5}},
            ConfigError,
            r"data.source_weights: unknown source\(s\) \['corpuss'\]",
        ),
        (
            {"source_weights": {"file": -1}},
            ConfigError,
            r"data.source_weights: \{'file': -1\}: expected a number >= 0",
        ),
        (
            {"weak_labels": {"enabeld": True}},
            ConfigError,
            r"data.weak_labels: .*unexpected keyword argument 'enabeld'",
        ),
        (
            {"weak_labels": {"enabled": True, "weight": 0}},
            ConfigError,
            r"data.weak_labels.weight=0: expected",
        ),
        (
            {"weak_labels": {"weight": 2.0}},
            ConfigError,
            r"data.weak_labels.weight=2.0: expected a number in \(0, 1\]",
        ),
        (
            {"weak_labels": {"sources": ["npm"]}},
            ConfigError,
            r"data.weak_labels.sources: unknown source\(s\) \['npm'\]",
        ),
        (
            {"weak_labels": {"exclude_classes": ["overflow"]}},
            ConfigError,
            r"exclude_classes: unknown class\(es\)",
        ),
        (
            {"weak_labels": {"enabled": True}},
            ConfigError,
            r"sources=\['real_code'\]: none is among data.sources",
        ),
        (
            {"audited_negative_weight": 0.3},
            ConfigError,
            r"data.audited_negative_weight=0.3: no audited source \(\['real_code'\]\) among data.sources",
        ),
        (
            {"audited_negative_weight": -1},
            ConfigError,
            r"data.audited_negative_weight=-1: expected null or a number >= 0",
        ),
    ],
)
def test_bad_config_is_a_one_line_error(
    files: dict[str, Path], tmp_path: Path, kwargs, error, message
) -> None:
    with pytest.raises(error, match=message) as exc:
        module(tmp_path, files["records"], **kwargs)
    assert "\n" not in str(exc.value)


def test_missing_cache_names_the_path_and_the_command(files: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as exc:
        module(tmp_path, files["records"], weak_labels=weak_cfg(missing))
    text = str(exc.value)
    assert (
        str(missing / f"slither-{VERSION}") in text and "python scripts/weak_label.py --source file" in text
    )
    assert "\n" not in text
