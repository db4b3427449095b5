"""Contrastive bytecode pretraining: NT-Xent, compile-variant pairs from the train split only, a 1-batch run,
and the detector starting from the pretrained encoder (``model.encoder_ckpt``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer

from training_pipeline import taxonomy
from training_pipeline.data.bytecode_pairs import ContractBytecodePairsDataModule
from training_pipeline.data.contracts import LoadedSource
from training_pipeline.errors import ConfigError, DataError
from training_pipeline.models.bytecode_detector import BytecodeDetector
from training_pipeline.models.bytecode_pretrain import BytecodePretrain, nt_xent, pair_accuracy

SIZES = {"embed_dim": 8, "channels": 8, "depth": 1, "downsample": 2}
SPLIT_OF = ["train"] * 7 + ["val"] * 2 + ["test"] * 2
OPCODES = {"o0": "01", "o1-r200": "02", "o1-r1000": "03"}  # ADD / MUL / SUB runs stand in for the builds


def make_records() -> list[dict]:
    """Records with distinct bytecode per variant; the last training record has one variant only."""
    records = []
    for i, split in enumerate(SPLIT_OF):
        variants = {k: "0x60" + f"{i:02x}" + op * (i + 2) + "00" for k, op in OPCODES.items()}
        if i == 6:
            variants = {"o0": variants["o0"]}
        records.append(
            {
                "id": f"c{i}",
                "source_code": None,
                "bytecode": variants["o0"],
                "bytecode_variants": variants,
                "labels": ["reentrancy"] if i % 2 else [],
                "vulnerable_lines": None,
                "compiler_version": "0.8.26",
                "family": "vault",
                "split": split,
            }
        )
    return records


def pairs_datamodule(records: list[dict], tmp_path: Path, **kwargs) -> ContractBytecodePairsDataModule:
    """The pair datamodule over ``records`` as if they came from the `file` source (no file read)."""
    dm = ContractBytecodePairsDataModule(
        data_dir=str(tmp_path), sources=["file"], path="unused.jsonl", batch_size=4, **kwargs
    )
    dm._loaded["file"] = LoadedSource(records, "sha256:test")
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def pretrain_ckpt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ContractBytecodePairsDataModule]:
    """A BytecodePretrain checkpoint after a 1-batch fast_dev_run, and its datamodule."""
    tmp = tmp_path_factory.mktemp("pretrain")
    dm = pairs_datamodule(make_records(), tmp)
    model = BytecodePretrain(
        **dm.model_kwargs(), **SIZES, optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3)
    )
    trainer = Trainer(
        fast_dev_run=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp,
    )
    trainer.fit(model, datamodule=dm)
    assert np.isfinite(float(trainer.callback_metrics["train/loss"]))
    assert 0.0 <= float(trainer.callback_metrics["val/pair_acc"]) <= 1.0
    assert "val/contrastive_loss" in trainer.callback_metrics
    trainer.save_checkpoint(tmp / "pretrain.ckpt")
    return tmp / "pretrain.ckpt", dm


def test_nt_xent_is_lowest_for_matching_pairs() -> None:
    z = torch.randn(16, 32, generator=torch.Generator().manual_seed(0))
    matched = nt_xent(z, z + 0.01 * torch.randn_like(z), temperature=0.1)
    shuffled = nt_xent(z, z[torch.roll(torch.arange(16), 1)], temperature=0.1)
    assert matched < shuffled
    assert matched < 0.1  # near its minimum: each embedding's partner is by far its most similar
    assert pair_accuracy(z, z) == 1.0 and pair_accuracy(z, z[torch.roll(torch.arange(16), 1)]) == 0.0


def test_pairs_are_two_variants_of_one_training_record(tmp_path: Path) -> None:
    dm = pairs_datamodule(make_records(), tmp_path)
    train = dm.splits["train"]
    assert sorted(dm.split_of[i] for i in train.index) == ["train"] * 6  # c6 (one variant) left out
    encoded = {
        (i, k): dm.featurizer.encode(code)
        for i, r in enumerate(dm.records)
        for k, code in r["bytecode_variants"].items()
    }
    seen = set()
    for _ in range(5):  # a new draw per access
        for item in train:
            keys = [
                k
                for side in ("ids_a", "ids_b")
                for (i, k), ids in encoded.items()
                if i == item["index"] and np.array_equal(ids, item[side])
            ]
            assert len(keys) == 2 and keys[0] != keys[1]
            seen.add(tuple(keys))
    assert len(seen) > 2
    test_ids = {i for i, s in enumerate(dm.split_of) if s == "test"}
    assert test_ids and not test_ids & set(train.index)
    val = dm.splits["val"][0]  # the fixed pair: o0 then o1-r200
    assert np.array_equal(val["ids_a"], encoded[(val["index"], "o0")])
    assert np.array_equal(val["ids_b"], encoded[(val["index"], "o1-r200")])


def test_no_record_with_two_variants_is_an_error(tmp_path: Path) -> None:
    records = make_records()
    for r in records:
        r["bytecode_variants"] = {"o0": r["bytecode"]}
    with pytest.raises(DataError, match="two compile variants"):
        pairs_datamodule(records, tmp_path)
    with pytest.raises(ConfigError, match="train_variants"):
        ContractBytecodePairsDataModule(data_dir=str(tmp_path), path="x.jsonl", train_variants=True)


def detector(dm: ContractBytecodePairsDataModule, **kwargs) -> BytecodeDetector:
    return BytecodeDetector(
        **dm.model_kwargs(),
        class_names=list(taxonomy.VULNERABILITY_CLASSES),
        family_names=list(taxonomy.FAMILIES),
        **{**SIZES, **kwargs},
    )


def test_detector_starts_from_the_pretrained_encoder(pretrain_ckpt, tmp_path: Path) -> None:
    path, dm = pretrain_ckpt
    pretrained = BytecodePretrain.load_from_checkpoint(path, weights_only=False)
    model = detector(dm, encoder_ckpt=str(path))
    for name, value in pretrained.net.state_dict().items():
        assert torch.equal(model.net.state_dict()[name], value), name
    assert model.hparams.encoder_ckpt is None  # a reload of the detector does not read the file again
    assert not torch.equal(detector(dm).net.embed.weight, pretrained.net.embed.weight)

    with pytest.raises(ConfigError, match=r"channels=16 \(checkpoint: 8\)"):
        detector(dm, encoder_ckpt=str(path), channels=16)
    # the pooling sizes the encoder's norm; a checkpoint from before the key was pooled max and mean
    with pytest.raises(ConfigError, match=r"pooling=max \(checkpoint: max_mean\)"):
        detector(dm, encoder_ckpt=str(path), pooling="max")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="bad.ckpt: cannot load checkpoint"):
        detector(dm, encoder_ckpt=str(bad))
    with pytest.raises(ConfigError, match="missing.ckpt: no such bytecode encoder checkpoint"):
        detector(dm, encoder_ckpt=str(tmp_path / "missing.ckpt"))
