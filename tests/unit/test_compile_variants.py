"""Compile variants in the bytecode datamodule: train-only extra rows (``data.train_variants``) and the
evaluation view (``data.variant``), on hand-made records with a ``bytecode_variants`` map."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import compose_config
from hydra.core.global_hydra import GlobalHydra
from lightning.pytorch import Trainer

from training_pipeline.data.bytecode import ContractBytecodeDataModule
from training_pipeline.data.contracts import LoadedSource
from training_pipeline.errors import ConfigError, DataError
from training_pipeline.models.bytecode_detector import BytecodeDetector
from training_pipeline.models.losses import bernoulli_symmetric_kl

SPLIT_OF = ["train", "train", "train", "train", "val", "test"]


def _code(n: int, opcode: str) -> str:
    """A distinct small runtime bytecode: PUSH1 n, then ``opcode`` a few times, then STOP."""
    return "0x60" + f"{n:02x}" + opcode * (n + 1) + "00"


def make_records(with_variants: bool = True) -> list[dict]:
    records = []
    for i, split in enumerate(SPLIT_OF):
        o0, o1 = _code(i, "01"), _code(i, "02")  # ADD-only vs MUL-only stand in for optimizer off/on
        r = {
            "id": f"c{i}",
            "source_code": None,
            "bytecode": o0,
            "labels": ["reentrancy"] if i % 2 else [],
            "vulnerable_lines": None,
            "compiler_version": "0.8.26",
            "family": "vault",
            "split": split,
        }
        if with_variants:
            r["bytecode_variants"] = {"o0": o0, "o1-r200": o1}
        records.append(r)
    return records


def datamodule(records: list[dict], tmp_path: Path, **kwargs) -> ContractBytecodeDataModule:
    """A bytecode datamodule over ``records`` as if they came from the `file` source (no file read)."""
    dm = ContractBytecodeDataModule(data_dir=str(tmp_path), sources=["file"], path="unused.jsonl", **kwargs)
    dm._loaded["file"] = LoadedSource(records, "sha256:test")
    dm.setup()
    return dm


def ids_of(dm: ContractBytecodeDataModule, split: str) -> list[str]:
    return [dm.records[i]["id"] for i in dm.splits[split].index]


def test_defaults_change_nothing(tmp_path: Path) -> None:
    plain = datamodule(make_records(with_variants=False), tmp_path)
    dm = datamodule(make_records(), tmp_path)
    assert len(dm.records) == len(plain.records) == len(SPLIT_OF)
    for split in ("train", "val", "test", "all"):
        assert ids_of(dm, split) == ids_of(plain, split)
        for a, b in zip(
            dm.splits[split].columns["input_ids"], plain.splits[split].columns["input_ids"], strict=True
        ):
            np.testing.assert_array_equal(a, b)


def test_train_variants_add_train_rows_in_the_same_group(tmp_path: Path) -> None:
    base = datamodule(make_records(), tmp_path)
    dm = datamodule(make_records(), tmp_path, train_variants=True)
    train_ids = ids_of(dm, "train")
    # o0 equals `bytecode`, so only o1-r200 adds a row per training record
    assert sorted(train_ids) == sorted([*ids_of(base, "train"), *(f"c{i}~o1-r200" for i in range(4))])
    for split in ("val", "test", "all"):
        assert ids_of(dm, split) == ids_of(base, split)
        assert not any("~" in rid for rid in ids_of(dm, split))
    by_id = {r["id"]: r for r in dm.records}
    for i in range(4):
        extra, orig = by_id[f"c{i}~o1-r200"], by_id[f"c{i}"]
        assert extra["group"] == orig["group"]
        assert extra["bytecode"] == orig["bytecode_variants"]["o1-r200"]
        assert extra["labels"] == orig["labels"]
    pos = {rid: k for k, rid in enumerate(train_ids)}
    column = dm.splits["train"].columns["input_ids"]
    np.testing.assert_array_equal(column[pos["c0~o1-r200"]], dm.featurizer.encode(_code(0, "02")))
    np.testing.assert_array_equal(column[pos["c0"]], dm.featurizer.encode(_code(0, "01")))


def test_sampled_train_variants_keep_one_row_and_draw_every_variant(tmp_path: Path) -> None:
    base = datamodule(make_records(), tmp_path)
    dm = datamodule(make_records(), tmp_path, train_variants="sample")
    assert ids_of(dm, "train") == ids_of(base, "train")  # one row per training contract
    for split in ("val", "test"):
        np.testing.assert_array_equal(
            dm.splits[split].columns["input_ids"][0], base.splits[split].columns["input_ids"][0]
        )
    train = dm.splits["train"]
    k = ids_of(dm, "train").index("c0")
    drawn = {tuple(train[k]["input_ids"].tolist()) for _ in range(40)}
    expected = {tuple(dm.featurizer.encode(_code(0, op)).tolist()) for op in ("01", "02")}
    assert drawn == expected  # both compile settings, nothing else
    assert train.lengths()[k] == len(dm.featurizer.encode(_code(0, "01")))
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[0] == min(len(train), dm.batch_size)


def test_paired_train_variants_give_two_different_settings_of_one_contract(tmp_path: Path) -> None:
    records = make_records()
    del records[1]["bytecode_variants"]  # a training contract compiled one way only: paired with itself
    dm = datamodule(records, tmp_path, train_variants="pair")
    base = datamodule(records, tmp_path)
    assert ids_of(dm, "train") == ids_of(base, "train")  # still one row per training contract
    train = dm.splits["train"]
    k0, k1 = ids_of(dm, "train").index("c0"), ids_of(dm, "train").index("c1")
    off, on = (tuple(dm.featurizer.encode(_code(0, op)).tolist()) for op in ("01", "02"))
    items = [train[k0] for _ in range(40)]
    pairs = {(tuple(x["input_ids"].tolist()), tuple(x["pair_ids"].tolist())) for x in items}
    assert pairs == {(off, on), (on, off)}  # never one setting twice, both orders
    single = train[k1]
    np.testing.assert_array_equal(single["input_ids"], single["pair_ids"])
    batch = next(iter(dm.train_dataloader()))
    assert batch["pair_input_ids"].shape[0] == batch["input_ids"].shape[0]
    assert "pair_input_ids" not in next(iter(dm.val_dataloader()))  # evaluation sees one bytecode each


def test_variant_sets_the_evaluation_view(tmp_path: Path) -> None:
    dm = datamodule(make_records(), tmp_path, variant="o1-r200")
    (test_i,) = dm.splits["test"].index
    assert dm.records[test_i]["id"] == "c5"
    np.testing.assert_array_equal(
        dm.splits["test"].columns["input_ids"][0], dm.featurizer.encode(_code(5, "02"))
    )
    np.testing.assert_array_equal(
        dm.splits["val"].columns["input_ids"][0], dm.featurizer.encode(_code(4, "02"))
    )
    # training rows keep `bytecode`
    for rid, ids in zip(ids_of(dm, "train"), dm.splits["train"].columns["input_ids"], strict=True):
        np.testing.assert_array_equal(ids, dm.featurizer.encode(_code(int(rid[1:]), "01")))
    batch = next(iter(dm.test_dataloader()))
    assert batch["input_ids"].shape[0] == 1


def test_records_lacking_the_variant_keep_bytecode(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    records = make_records()
    del records[5]["bytecode_variants"]  # the test record has no optimized build
    with caplog.at_level("INFO"):
        dm = datamodule(records, tmp_path, variant="o1-r200")
    np.testing.assert_array_equal(
        dm.splits["test"].columns["input_ids"][0], dm.featurizer.encode(_code(5, "01"))
    )
    np.testing.assert_array_equal(
        dm.splits["val"].columns["input_ids"][0], dm.featurizer.encode(_code(4, "02"))
    )
    assert "1 of 6 records lack it" in caplog.text


def test_unknown_variant_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        datamodule(make_records(), tmp_path, variant="o1-r999")
    msg = str(err.value)
    assert "\n" not in msg
    assert "data.variant='o1-r999'" in msg and "o0, o1-r200" in msg
    with pytest.raises(DataError, match="none"):
        datamodule(make_records(with_variants=False), tmp_path, variant="o1-r200")


def test_bad_config_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.variant"):
        ContractBytecodeDataModule(data_dir=str(tmp_path), sources=["file"], path="x.jsonl", variant=3)
    with pytest.raises(ConfigError, match="data.train_variants"):
        ContractBytecodeDataModule(
            data_dir=str(tmp_path), sources=["file"], path="x.jsonl", train_variants="yes"
        )
    with pytest.raises(ConfigError, match="sample or pair"):
        ContractBytecodeDataModule(
            data_dir=str(tmp_path), sources=["file"], path="x.jsonl", train_variants="pairs"
        )


def test_config_defaults(tmp_path: Path) -> None:
    try:
        cfg = compose_config("train.yaml", [f"paths.data_dir={tmp_path}"], tmp_path / "run")
    finally:
        GlobalHydra.instance().clear()
    assert cfg.data.variant is None
    assert cfg.data.train_variants is False


def test_unlabeled_records_alone_need_a_label_free_stage(tmp_path: Path) -> None:
    unlabeled = [{**r, "labels": [], "unlabeled": True} for r in make_records()]
    with pytest.raises(DataError, match="no assessed label"):
        datamodule(unlabeled, tmp_path)  # a classifier has nothing to learn or test on

    class LabelFree(ContractBytecodeDataModule):
        needs_labels = False  # as the pretraining datamodules declare

    dm = LabelFree(data_dir=str(tmp_path), sources=["file"], path="unused.jsonl")
    dm._loaded["file"] = LoadedSource(unlabeled, "sha256:test")
    dm.setup()
    assert len(dm.splits["train"]) == 4


def test_val_variants_put_every_compile_setting_in_validation(tmp_path: Path) -> None:
    base = datamodule(make_records(), tmp_path)
    dm = datamodule(make_records(), tmp_path, val_variants=True)
    val = dm.splits["val"]
    assert len(base.splits["val"]) == 1 and len(val) == 2  # c4 under o0 and under o1-r200
    assert [dm.records[i]["id"] for i in val.index] == ["c4", "c4"]
    got = {tuple(x.tolist()) for x in val.columns["input_ids"]}
    assert got == {tuple(dm.featurizer.encode(_code(4, op)).tolist()) for op in ("01", "02")}
    np.testing.assert_array_equal(val.columns["labels"][0], val.columns["labels"][1])
    np.testing.assert_array_equal(val.columns["labels"][0], base.splits["val"].columns["labels"][0])
    for split in ("train", "test"):
        assert ids_of(dm, split) == ids_of(base, split)
    plain = datamodule(make_records(with_variants=False), tmp_path, val_variants=True)
    assert len(plain.splits["val"]) == 1  # nothing to add without variants
    with pytest.raises(ConfigError, match="data.val_variants"):
        datamodule(make_records(), tmp_path, val_variants="yes")


# -- the consistency loss between compile settings (model.variant_consistency) -------------------------------
def test_bernoulli_symmetric_kl_is_both_kls_and_zero_on_agreement() -> None:
    a, b = torch.tensor([[2.0, -1.0, 0.3]]), torch.tensor([[-0.5, -1.0, 1.7]])
    p, q = torch.sigmoid(a), torch.sigmoid(b)

    def kl(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x * torch.log(x / y) + (1 - x) * torch.log((1 - x) / (1 - y))

    assert torch.isclose(bernoulli_symmetric_kl(a, b), (kl(p, q) + kl(q, p)).mean(), atol=1e-6)
    assert float(bernoulli_symmetric_kl(a, a)) == 0.0


def paired_detector(dm: ContractBytecodeDataModule, weight: float) -> BytecodeDetector:
    torch.manual_seed(0)
    return BytecodeDetector(
        embed_dim=8,
        channels=8,
        depth=1,
        dropout=0.0,
        variant_consistency=weight,
        optimizer=partial(torch.optim.AdamW, lr=0.01),
        **dm.model_kwargs(),
    )


def quiet_trainer(tmp_path: Path, **kwargs: Any) -> Trainer:
    """A Lightning Trainer that writes nothing but under ``tmp_path`` and prints no bars or summaries."""
    return Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


def test_paired_loss_is_the_mean_over_both_settings_plus_the_penalty(tmp_path: Path) -> None:
    dm = datamodule(make_records(), tmp_path, train_variants="pair")
    batch = next(iter(dm.train_dataloader()))
    plain = paired_detector(dm, 0.0)
    first = plain.training_loss({k: v for k, v in batch.items() if k != "pair_input_ids"})
    swapped = {k: v for k, v in batch.items() if k != "pair_input_ids"} | {
        "input_ids": batch["pair_input_ids"]
    }
    second = plain.training_loss(swapped)
    mean = plain.training_loss(batch)
    assert torch.isclose(mean, (first + second) / 2, atol=1e-6)  # weight 0: both settings, no penalty
    penalized = paired_detector(dm, 2.0)
    gap = bernoulli_symmetric_kl(penalized(batch["input_ids"])[0], penalized(batch["pair_input_ids"])[0])
    assert float(gap.detach()) > 0  # the two settings' bytecodes differ, so does an untrained model's output
    assert torch.isclose(penalized.training_loss(batch), mean + 2.0 * gap, atol=1e-6)


def test_the_penalty_pulls_both_settings_predictions_together(tmp_path: Path) -> None:
    dm = datamodule(make_records(), tmp_path, train_variants="pair")
    batch = next(iter(dm.train_dataloader()))
    model = paired_detector(dm, 50.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)

    def gap() -> float:
        with torch.no_grad():
            return float(
                bernoulli_symmetric_kl(model(batch["input_ids"])[0], model(batch["pair_input_ids"])[0])
            )

    before = gap()
    for _ in range(20):
        opt.zero_grad()
        model.training_loss(batch).backward()
        opt.step()
    assert gap() < 0.5 * before


def test_variant_consistency_config_errors(tmp_path: Path) -> None:
    dm = datamodule(make_records(), tmp_path, train_variants="sample")
    with pytest.raises(ConfigError, match="model.variant_consistency"):
        paired_detector(dm, -1.0)
    with pytest.raises(ConfigError, match="data.train_variants=pair"):
        paired_detector(dm, 1.0).training_loss(next(iter(dm.train_dataloader())))
    model = paired_detector(dm, 1.0)
    calls = []
    model.training_step = lambda *a: calls.append(a)  # must never be reached
    trainer = quiet_trainer(tmp_path, max_steps=1)
    with pytest.raises(ConfigError, match="data.train_variants=pair"):
        trainer.fit(model, datamodule=dm)  # refused at fit start, before the sanity check and any step
    assert calls == []


def test_a_trainer_fits_on_pairs_and_logs_the_disagreement(tmp_path: Path) -> None:
    dm = datamodule(make_records(), tmp_path, train_variants="pair")
    model = paired_detector(dm, 1.0)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = quiet_trainer(tmp_path, max_steps=2, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    assert "train/variant_kl" in trainer.callback_metrics
    assert float(trainer.callback_metrics["train/variant_kl"]) >= 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
