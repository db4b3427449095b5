"""Thresholds per compiler era (``model.threshold_eras``): code of the newer eras, which the labelled real
data barely holds, gets the lowest thresholds its own era's audited validation code allows, never above the
main ones; the era travels from the records to the batches, the checkpoint, the predictions and
the scanner."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import file_bytecode_module, tiny_detector

from training_pipeline.data.contracts import era_code
from training_pipeline.data.evm import metadata_solc_version
from training_pipeline.errors import ConfigError
from training_pipeline.evaluation.retune import parser
from training_pipeline.metrics.classification import era_groups, tune_era_thresholds, tune_thresholds
from training_pipeline.models.contract_classifier import check_threshold_eras

OLD, NEW = era_code("0.4"), era_code("0.8")


def rows(n: int, p: list[float], labels: list[float] | None, era: int) -> dict[str, torch.Tensor]:
    """n rows of the same probabilities; labels None: audited code (no class assessed)."""
    return {
        "probs": torch.tensor([p] * n),
        "targets": torch.tensor([labels or [0.0] * len(p)] * n),
        "mask": torch.full((n, len(p)), 0.0 if labels is None else 1.0),
        "era": torch.full((n,), era),
    }


def stack(*parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def tune(d: dict[str, torch.Tensor], budget: float | None = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    base = tune_thresholds(d["probs"], d["targets"], mask=d["mask"], max_flag_rate=budget)
    bounds = torch.tensor([era_code("0.5")])
    by_era = tune_era_thresholds(
        d["probs"], d["targets"], d["era"], bounds, base, d["mask"], max_flag_rate=budget
    )
    return base, by_era[0]


def labelled_old_era() -> list[dict[str, torch.Tensor]]:
    """Flawed 0.4 code at 0.8, sound at 0.2; audited 0.4 code at 0.55 (the budget lifts the threshold over
    it)."""
    return [
        rows(20, [0.8, 0.8], [1.0, 1.0], OLD),
        rows(20, [0.2, 0.2], [0.0, 0.0], OLD),
        rows(20, [0.55, 0.55], None, OLD),
    ]


def test_a_newer_era_gets_the_lowest_threshold_its_audited_code_allows_never_above_the_main_one() -> None:
    audited_new = [rows(26, [0.1, 0.1], None, NEW), rows(4, [0.1, 0.9], None, NEW)]
    base, new = tune(stack(*labelled_old_era(), *audited_new), budget=0.1)
    assert base.tolist() == pytest.approx([0.6, 0.6])  # over the audited 0.4 code's 0.55 (20 of 50 rows)
    # class 0: the 0.8 audited code tops out at 0.1, so 0.15 keeps it unflagged; class 1: 4 of its 30 score
    # 0.9, over the budget below 0.95, which is above the main threshold: that one stays
    assert new.tolist() == pytest.approx([0.15, 0.6])


def test_without_a_budget_or_audited_code_of_the_era_the_main_thresholds_stay() -> None:
    with_new = stack(*labelled_old_era(), rows(30, [0.1, 0.1], None, NEW))
    base, new = tune(with_new, budget=None)
    assert torch.equal(new, base)
    base, new = tune(stack(*labelled_old_era(), rows(3, [0.1, 0.1], [1.0, 0.0], NEW)))
    assert torch.equal(new, base)  # labelled 0.8 rows but no audited ones: nothing to set a threshold by


def test_a_class_without_a_budget_keeps_its_main_threshold_in_every_era() -> None:
    d = stack(*labelled_old_era(), rows(30, [0.1, 0.1], None, NEW))
    budget = torch.tensor([0.01, float("inf")])  # class_flag_budgets({"class0": 0.01}): class 1 has none
    base = tune_thresholds(d["probs"], d["targets"], mask=d["mask"], max_flag_rate=budget)
    bounds = torch.tensor([era_code("0.5")])
    new = tune_era_thresholds(
        d["probs"], d["targets"], d["era"], bounds, base, d["mask"], max_flag_rate=budget
    )[0]
    assert new[0] == pytest.approx(0.15) and new[1] == base[1]  # not the grid's bottom: nothing bounds it


def test_a_newer_era_with_enough_labelled_rows_is_tuned_on_them() -> None:
    new_era = [
        rows(10, [0.4, 0.4], [1.0, 1.0], NEW),
        rows(10, [0.05, 0.05], [0.0, 0.0], NEW),
        rows(30, [0.02, 0.02], None, NEW),
    ]
    base, new = tune(stack(*labelled_old_era(), *new_era))
    # F1 on the era's own rows is best from 0.1 up (0.05 flags its sound code); the budget alone: 0.05
    assert base.tolist() == pytest.approx([0.6, 0.6]) and new.tolist() == pytest.approx([0.1, 0.1])


def test_era_codes_and_groups() -> None:
    assert [era_code(e) for e in ("0.4", "0.5", "0.8", "1.2", "unknown", "")] == [4, 5, 8, 102, -1, -1]
    groups = era_groups(torch.tensor([-1, 4, 5, 7, 8, 102]), torch.tensor([5, 8]))
    assert groups.tolist() == [0, 0, 1, 1, 2, 2]  # an unknown era keeps the main thresholds
    assert check_threshold_eras(["0.5", "0.8"]) == [5, 8] and check_threshold_eras(None) == []
    for bad in (["0.8", "0.5"], ["0.5", "0.5"], ["new"], "0.5"):
        with pytest.raises(ConfigError, match="model.threshold_eras"):
            check_threshold_eras(bad)


def test_retune_takes_eras_none_or_keeps_the_models_own(capsys) -> None:
    def eras(*extra: str):
        return getattr(parser().parse_args(["run", "--out", "x", *extra]), "threshold_eras", "own")

    assert eras() == "own" and eras("--threshold-eras", "0.5") == ["0.5"]
    assert eras("--threshold-eras", "none") is None and eras("--threshold-eras", "0.5,0.8") == ["0.5", "0.8"]
    for bad in ("0.8,0.5", "new"):
        with pytest.raises(SystemExit):
            eras("--threshold-eras", bad)
        assert "--threshold-eras" in capsys.readouterr().err


def metadata(solc: bytes | None) -> str:
    """A CBOR metadata tail as solc writes it: ipfs hash, and the release as three bytes (0.5.9 and newer)."""
    items = b"\x64ipfs\x58\x22" + bytes(34)
    if solc is not None:
        items += b"\x64solc\x43" + solc
    cbor = bytes([0xA1 + (solc is not None)]) + items
    return cbor.hex() + len(cbor).to_bytes(2, "big").hex()


def test_the_compiler_release_is_read_from_the_metadata_when_solc_wrote_it() -> None:
    code = bytes.fromhex("6080604052600080fd" + "fe" + metadata(bytes([0, 5, 17])))
    assert metadata_solc_version(code) == "0.5.17"
    assert metadata_solc_version(bytes.fromhex("6080604052" + metadata(None))) is None  # ipfs only
    assert metadata_solc_version(bytes.fromhex("6080604052600080fd")) is None
    assert metadata_solc_version(b"") is None


def test_a_package_keeps_the_era_thresholds(tmp_path: Path) -> None:
    from training_pipeline.deploy.package import load_component, write_component

    model = tiny_detector()
    model.init_era_thresholds(["0.5"])
    model.era_thresholds.copy_(torch.linspace(0.05, 0.45, len(model.class_names))[None])
    write_component(model, None, tmp_path / "detector")
    loaded, _ = load_component(tmp_path / "detector")
    assert torch.equal(loaded.era_thresholds, model.era_thresholds)
    assert torch.equal(loaded.era_bounds, torch.tensor([era_code("0.5")]))
    summary = json.loads((tmp_path / "detector" / "model.json").read_text())["summary"]
    assert summary["era_thresholds"][0] == pytest.approx(model.era_thresholds[0].tolist())


def test_the_scanner_applies_the_thresholds_of_each_inputs_era() -> None:
    from training_pipeline.data.featurizers import BytecodeFeaturizer
    from training_pipeline.scan.inference import predict_bytecode
    from training_pipeline.scan.inputs import ScanInput

    model = tiny_detector()
    model.init_era_thresholds(["0.5"])
    model.thresholds.fill_(1.0)  # the main thresholds flag nothing, the 0.5+ ones everything
    model.era_thresholds.fill_(0.0)
    body = "0x6080604052600080fd"
    items = [
        ScanInput("compiled.sol", bytecode=body, compiler="0.8.20"),
        ScanInput("old.sol", bytecode=body, compiler="v0.4.24+commit.e67f0147"),
        ScanInput("deployed-0.5.17.bin", bytecode=body + "fe" + metadata(bytes([0, 5, 17]))),
        ScanInput("no-metadata.bin", bytecode=body),
    ]
    flagged = [len(out["predicted"]) for out in predict_bytecode(model, BytecodeFeaturizer(), items, 2)]
    assert flagged == [len(model.class_names), 0, len(model.class_names), 0]


def write_records(path: Path) -> Path:
    """0.4 and 0.8 contracts, flawed, sound and audited (unlabeled), of varied lengths."""
    out = []
    for i in range(72):
        era = ("0.4.24", "0.8.20")[i % 2]
        kind = (i // 2) % 3
        out.append(
            {
                "id": f"c{i}",
                "bytecode": "0x" + ("6001600201" if kind else "33ff5b") * (5 + i) + "00",
                "compiler_version": era,
                "labels": ["reentrancy"] if kind == 0 else [],
            }
            | ({"unlabeled": True} if kind == 2 else {})
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    return path


def test_validation_tunes_era_thresholds_that_the_checkpoint_and_predictions_keep(tmp_path: Path) -> None:
    from training_pipeline.data.contracts import compiler_era
    from training_pipeline.models.bytecode_detector import BytecodeDetector
    from training_pipeline.models.checkpoint import load_checkpoint

    dm = file_bytecode_module(tmp_path, write_records(tmp_path / "c.jsonl"), batch_size=8, max_length=512)
    torch.manual_seed(0)
    model = BytecodeDetector(
        embed_dim=8, channels=8, depth=2, pooling="max", threshold_eras=["0.5"], max_audited_flag_rate=0.0,
        **dm.model_kwargs(),
    )  # fmt: skip
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.validate(model, datamodule=dm, verbose=False)
    val = model.gathered["val"]
    eras = [era_code(compiler_era(dm.records[i])) for i in val["index"].tolist()]
    assert val["era"].tolist() == eras and set(eras) == {OLD, NEW}  # the records' eras reached the batches
    budget = torch.zeros(len(model.class_names))
    base = tune_thresholds(val["probs"], val["targets"], mask=val["mask"], max_flag_rate=budget)
    assert torch.equal(model.thresholds, base)
    expected = tune_era_thresholds(
        val["probs"], val["targets"], val["era"], model.era_bounds, base, val["mask"], max_flag_rate=budget
    )
    assert torch.equal(model.era_thresholds, expected) and bool((expected <= base).all())
    new = val["era"] == NEW  # no audited 0.8 row of validation is flagged at the 0.8 thresholds
    audited = new & (val["mask"].sum(1) == 0)
    assert audited.any() and not bool((val["probs"][audited] >= model.era_thresholds[0]).any())

    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt, weights_only=True)
    loaded = load_checkpoint("training_pipeline.models.bytecode_detector.BytecodeDetector", ckpt)
    assert loaded.hparams.threshold_eras == ["0.5"]
    assert torch.equal(loaded.era_thresholds, model.era_thresholds)
    batch = next(iter(dm.val_dataloader()))
    out = loaded.predict_step(batch, 0)
    table = torch.stack([loaded.thresholds, loaded.era_thresholds[0]])
    expected_flags = out["probs"] >= table[(batch["era"] >= era_code("0.5")).long()]
    assert torch.equal(out["predicted"], expected_flags)
