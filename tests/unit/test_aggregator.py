"""The aggregator's input and fusion: missing views are explicit (mask), never zeros that look like data."""

from __future__ import annotations

import json
import math
import random
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from training_pipeline import taxonomy
from training_pipeline.data.stacked import StackedPredictionData, write_stacked
from training_pipeline.errors import ConfigError
from training_pipeline.evaluation.callbacks import ReliabilityDiagram
from training_pipeline.evaluation.predictions import JsonlPredictionWriter, write_model_predictions
from training_pipeline.models.aggregator import Aggregator
from training_pipeline.risk import RiskTarget, risk_level, view_risk

VULN = list(taxonomy.VULNERABILITY_CLASSES)
ANOM = list(taxonomy.ANOMALY_TYPES)


def synthetic_rows(n: int = 160, seed: int = 0) -> list[dict]:
    """Views are noisy copies of the truth; every fifth contract lacks a history, every seventh source."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        labels = [rng.choice(VULN[:6])] if rng.random() < 0.5 else []
        behavior = rng.choice(ANOM[1:]) if rng.random() < 0.2 else "normal"

        def noisy(names, positives):
            return {
                c: min(max((0.8 if c in positives else 0.1) + rng.gauss(0, 0.15), 0.0), 1.0) for c in names
            }

        views = {"bytecode": noisy(VULN, labels)}
        if i % 7:
            views["source"] = noisy(VULN, labels)
        if i % 5:
            views["behavior"] = noisy(ANOM, [behavior])
        split = "test" if i % 4 == 0 else ("val" if i % 4 == 1 else "train")
        rows.append({"id": f"c{i}", "split": split, "views": views, "labels": labels, "behavior": behavior})
    return rows


def write_pipeline(tmp: Path, rows: list[dict]) -> Path:
    manifest = {
        "views": [
            {"view": "bytecode", "model": "bytecode_detector", "kind": "contract_classes", "features": VULN},
            {"view": "source", "model": "code_analyzer", "kind": "contract_classes", "features": VULN},
            {"view": "behavior", "model": "behavior_model", "kind": "anomaly_classes", "features": ANOM},
        ]
    }
    write_stacked(tmp, rows, manifest)
    return tmp


@pytest.fixture
def datamodule(tmp_path: Path) -> StackedPredictionData:
    dm = StackedPredictionData(pipeline_dir=str(write_pipeline(tmp_path, synthetic_rows())), batch_size=32)
    dm.setup()
    return dm


def test_missing_view_is_masked_and_nan_not_zero(datamodule: StackedPredictionData) -> None:
    data = datamodule.splits["all"]
    rows = datamodule.records
    b = datamodule.view_names.index("behavior")
    start = sum(len(datamodule.view_features[v]) for v in datamodule.view_names[:b])
    width = len(datamodule.view_features["behavior"])
    for i, r in enumerate(rows):
        has = "behavior" in r["views"]
        assert data.mask[i, b] == has
        block = data.x[i, start : start + width]
        assert np.isnan(block).all() if not has else np.isfinite(block).all()
    assert (~data.mask[:, b]).sum() == sum("behavior" not in r["views"] for r in rows) > 0


def test_aggregator_ignores_the_content_of_a_missing_view(datamodule: StackedPredictionData) -> None:
    torch.manual_seed(0)
    model = Aggregator(**datamodule.model_kwargs()).eval()
    batch = next(iter(datamodule.train_dataloader()))
    x, mask = batch["features"].clone(), batch["mask"].clone()
    mask[:, 2] = False  # no behavior view anywhere in this batch
    out = model(x, mask)
    assert torch.isfinite(out["risk_logit"]).all() and torch.isfinite(out["class_logits"]).all()
    assert torch.all(out["gates"][:, 2] == 0) and torch.allclose(out["gates"].sum(1), torch.ones(len(x)))
    junk = x.clone()
    junk[:, -len(taxonomy.ANOMALY_TYPES) :] = 0.0  # zeros (or anything) where the view is missing: no effect
    assert torch.allclose(model(junk, mask)["risk_logit"], out["risk_logit"])
    full = batch["mask"].bool() & torch.isfinite(x).view(len(x), -1).all(1, keepdim=True)
    if full.all(1).any():  # dropping a present view does change the prediction
        rows = full.all(1)
        assert not torch.allclose(
            model(x[rows], batch["mask"][rows])["risk_logit"], model(x[rows], mask[rows])["risk_logit"]
        )
    deltas = model.explain(x, mask)
    assert torch.all(deltas[:, 2] == 0)


def test_modality_dropout_keeps_one_present_view(datamodule: StackedPredictionData) -> None:
    model = Aggregator(**datamodule.model_kwargs(), modality_dropout=0.9)
    mask = torch.from_numpy(datamodule.splits["train"].mask)
    for _ in range(20):
        kept = model.drop_modalities(mask)
        assert kept.any(1).all()
        assert not (kept & ~mask).any()  # never invents a view


def test_expert_risk_target_is_severity_weighted() -> None:
    t = RiskTarget()
    assert t.label(["reentrancy"], "normal") == 1
    assert t.label(["time_manipulation"], "normal") == 0  # severity 0.4 < 0.5
    assert t.label(["time_manipulation", "other"], "normal") == 1  # 1 - 0.6 * 0.7 = 0.58
    assert t.label([], "exploit_drain") == 1 and t.label([], "normal") == 0
    assert math.isclose(t.score([], None), 0.0)
    assert view_risk(t, "anomaly_classes", {"normal": 1.0}) == 0.0
    assert view_risk(t, "contract_classes", {"reentrancy": 0.9}) > view_risk(
        t, "contract_classes", {"other": 0.9}
    )
    assert [risk_level(p) for p in (0.1, 0.3, 0.6, 0.9)] == ["low", "medium", "high", "critical"]
    with pytest.raises(ConfigError):
        RiskTarget(vulnerability_severity={"not_a_class": 1.0})


def test_training_calibrates_on_val_and_beats_chance(
    datamodule: StackedPredictionData, tmp_path: Path
) -> None:
    L.seed_everything(0, verbose=False)
    optimizer = partial(torch.optim.AdamW, lr=0.01, weight_decay=0.01)
    scheduler = partial(torch.optim.lr_scheduler.CosineAnnealingLR, eta_min=5e-4)
    model = Aggregator(**datamodule.model_kwargs(), optimizer=optimizer, scheduler=scheduler)
    trainer = L.Trainer(
        max_epochs=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(tmp_path), num_sanity_val_steps=0,
        callbacks=[ReliabilityDiagram()],
    )  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    m = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert m["val/ece"] <= m["val/ece_raw"] + 1e-6  # fitted on val: never worse there
    assert m["val/auroc"] > 0.7
    trainer.test(model, datamodule=datamodule, verbose=False)
    assert (tmp_path / "reliability_test.png").is_file() and (tmp_path / "calibration.json").is_file()
    preds = write_model_predictions(tmp_path / "p.jsonl", model, datamodule)
    lines = preds.read_text().splitlines()
    assert len(lines) == len(datamodule.splits["test"])
    row = json.loads(lines[0])
    assert {"id", "risk", "risk_raw", "level", "target", "views", "gates", "probs"} <= set(row)
    # trainer.predict with the prediction writer gives the same records
    writer = JsonlPredictionWriter(tmp_path / "predict.jsonl", datamodule)
    predictor = L.Trainer(logger=False, enable_progress_bar=False, callbacks=[writer])
    predictor.predict(model, dataloaders=datamodule.test_dataloader(), return_predictions=False)
    predicted = [json.loads(x) for x in (tmp_path / "predict.jsonl").read_text().splitlines()]
    assert predicted == [json.loads(x) for x in lines]
    model.test_predictions = {}  # no test epoch: write_model_predictions runs trainer.predict itself
    again = write_model_predictions(tmp_path / "again.jsonl", model, datamodule)
    assert again.read_text() == preds.read_text()


def test_checkpoint_restores_without_an_optimizer(datamodule: StackedPredictionData, tmp_path: Path) -> None:
    """A module for inference needs no optimizer; one without an optimizer refuses to train, clearly."""
    model = Aggregator(**datamodule.model_kwargs())
    assert "optimizer" not in model.hparams and "scheduler" not in model.hparams
    with pytest.raises(ConfigError, match="model.optimizer"):
        model.configure_optimizers()
    trainer = L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    restored = Aggregator.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=False)
    x, mask = torch.full((2, sum(map(len, datamodule.view_features.values()))), 0.3), torch.ones(2, 3).bool()
    assert torch.allclose(
        restored.eval().predict_risk(x, mask)["risk"], model.eval().predict_risk(x, mask)["risk"]
    )


def test_optional_views_keep_the_false_alarm_budget_with_and_without_them(tmp_path: Path) -> None:
    """A scan may lack an optional view (Slither's findings without --static-analysis): the thresholds keep
    the per-class budget on the audited validation rows whether the view is there or masked."""
    from training_pipeline.metrics.classification import tune_thresholds

    rows = synthetic_rows()
    for r in rows[1::8]:  # validation rows (i % 4 == 1) that assess no class: audited code
        r |= {"labels": [], "unassessed": VULN}
    dm = StackedPredictionData(pipeline_dir=str(write_pipeline(tmp_path, rows)), batch_size=32)
    dm.setup()
    L.seed_everything(0, verbose=False)
    budget = 0.1
    model = Aggregator(**dm.model_kwargs(), optional_views=["source", "static"], max_audited_flag_rate=budget)
    assert model.optional_index == [dm.view_names.index("source")]  # a view it lacks is ignored
    trainer = L.Trainer(
        logger=False, enable_progress_bar=False, enable_model_summary=False, inference_mode=False
    )  # fmt: skip
    trainer.validate(model, datamodule=dm, verbose=False)
    d = model.gathered["val"]
    audited = d["label_mask"].sum(1) == 0
    assert int(audited.sum()) == len(rows[1::8])
    with_view, without = d["class_probs"], d["class_probs_without"]
    has_source = d["mask"][:, dm.view_names.index("source")]
    assert not torch.equal(with_view[has_source], without[has_source])  # the view was masked
    assert torch.equal(with_view[~has_source], without[~has_source])
    for probs in (with_view, without):
        assert ((probs[audited] >= model.thresholds).float().mean(0) <= budget + 1e-6).all()
    alone = tune_thresholds(with_view, d["labels"], mask=d["label_mask"], max_flag_rate=budget)
    assert (model.thresholds >= alone).all()  # never looser than tuning with every view

    # the rule itself: audited code the optional view clears (0.1) but the other views alone flag (0.9)
    n, c = 40, len(VULN)
    labels = torch.zeros(n, c)
    labels[:10, 0] = 1.0  # ten vulnerable contracts of the first class
    label_mask = torch.ones(n, c)
    label_mask[20:] = 0.0  # twenty audited ones
    probs = torch.full((n, c), 0.1)
    probs[:10, 0] = 0.8
    masked = probs.clone()
    masked[20:] = 0.9
    d = {"class_probs": probs, "class_probs_without": masked, "labels": labels, "label_mask": label_mask}
    assert model._tuned_thresholds({k: v for k, v in d.items() if k != "class_probs_without"})[0] <= 0.8
    robust = model._tuned_thresholds(d)
    assert robust[0] > 0.9  # masked, the audited code would all be flagged at any threshold up to 0.9
    assert ((masked[20:] >= robust).float().mean(0) <= budget).all()


def test_a_budget_per_class_reaches_the_aggregator_thresholds(tmp_path: Path) -> None:
    """``max_audited_flag_rate`` as a mapping: ``default`` for the classes it does not name; a class the
    aggregator lacks is a ConfigError when it is built, not after an epoch."""
    rows = synthetic_rows()
    for r in rows[1::8]:  # validation rows that assess no class: audited code
        r |= {"labels": [], "unassessed": VULN}
    dm = StackedPredictionData(pipeline_dir=str(write_pipeline(tmp_path, rows)), batch_size=32)
    dm.setup()
    with pytest.raises(ConfigError, match="unknown class timestamp"):
        Aggregator(**dm.model_kwargs(), max_audited_flag_rate={"default": 0.1, "timestamp": 0.2})
    thresholds = []
    for budget in (0.0, {"default": 0.0}, {"default": 0.0, VULN[0]: 1.0}):
        L.seed_everything(0, verbose=False)
        model = Aggregator(**dm.model_kwargs(), max_audited_flag_rate=budget)
        trainer = L.Trainer(
            logger=False, enable_progress_bar=False, enable_model_summary=False, inference_mode=False
        )  # fmt: skip
        trainer.validate(model, datamodule=dm, verbose=False)
        thresholds.append(model.thresholds.clone())
    assert torch.equal(thresholds[0], thresholds[1])  # a number is the default of every class
    assert torch.equal(thresholds[1][1:], thresholds[2][1:])  # the other classes keep theirs
    assert thresholds[2][0] < thresholds[1][0]  # the named class is free to flag audited rows


def test_an_ensemble_predicts_with_the_mean_of_members_trained_on_their_own_losses(
    datamodule: StackedPredictionData, tmp_path: Path
) -> None:
    """``members=3``: three differently initialized networks, each trained on its own loss (the training
    loss is the mean of theirs), predicting with the mean of their logits and gates; it restores from a
    checkpoint."""
    from training_pipeline.deploy.package import load_component, write_component
    from training_pipeline.models.nets.fusion import FusionEnsemble

    with pytest.raises(ConfigError, match="model.members=0"):
        Aggregator(**datamodule.model_kwargs(), members=0)
    L.seed_everything(0, verbose=False)
    model = Aggregator(**datamodule.model_kwargs(), members=3, modality_dropout=0.0, dropout=0.0)
    assert isinstance(model.net, FusionEnsemble) and len(model.net.members) == 3
    first, second = (dict(m.named_parameters()) for m in model.net.members[:2])
    assert not torch.equal(first["gate.weight"], second["gate.weight"])  # initialized apart
    batch = next(iter(datamodule.val_dataloader()))
    x, mask = batch["features"], batch["mask"].bool()
    outs = [net(x, mask) for net in model.net.members]
    fused = model(x, mask)
    for key in ("risk_logit", "class_logits", "gates"):
        assert torch.allclose(fused[key], torch.stack([o[key] for o in outs]).mean(0))
    assert torch.allclose(fused["gates"].sum(1), torch.ones(len(x)))
    own = torch.stack([model._loss(o, batch) for o in outs]).mean()
    assert torch.allclose(model.training_loss(batch), own)  # not the loss of the mean (one wide network)
    assert not torch.allclose(model._loss(fused, batch), own)

    optimizer = partial(torch.optim.AdamW, lr=0.01, weight_decay=0.01)
    model = Aggregator(**datamodule.model_kwargs(), members=3, optimizer=optimizer)
    trainer = L.Trainer(
        max_epochs=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(tmp_path), num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    assert float(trainer.callback_metrics["val/auroc"]) > 0.7
    trainer.save_checkpoint(tmp_path / "ensemble.ckpt")
    restored = Aggregator.load_from_checkpoint(tmp_path / "ensemble.ckpt", weights_only=False).eval()
    assert isinstance(restored.net, FusionEnsemble) and torch.equal(restored.thresholds, model.thresholds)
    assert torch.allclose(restored.predict_risk(x, mask)["risk"], model.eval().predict_risk(x, mask)["risk"])
    write_component(model, None, tmp_path / "component")  # a deployable package holds it the same way
    packaged, _ = load_component(tmp_path / "component")
    assert torch.allclose(packaged.predict_risk(x, mask)["risk"], model.predict_risk(x, mask)["risk"])


def test_budget_rows_are_the_training_splits_audited_rows(tmp_path: Path) -> None:
    rows = synthetic_rows()
    for r in rows:
        if int(r["id"][1:]) % 3 == 0:
            r |= {"labels": [], "unassessed": VULN}  # audited code, in every split
    pipeline = str(write_pipeline(tmp_path, rows))
    assert StackedPredictionData(pipeline_dir=pipeline).budget_rows() is None  # [val]: validation only
    dm = StackedPredictionData(pipeline_dir=pipeline, budget_splits=["val", "train"])
    extra = dm.budget_rows()
    ids = [dm.records[i]["id"] for i in dm.splits["train"].index]
    want = [i for i in ids if int(i[1:]) % 3 == 0]
    assert len(extra["features"]) == len(extra["mask"]) == len(want) > 0
    first = ids.index(want[0])
    assert torch.equal(extra["mask"][0], torch.from_numpy(dm.splits["train"].mask[first]))
    for bad in (["train"], ["val", "test"]):
        with pytest.raises(ConfigError, match=r"expected \[val\] or \[val,train\]"):
            StackedPredictionData(pipeline_dir=pipeline, budget_splits=bad)
    with pytest.raises(ConfigError, match="rows it fitted"):
        StackedPredictionData(
            pipeline_dir=pipeline, budget_splits=["val", "train"], audited_negative_weight=1.0
        )


def test_audited_training_rows_become_negatives_of_every_class_at_their_weight(tmp_path: Path) -> None:
    """``audited_negative_weight``: training rows that assess no class (audited code) are negatives of every
    class at that weight; validation's audited rows stay masked (the false-alarm budget finds them so), and
    a row with some assessed classes (CGT's partial labels) keeps its mask."""
    rows = synthetic_rows()
    for r in rows[::4] + rows[1::4] + rows[2::4]:  # test, val and train rows alike
        if int(r["id"][1:]) % 3 == 0:
            r |= {"labels": [], "unassessed": VULN}  # audited code
        elif int(r["id"][1:]) % 3 == 1:
            r |= {"unassessed": [c for c in VULN[6:] if c not in r["labels"]]}  # partial labels
    pipeline = write_pipeline(tmp_path, rows)
    with pytest.raises(ConfigError, match="data.audited_negative_weight=-1"):
        StackedPredictionData(pipeline_dir=str(pipeline), audited_negative_weight=-1)
    plain, weighted = (
        StackedPredictionData(pipeline_dir=str(pipeline), audited_negative_weight=w) for w in (None, 2.0)
    )
    plain.setup()
    weighted.setup()
    for split in ("train", "val", "test"):
        before, after = plain.splits[split].label_mask, weighted.splits[split].label_mask
        audited = before.sum(1) == 0
        assert audited.any() and (before[~audited] == after[~audited]).all()  # partial rows keep theirs
        assert (after[audited] == (2.0 if split == "train" else 0.0)).all()
    assert (weighted.splits["all"].label_mask == plain.splits["all"].label_mask).all()
    # the class loss now learns from them: a model that flags audited code pays for it in training only
    model = Aggregator(**weighted.model_kwargs()).eval()
    train = weighted.splits["train"]
    audited = np.flatnonzero(plain.splits["train"].label_mask.sum(1) == 0)
    batch = default_collate([train[i] for i in audited])
    out = {
        "risk_logit": torch.zeros(len(audited)),
        "class_logits": torch.full((len(audited), len(VULN)), 3.0),
    }
    unweighted = default_collate([plain.splits["train"][i] for i in audited])
    assert float(model._loss(out, batch)) > float(model._loss(out, unweighted)) + 1.0
