"""Threshold tuning and metric flattening."""

from __future__ import annotations

import pytest
import torch

from training_pipeline.errors import ConfigError
from training_pipeline.metrics.classification import (
    check_threshold_beta,
    class_flag_budgets,
    evaluate_multilabel,
    f1_per_class,
    fbeta_per_class,
    flag_summary,
    flatten,
    tune_thresholds,
)


def test_tune_thresholds_finds_the_separating_cut() -> None:
    # class 0 separable at 0.3 (positives at 0.35-0.4), class 1 separable at 0.8, class 2 has no positives
    probs = torch.tensor([[0.35, 0.9, 0.1], [0.4, 0.85, 0.2], [0.1, 0.6, 0.3], [0.2, 0.7, 0.9]])
    targets = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=torch.float)
    t = tune_thresholds(probs, targets, min_count=1)
    assert 0.2 < t[0] <= 0.35
    assert 0.7 < t[1] <= 0.85
    assert t[2] == 0.5  # no positives: the default stays


def test_fbeta_weighs_recall_and_beta_two_lowers_the_threshold() -> None:
    # 6 positives at 0.30-0.80 and 4 of 6 negatives at 0.40-0.55: F1 cuts at 0.6 (it gives up the two low
    # positives), F2 keeps them at the cost of four false alarms; a budget still binds either way
    pos = torch.tensor([0.30, 0.35, 0.60, 0.65, 0.70, 0.80])
    neg = torch.tensor([0.05, 0.10, 0.40, 0.45, 0.50, 0.55])
    probs = torch.cat([pos, neg]).unsqueeze(1).repeat(1, 2)  # two classes alike: torchmetrics wants two
    targets = torch.cat([torch.ones(6), torch.zeros(6)]).unsqueeze(1).repeat(1, 2)
    preds = probs >= 0.3
    assert torch.equal(fbeta_per_class(preds, targets, beta=1.0), f1_per_class(preds, targets))
    # tp 6, fp 4, fn 0: F2 = 5*6 / (5*6 + 4*0 + 4)
    assert float(fbeta_per_class(preds, targets, beta=2.0)[0]) == pytest.approx(30 / 34)
    f1_cut = float(tune_thresholds(probs, targets, min_count=1)[0])
    f2_cut = float(tune_thresholds(probs, targets, min_count=1, beta=2.0)[0])
    assert 0.55 < f1_cut <= 0.6 + 1e-6 and 0.10 < f2_cut <= 0.3 + 1e-6  # F2 ties from 0.15 to 0.3
    audited = torch.full((10, 2), 0.32)  # audited rows at 0.32: a 10% budget forbids cutting below them
    with_audited = torch.cat([probs, audited])
    mask = torch.cat([torch.ones(12, 2), torch.zeros(10, 2)])
    rows = torch.cat([targets, torch.zeros(10, 2)])
    bound = tune_thresholds(with_audited, rows, mask=mask, min_count=1, max_flag_rate=0.1, beta=2.0)
    assert 0.32 < float(bound[0]) <= 0.35 + 1e-6
    for bad in (0, -1.0, True, "2"):
        with pytest.raises(ConfigError, match="model.threshold_beta"):
            check_threshold_beta(bad)


def test_tune_thresholds_keeps_the_default_without_enough_positives_and_negatives() -> None:
    # class 0: 6 positives and no negative (CGT's time manipulation): F1 is best at the lowest cut, which
    # would flag every contract; class 1: 6 and 6, tuned; class 2: 3 positives and 9 negatives, too few
    probs = torch.linspace(0.05, 0.95, 12).unsqueeze(1).repeat(1, 3)
    targets = torch.zeros(12, 3)
    targets[6:, 1] = 1.0
    targets[:, 0] = 1.0
    targets[9:, 2] = 1.0
    t = tune_thresholds(probs, targets)
    assert t[0] == 0.5 and t[2] == 0.5
    assert 0.45 < t[1] <= 0.55 + 1e-6
    assert tune_thresholds(probs, targets, min_count=0)[0] < 0.1  # what the guard prevents


def test_false_alarm_budget_raises_thresholds_on_audited_rows() -> None:
    # 12 labelled rows: class 0 separable at 0.3 (best F1 there); 10 audited rows (no class assessed) that
    # score 0.35-0.8 on class 0: at 0.3 all of them would be flagged
    labelled = torch.linspace(0.05, 0.6, 12).unsqueeze(1).repeat(1, 2)
    targets = torch.zeros(22, 2)
    targets[6:12, :] = 1.0
    audited = torch.linspace(0.35, 0.8, 10).unsqueeze(1).repeat(1, 2)
    probs = torch.cat([labelled, audited])
    mask = torch.ones(22, 2)
    mask[12:] = 0.0
    mask[:, 1] = torch.cat([torch.zeros(12), torch.zeros(10)])  # class 1: nothing assessed, untuned
    free = tune_thresholds(probs, targets, mask=mask)
    budget = tune_thresholds(probs, targets, mask=mask, max_flag_rate=0.2)
    assert free[0] <= 0.35 and free[1] == 0.5
    for c in range(2):  # at most 2 of the 10 audited rows are flagged, per class
        assert (probs[12:, c] >= budget[c]).float().mean() <= 0.2
    assert budget[0] > free[0] and budget[1] > 0.5
    none_fits = tune_thresholds(probs * 0 + 0.99, targets, mask=mask, max_flag_rate=0.0)
    assert torch.allclose(none_fits, torch.full((2,), 0.95))  # nothing within budget: the grid's top


def test_a_budget_per_class_loosens_only_the_class_it_names() -> None:
    # both classes: 10 audited rows at 0.35-0.8; positives of both separable at 0.3 (as above)
    labelled = torch.linspace(0.05, 0.6, 12).unsqueeze(1).repeat(1, 2)
    targets = torch.zeros(22, 2)
    targets[6:12, :] = 1.0
    probs = torch.cat([labelled, torch.linspace(0.35, 0.8, 10).unsqueeze(1).repeat(1, 2)])
    mask = torch.ones(22, 2)
    mask[12:] = 0.0
    names = ["reentrancy", "time_manipulation"]
    uniform = tune_thresholds(probs, targets, mask=mask, max_flag_rate=0.2)
    rates = class_flag_budgets({"default": 0.2, "time_manipulation": 0.6}, names)
    assert rates.tolist() == pytest.approx([0.2, 0.6])
    mixed = tune_thresholds(probs, targets, mask=mask, max_flag_rate=rates)
    assert mixed[0] == uniform[0]  # the default class keeps its budget
    assert mixed[1] < uniform[1]  # the named class may flag up to 6 of the 10 audited rows
    assert (probs[12:, 1] >= mixed[1]).float().mean() <= 0.6
    # a number is every class's budget; a mapping without default leaves the others unbudgeted
    assert class_flag_budgets(0.03, names).tolist() == pytest.approx([0.03, 0.03])
    assert class_flag_budgets({"reentrancy": 0.1}, names)[1] == float("inf")
    assert class_flag_budgets(None, names) is None
    with pytest.raises(ConfigError, match="unknown class timestamp"):
        class_flag_budgets({"timestamp": 0.1}, names)
    for bad in ({"default": 1.5}, {"default": "often"}, -0.1):
        with pytest.raises(ConfigError, match="expected rates in"):
            class_flag_budgets(bad, names)


def test_a_shared_flag_budget_is_spent_where_it_buys_f1() -> None:
    """Class 0's false alarms on audited code cost no F1 to remove, class 1's do. A 20% budget on audited rows
    flagged for any class is spent on class 1, which keeps its best-F1 threshold; the same 20% per class
    cannot do that, and a 5% per-class budget costs class 1 most of its recall."""
    pos = torch.linspace(0.3, 0.9, 20)
    labelled = torch.stack([torch.cat([torch.full((20,), 0.9), torch.full((20,), 0.1)]),
                            torch.cat([pos, torch.full((20,), 0.1)])], dim=1)  # fmt: skip
    audited = torch.stack([torch.linspace(0.3, 0.6, 20), torch.tensor([0.5] * 4 + [0.05] * 16)], dim=1)
    probs = torch.cat([labelled, audited])
    targets = torch.zeros(60, 2)
    targets[:20] = 1.0
    mask = torch.cat([torch.ones(40, 2), torch.zeros(20, 2)])
    free = tune_thresholds(probs, targets, mask=mask)
    assert (probs[40:] >= free).any(1).float().mean() == 1.0  # every audited row flagged (class 0)
    shared = tune_thresholds(probs, targets, mask=mask, max_flagged_share=0.2)
    assert (probs[40:] >= shared).any(1).float().mean() <= 0.2
    assert shared[1] <= 0.3 and (probs[:20, 1] >= shared[1]).all()  # class 1 keeps every positive
    assert (probs[:20, 0] >= shared[0]).all()  # class 0 too: it only had to rise above the audited scores
    per_class = tune_thresholds(probs, targets, mask=mask, max_flag_rate=0.05)
    assert per_class[1] > 0.5 and (probs[:20, 1] >= per_class[1]).float().mean() < 0.7
    stuck = tune_thresholds(probs * 0 + 0.99, targets, mask=mask, max_flagged_share=0.0)
    assert torch.allclose(stuck, torch.full((2,), 0.95))  # nothing fits: every class at the grid's top


def test_flag_summary_splits_labelled_rows_from_audited_ones() -> None:
    """Two classes; rows 0-2 labelled (row 2 assesses class 0 only), rows 3-4 audited (nothing assessed)."""
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.1, 0.9], [0.7, 0.1], [0.1, 0.2]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    low = flag_summary(probs, targets, torch.tensor([0.5, 0.5]), mask)
    # known vulnerabilities: (0,0), (1,0), (1,1); row 2's class 1 is unassessed: its flag counts for nothing
    assert low["rows"] == 3 and low["audited_rows"] == 2
    assert low["recall"] == pytest.approx(2 / 3) and low["contract_recall"] == 1.0
    assert low["wrong_flags_per_contract"] == 0.0
    assert low["audited_flagged"] == 0.5  # row 3, for class 0
    high = flag_summary(probs, targets, torch.tensor([0.95, 0.5]), mask)
    assert high["recall"] == pytest.approx(1 / 3) and high["contract_recall"] == 0.5
    assert high["audited_flagged"] == 0.0
    wrong = flag_summary(probs, targets, torch.tensor([0.1, 0.5]), mask)
    assert wrong["wrong_flags_per_contract"] == pytest.approx(1 / 3)  # row 2's class 0, assessed as absent
    assert wrong["audited_flagged"] == 1.0


def test_flatten_names_scalars_and_per_class_values() -> None:
    out = flatten("val", {"f1_macro": torch.tensor(0.5), "f1": torch.tensor([0.2, 0.8])}, ["a", "b"])
    assert out == pytest.approx({"val/f1_macro": 0.5, "val/f1/a": 0.2, "val/f1/b": 0.8})


def test_macro_metrics_skip_classes_absent_from_the_split_but_micro_counts_their_false_alarms() -> None:
    probs = torch.tensor([[0.9, 0.1, 0.8], [0.1, 0.9, 0.1], [0.2, 0.2, 0.1]])
    targets = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=torch.float)  # class c never occurs
    out = evaluate_multilabel("test", probs, targets, torch.full((3,), 0.5), ["a", "b", "c"], [0, 1, 2])
    assert out["test/f1_macro"] == pytest.approx(1.0)  # a and b are perfect; c is not averaged in
    assert "test/f1/c" not in out and out["test/f1/a"] == pytest.approx(1.0)
    assert out["test/f1_micro"] == pytest.approx(2 * 2 / (2 * 2 + 1))  # the false alarm on c counts


def test_a_models_threshold_beta_reaches_its_tuning(monkeypatch) -> None:
    """``model.threshold_beta`` is checked when the model is built and is what its validation hook tunes
    thresholds with (a checkpoint saved before the option tunes F1)."""
    from training_pipeline import taxonomy
    from training_pipeline.models import contract_classifier
    from training_pipeline.models.bytecode_detector import BytecodeDetector

    def build(**kw):
        classes, families = list(taxonomy.VULNERABILITY_CLASSES), list(taxonomy.FAMILIES)
        return BytecodeDetector(16, classes, families, embed_dim=8, channels=8, depth=1, **kw)

    with pytest.raises(ConfigError, match="model.threshold_beta=0"):
        build(threshold_beta=0)

    class Trainer:  # what the hook reads of the trainer
        sanity_checking = False

    seen = []

    def recorder(probs, targets, **kw):
        seen.append(kw["beta"])
        return torch.full((probs.shape[1],), 0.4)

    monkeypatch.setattr(contract_classifier, "tune_thresholds", recorder)
    for kw, expected in (({"threshold_beta": 2.0}, 2.0), ({}, 1.0)):
        model = build(**kw)
        if not kw:
            del model.hparams["threshold_beta"]  # as in a checkpoint from before the option
        n = len(model.class_names)
        targets = (torch.rand(6, n) > 0.5).float()
        batch = {"probs": torch.rand(6, n), "targets": targets, "mask": torch.ones(6, n)}
        monkeypatch.setattr(model, "gather", lambda split, b=batch: b)
        monkeypatch.setattr(model, "log", lambda *a, **k: None)
        monkeypatch.setattr(model, "log_dict", lambda *a, **k: None)
        model._trainer = Trainer()
        model.on_validation_epoch_end()
        assert seen[-1] == expected and torch.allclose(model.thresholds, torch.full((n,), 0.4))
