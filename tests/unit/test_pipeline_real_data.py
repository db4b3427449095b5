"""Train-all with real contracts in the mix: which stages get the real sources, and how the aggregator treats
partially labelled rows (CGT's masked classes) and audited code that assesses no class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import compose_config
from hydra.core.global_hydra import GlobalHydra

from training_pipeline import taxonomy
from training_pipeline.data.stacked import StackedPredictionData, write_stacked
from training_pipeline.errors import ConfigError
from training_pipeline.models.aggregator import Aggregator
from training_pipeline.pipeline.runner import Pipeline, stage_overrides
from training_pipeline.pipeline.stack import ModelView, build_stacked
from training_pipeline.pipeline.stages import StageResult

VULN = list(taxonomy.VULNERABILITY_CLASSES)


def _pipeline_cfg(tmp_path: Path, *overrides: str):
    cfg = compose_config(
        "pipeline.yaml", ["name=probe", "tracking.enabled=false", *overrides], tmp_path / "p"
    )
    GlobalHydra.instance().clear()
    return cfg


def test_real_data_goes_to_the_contract_models_only(tmp_path: Path) -> None:
    cfg = _pipeline_cfg(tmp_path)
    bytecode, source = stage_overrides(cfg, "bytecode_detector"), stage_overrides(cfg, "code_analyzer")
    behavior = stage_overrides(cfg, "behavior_model")
    for ov in (bytecode, source):
        assert "data.sources=[corpus,cgt,real_code]" in ov and "data.val_sources=[cgt,real_code]" in ov
        assert "model.max_audited_flag_rate=0.01" in ov
    assert not any(o.startswith(("data.sources=", "model.max_audited")) for o in behavior)
    # one corpus for every view (ids and folds match): the real-data corpus settings reach all three
    corpus = [o for o in bytecode if o.startswith("data.corpus.")]
    assert corpus == [o for o in behavior if o.startswith("data.corpus.")]
    assert "data.corpus.short_fraction=0.4" in corpus
    assert "data.corpus.compile_variants=[{optimize:false},{optimize:true,runs:200}]" in corpus
    # a model's own overrides come last, so they win over the real-data ones
    assert bytecode.index("data.sources=[corpus,cgt,real_code]") < bytecode.index("data.train_variants=pair")

    off = _pipeline_cfg(tmp_path, "real_data.enabled=false")
    plain = stage_overrides(off, "bytecode_detector")
    assert not any(o.startswith(("data.sources=", "model.max_audited")) for o in plain)
    assert "data.corpus.short_fraction=0.4" not in plain


def test_a_stage_reruns_when_its_npm_package_list_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the packaged npm list is filled in at load time, not in the stage's config: it is in the stage's hash,
    # so a rerun after the list changes does not reuse a model trained on the old one
    from training_pipeline.config import compose_task
    from training_pipeline.data.contracts import source_fingerprint
    from training_pipeline.data.importers import real_code

    cfg = _pipeline_cfg(tmp_path)
    stage = compose_task("train.yaml", stage_overrides(cfg, "bytecode_detector"), tmp_path / "s")
    first = source_fingerprint(stage.data)
    names = [p["name"] for p in first["real_code"]["packages"]]
    assert set(first) == {"real_code"} and "@chainlink/contracts" in names and "@aragon/os" in names
    packaged = real_code.default_config_block()
    shorter = {**packaged, "packages": packaged["packages"][:-1]}
    monkeypatch.setattr(real_code, "default_config_block", lambda: shorter)
    assert source_fingerprint(stage.data) != first
    behavior = compose_task("train.yaml", stage_overrides(cfg, "behavior_model"), tmp_path / "b")
    assert source_fingerprint(behavior.data) == {}  # nothing beyond its config: its hash is as before


def test_real_data_model_overrides_reach_one_model_and_its_own_overrides_win(tmp_path: Path) -> None:
    cfg = _pipeline_cfg(tmp_path)
    source, bytecode = stage_overrides(cfg, "code_analyzer"), stage_overrides(cfg, "bytecode_detector")
    # the default: the npm code as negatives of both contract models; the code analyzer has its own budget
    assert "data.audited_negative_weight=1.0" in source and "data.audited_negative_weight=1.0" in bytecode
    assert "model.max_audited_flag_rate=0.03" in source and "model.max_audited_flag_rate=0.03" not in bytecode
    behavior = stage_overrides(cfg, "behavior_model")  # histories have no audited source: the key would fail
    assert not any(o.startswith("data.audited_negative_weight") for o in behavior)
    # after the real-data sources (it needs them) and the shared budget, which the model's own one overrides
    assert source.index("data.sources=[corpus,cgt,real_code]") < source.index(
        "data.audited_negative_weight=1.0"
    )
    assert source.index("model.max_audited_flag_rate=0.01") < source.index("model.max_audited_flag_rate=0.03")
    # a model's own overrides come last, so they win over both
    own = _pipeline_cfg(tmp_path, 'models.code_analyzer.overrides=["data.audited_negative_weight=0.5"]')
    ov = stage_overrides(own, "code_analyzer")
    assert ov.index("data.audited_negative_weight=1.0") < ov.index("data.audited_negative_weight=0.5")
    # off with the real data: the generated corpus has no audited source, so the key would be a config error
    off = _pipeline_cfg(tmp_path, "real_data.enabled=false")
    for model in ("code_analyzer", "bytecode_detector"):
        assert not any(o.startswith("data.audited_negative_weight") for o in stage_overrides(off, model))


@pytest.mark.parametrize(
    ("override", "match"),
    [
        (
            "+real_data.model_overrides.code_analyzr=['data.audited_negative_weight=1.0']",
            r"unknown model\(s\) \['code_analyzr'\]",
        ),
        (
            "real_data.model_overrides.code_analyzer=data.audited_negative_weight",
            "expected a mapping model -> list",
        ),
    ],
)
def test_a_bad_real_data_model_override_is_named(tmp_path: Path, override: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Pipeline(_pipeline_cfg(tmp_path, override))


def test_an_unknown_real_data_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"real_data: unknown key\(s\) \['sourcez'\]"):
        Pipeline(_pipeline_cfg(tmp_path, "+real_data.sourcez=[cgt]"))


def _stage(tmp_path: Path, name: str, preds: dict[str, dict], splits: dict[str, list[str]]) -> StageResult:
    path = tmp_path / f"{name.replace('/', '_')}.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": i, "probs": dict.fromkeys(VULN, 0.3), **p}) + "\n" for i, p in preds.items()
        )
    )
    return StageResult(name, "trained", 0, "h", path.name, None, splits)


def test_stacked_rows_carry_the_unassessed_classes(tmp_path: Path) -> None:
    """A CGT row keeps its masked classes, an audited row (no label) every class, a generated row none."""
    cgt = {"labels": ["reentrancy"], "unassessed": ["front_running"]}
    audited = {"labels": [], "unassessed": VULN}
    generated = {"labels": []}

    def splits(train: str, val: list[str], test: str) -> dict[str, list[str]]:
        return {"train": [train], "val": val, "test": [test]}

    stages = {
        "m/fold1": _stage(tmp_path, "m/fold1", {"cgt/a": cgt}, splits("npm:b", [], "cgt/a")),
        "m/fold2": _stage(tmp_path, "m/fold2", {"npm:b": audited}, splits("cgt/a", [], "npm:b")),
        "m/full": _stage(tmp_path, "m/full", {"c3": generated}, splits("cgt/a", ["npm:b"], "c3")),
    }
    rows, _ = build_stacked(
        tmp_path, [ModelView("m", "bytecode", "contract_classes")], stages, ["fold1", "fold2"]
    )
    by_id = {r["id"]: r for r in rows}
    assert by_id["cgt/a"]["unassessed"] == ["front_running"] and by_id["cgt/a"]["labels"] == ["reentrancy"]
    assert by_id["npm:b"]["unassessed"] == VULN
    assert "unassessed" not in by_id["c3"]

    write_stacked(
        tmp_path, rows, {"views": [{"view": "bytecode", "kind": "contract_classes", "features": VULN}]}
    )
    dm = StackedPredictionData(pipeline_dir=str(tmp_path))
    dm.setup()
    mask = {}
    for split in ("train", "val", "test"):
        rows_of = dm.splits[split]
        for i, m in zip(rows_of.index, rows_of.label_mask, strict=True):
            mask[dm.records[int(i)]["id"]] = m
    assert mask["cgt/a"].tolist() == [0.0 if c == "front_running" else 1.0 for c in VULN]
    assert mask["npm:b"].sum() == 0 and mask["c3"].sum() == len(VULN)
    assert dm.splits["val"][0]["label_mask"].sum() == 0  # the audited row, as the batch carries it


def _aggregator(**kwargs) -> Aggregator:
    return Aggregator(["bytecode"], {"bytecode": VULN}, VULN, {"bytecode": "contract_classes"}, **kwargs)


def test_the_class_head_ignores_unassessed_classes() -> None:
    """Flipping the label of a masked class leaves the loss unchanged; flipping an assessed one does not."""
    torch.manual_seed(0)
    model = _aggregator(class_loss_weight=1.0)
    c = len(VULN)
    out = model(torch.rand(4, c), torch.ones(4, 1, dtype=torch.bool))
    labels = torch.zeros(4, c)
    mask = torch.ones(4, c)
    mask[0, 2] = 0.0
    batch = {"risk": torch.zeros(4), "labels": labels, "label_mask": mask}
    base = model._loss(out, batch)
    flipped = labels.clone()
    flipped[0, 2] = 1.0
    assert torch.isclose(model._loss(out, {**batch, "labels": flipped}), base)
    flipped[1, 2] = 1.0
    assert not torch.isclose(model._loss(out, {**batch, "labels": flipped}), base)


def test_aggregator_thresholds_respect_the_audited_budget() -> None:
    """Validation with assessed CGT-like rows and audited rows (mask all zero) that score high on one class:
    without a budget the best-F1 threshold flags most audited rows, with 1% it flags none."""
    torch.manual_seed(0)
    n, c = 200, len(VULN)
    k = VULN.index("reentrancy")
    labels = torch.zeros(2 * n, c)
    labels[: n // 2, k] = 1.0
    probs = torch.full((2 * n, c), 0.05)
    probs[: n // 2, k] = 0.9  # positives
    probs[n // 2 : n, k] = 0.2  # assessed negatives
    probs[n:, k] = torch.linspace(
        0.5, 0.85, n
    )  # audited code: scores below the positives, above the negatives
    mask = torch.cat([torch.ones(n, c), torch.zeros(n, c)])
    d = {
        "class_probs": probs,
        "labels": labels,
        "label_mask": mask,
        "risk_logit": torch.zeros(2 * n),
        "risk": labels.max(1).values,
    }
    for budget, most in ((None, 1.0), (0.01, 0.01)):
        model = _aggregator(max_audited_flag_rate=budget)
        model.gather = lambda stage, d=d: d
        model.trainer = type("T", (), {"sanity_checking": False})()
        model.log = model.log_dict = lambda *a, **kw: None
        model.on_validation_epoch_end()
        flagged = (probs[n:, k] >= model.thresholds[k]).float().mean()
        assert flagged <= most
        assert (probs[: n // 2, k] >= model.thresholds[k]).all()  # the positives stay flagged
        if budget is None:
            assert flagged > 0.5


class _BudgetRows:
    """A datamodule's ``budget_rows``: the given class probabilities as features (the model reads them back
    as logits), every row with its one view present."""

    def __init__(self, probs: torch.Tensor | None) -> None:
        self.probs = probs

    def budget_rows(self) -> dict[str, torch.Tensor] | None:
        if self.probs is None:
            return None
        return {"features": self.probs, "mask": torch.ones(len(self.probs), 1, dtype=torch.bool)}


def test_the_budget_can_count_the_training_splits_audited_rows() -> None:
    """``data.budget_splits=[val,train]``: validation holds no audited row here, so alone it leaves the
    best-F1 threshold, which flags most of the training split's audited code; counting those rows too, the
    1% budget raises the threshold above them, and the positives stay flagged."""
    n, c = 100, len(VULN)
    k = VULN.index("reentrancy")
    labels = torch.zeros(n, c)
    labels[: n // 2, k] = 1.0
    probs = torch.full((n, c), 0.05)
    probs[: n // 2, k] = 0.9  # positives
    probs[n // 2 :, k] = 0.2  # assessed negatives
    d = {"class_probs": probs, "labels": labels, "label_mask": torch.ones(n, c)}
    d |= {"risk_logit": torch.zeros(n), "risk": labels.max(1).values}
    audited = torch.full((200, c), 0.05)
    audited[:, k] = torch.linspace(0.3, 0.85, 200)  # the training split's audited code
    for rows, most, least in ((None, 1.0, 0.5), (audited, 0.01, 0.0)):
        model = _aggregator(max_audited_flag_rate=0.01).eval()
        model.gather = lambda stage: d
        model.forward = lambda features, mask: {"class_logits": torch.logit(features)}
        model.trainer = type("T", (), {"sanity_checking": False, "datamodule": _BudgetRows(rows)})()
        model.log = model.log_dict = lambda *a, **kw: None
        model.on_validation_epoch_end()
        flagged = float((audited[:, k] >= model.thresholds[k]).float().mean())
        assert least <= flagged <= most
        assert (probs[: n // 2, k] >= model.thresholds[k]).all()  # the positives stay flagged
