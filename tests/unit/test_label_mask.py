"""Partial labels: the per-class assessed mask travels in batches and keeps unassessed classes out of the
loss, the threshold tuning and every metric; a full mask changes nothing, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from training_pipeline import taxonomy
from training_pipeline.data.bytecode import ContractBytecodeDataModule
from training_pipeline.data.contracts import label_mask
from training_pipeline.data.records import read_records
from training_pipeline.errors import DataError
from training_pipeline.metrics.classification import evaluate_multilabel, tune_thresholds
from training_pipeline.models.losses import multilabel_loss

CLASSES = list(taxonomy.VULNERABILITY_CLASSES)
ARITH, REENT = CLASSES.index("arithmetic"), CLASSES.index("reentrancy")


def old_loss(logits, targets, pos_weight, kind="bce", gamma=2.0) -> torch.Tensor:
    """The loss before masks existed (models/losses.py at the previous commit)."""
    bce = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight, reduction="none")
    if kind == "focal":
        p = torch.sigmoid(logits)
        p_t = p * targets + (1 - p) * (1 - targets)
        bce = bce * (1 - p_t).pow(gamma)
    return bce.mean()


@pytest.mark.parametrize("kind", ["bce", "focal"])
def test_full_mask_gives_exactly_the_old_loss(kind: str) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(13, 9, generator=g)
    targets = (torch.rand(13, 9, generator=g) > 0.7).float()
    pos_weight = torch.rand(9, generator=g) * 10 + 1
    old = old_loss(logits, targets, pos_weight, kind)
    new = multilabel_loss(logits, targets, pos_weight, kind, weight=torch.ones_like(targets))
    assert torch.equal(new, old)  # bit-identical: the corpus's numbers cannot move
    assert torch.equal(multilabel_loss(logits, targets, pos_weight, kind), old)


def test_unassessed_class_does_not_flip_the_loss() -> None:
    # one contract assessed for reentrancy only (positive); arithmetic was never assessed
    targets = torch.zeros(1, 9)
    targets[0, REENT] = 1.0
    mask = torch.zeros(1, 9)
    mask[0, REENT] = 1.0
    # model A: right on reentrancy, but "wrong" on the unassessed arithmetic (and every other class)
    a = torch.full((1, 9), 6.0)
    # model B: only lukewarm on reentrancy, confident "no" elsewhere
    b = torch.full((1, 9), -6.0)
    b[0, REENT] = 0.5
    assert multilabel_loss(a, targets, None) > multilabel_loss(b, targets, None)  # unmasked: B looks better
    assert multilabel_loss(a, targets, None, weight=mask) < multilabel_loss(b, targets, None, weight=mask)
    # and the masked loss is exactly the BCE of the one assessed entry
    expected = F.binary_cross_entropy_with_logits(a[0, REENT], targets[0, REENT])
    assert torch.allclose(multilabel_loss(a, targets, None, weight=mask), expected)
    # changing an unassessed logit changes nothing; an all-masked batch gives 0 (and no NaN)
    a2 = a.clone()
    a2[0, ARITH] = -30.0
    assert torch.equal(
        multilabel_loss(a, targets, None, weight=mask), multilabel_loss(a2, targets, None, weight=mask)
    )
    assert float(multilabel_loss(a, targets, None, weight=torch.zeros_like(mask))) == 0.0


def test_unassessed_entries_do_not_count_in_metrics_or_thresholds() -> None:
    # arithmetic: 2 assessed positives, 2 assessed negatives, 2 unassessed contracts the model scores high
    targets = torch.zeros(6, 9)
    targets[[0, 1], ARITH] = 1.0
    targets[[2, 3], REENT] = 1.0
    mask = torch.ones(6, 9)
    mask[[4, 5], ARITH] = 0.0
    probs = torch.full((6, 9), 0.1)
    probs[[0, 1], ARITH] = 0.8
    probs[[4, 5], ARITH] = 0.9  # would be false positives above every true one, if they counted
    probs[[2, 3], REENT] = 0.8
    cand = list(range(9))
    thr = torch.full((9,), 0.5)
    unmasked = evaluate_multilabel("test", probs, targets, thr, CLASSES, cand)
    masked = evaluate_multilabel("test", probs, targets, thr, CLASSES, cand, mask)
    assert unmasked["test/precision/arithmetic"] == pytest.approx(0.5)
    assert masked["test/precision/arithmetic"] == 1.0 and masked["test/f1/arithmetic"] == 1.0
    assert unmasked["test/auroc"] < 1.0 and masked["test/auroc"] == 1.0  # ranking flips back to perfect
    assert masked["test/auprc"] == 1.0 and masked["test/f1_micro"] == 1.0 > unmasked["test/f1_micro"]
    # thresholds: with the unassessed pair at 0.5, the lowest cut that keeps every assessed entry right is
    # 0.15 when masked; counted as negatives they would push the tuned cut above 0.5
    probs[[4, 5], ARITH] = 0.5
    assert float(tune_thresholds(probs, targets, mask=mask, min_count=1)[ARITH]) < 0.5
    assert float(tune_thresholds(probs, targets, min_count=1)[ARITH]) > 0.5


def test_class_without_an_assessed_negative_is_left_out_of_ranking_metrics() -> None:
    # time_manipulation in CGT: positives, and no assessed negative; its AUROC would be 0, not undefined
    tm = CLASSES.index("time_manipulation")
    targets = torch.zeros(4, 9)
    targets[[0, 1], REENT] = 1.0
    targets[[0, 2], tm] = 1.0
    mask = torch.ones(4, 9)
    mask[[1, 3], tm] = 0.0
    probs = targets * 0.8 + 0.1
    out = evaluate_multilabel("test", probs, targets, torch.full((9,), 0.5), CLASSES, list(range(9)), mask)
    assert out["test/auroc"] == 1.0 and out["test/f1/time_manipulation"] == 1.0


def test_full_mask_gives_exactly_the_old_metrics() -> None:
    g = torch.Generator().manual_seed(1)
    probs = torch.rand(40, 9, generator=g)
    targets = (torch.rand(40, 9, generator=g) > 0.6).float()
    thr = tune_thresholds(probs, targets)
    assert thr.ne(0.5).any()  # enough of both for a tuned cut
    assert torch.equal(thr, tune_thresholds(probs, targets, mask=torch.ones_like(targets)))
    old = evaluate_multilabel("val", probs, targets, thr, CLASSES, list(range(9)))
    new = evaluate_multilabel("val", probs, targets, thr, CLASSES, list(range(9)), torch.ones_like(targets))
    assert old == new


def test_label_mask_of_records() -> None:
    assert label_mask({"id": "a", "labels": ["reentrancy"]}) == [1.0] * 9  # no field: fully assessed
    m = label_mask({"id": "b", "labels": ["reentrancy"], "negative_labels": ["arithmetic"]})
    assert [c for c, v in zip(CLASSES, m, strict=True) if v] == ["arithmetic", "reentrancy"]
    assert label_mask({"id": "c", "labels": [], "negative_labels": []}) == [0.0] * 9
    with pytest.raises(DataError, match=r"record 'd' negative_labels: unknown label\(s\) 'overflow'"):
        label_mask({"id": "d", "labels": [], "negative_labels": ["overflow"]})


def test_unlabeled_real_code_assesses_nothing() -> None:
    """npm real code has no human labels: every class masked, even with empty ``labels``."""
    record = {"id": "npm:x", "labels": [], "unlabeled": True}
    assert label_mask(record) == [0.0] * len(taxonomy.VULNERABILITY_CLASSES)
    assert label_mask({"id": "corpus", "labels": []}) == [1.0] * len(taxonomy.VULNERABILITY_CLASSES)


def test_interchange_file_negative_labels_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "x", "labels": [], "negative_labels": ["reentrncy"]}) + "\n")
    with pytest.raises(DataError, match=r"c.jsonl record 1 \(id 'x'\) negative_labels: unknown label"):
        read_records(path)
    path.write_text(
        json.dumps({"id": "x", "labels": ["arithmetic"], "negative_labels": ["arithmetic"]}) + "\n"
    )
    with pytest.raises(DataError, match=r"in both labels and negative_labels"):
        read_records(path)


def write_partial_file(path: Path) -> Path:
    rows = []
    for i in range(30):
        row = {"id": f"c{i}", "bytecode": "0x" + "6001600201" * (i + 1) + "00", "labels": []}
        if i % 3 == 0:
            row["labels"] = ["reentrancy"]
        if i % 2 == 0:  # half the records assess arithmetic (and their positives) only
            row["negative_labels"] = ["arithmetic"]  # reentrancy unassessed unless positive
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_mask_travels_in_every_batch_and_weights_pos_weight(tmp_path: Path) -> None:
    path = write_partial_file(tmp_path / "partial.jsonl")
    dm = ContractBytecodeDataModule(
        data_dir=str(tmp_path / "data"), sources=["file"], path=str(path), split={"n_folds": 3}, batch_size=4
    )
    dm.setup()
    for split in ("train", "val", "test"):
        for batch in getattr(dm, f"{split}_dataloader")():
            assert batch["label_mask"].shape == batch["labels"].shape
            for row, i in enumerate(batch["index"].tolist()):
                assert batch["label_mask"][row].tolist() == label_mask(dm.records[i])
    train = [dm.records[i] for i in dm.indices("train")]
    pos = sum("reentrancy" in r["labels"] for r in train)
    assessed = sum(
        "negative_labels" not in r or "reentrancy" in r["labels"] + r["negative_labels"] for r in train
    )
    assert dm.pos_weight()[REENT] == pytest.approx(max(1.0, min(50.0, (assessed - pos) / pos)), abs=1e-3)
    assert assessed < len(train)  # some records did not assess reentrancy, and they did not count
