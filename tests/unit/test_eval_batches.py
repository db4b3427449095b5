"""Evaluation batches of the bytecode detector sorted by length (``SortedBatchSampler``): every contract once,
far less padding than batches in dataset order, and the same probability for every contract."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from conftest import file_bytecode_module

from training_pipeline.data.contracts import SortedBatchSampler


def write_records(path: Path, n: int = 60) -> Path:
    lengths = list(range(1, n + 1))
    random.Random(0).shuffle(lengths)  # dataset order is not length order
    rows = [
        {
            "id": f"c{i}",
            "bytecode": "0x" + "6001600201" * k + "00",
            "labels": ["reentrancy"] * (i % 2),
        }
        for i, k in enumerate(lengths)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def padded_cells(loader) -> tuple[int, list[int]]:
    """(batch rows x padded width, summed over batches; the record indices in loader order)."""
    cells, seen = 0, []
    for batch in loader:
        cells += batch["input_ids"].numel()
        seen += batch["index"].tolist()
    return cells, seen


def test_sorted_batches_hold_every_row_once_shortest_first() -> None:
    lengths = [7, 3, 9, 3, 1, 12, 5]
    batches = list(SortedBatchSampler(lengths, batch_size=3))
    assert len(batches) == len(SortedBatchSampler(lengths, batch_size=3)) == 3
    assert all(len(b) <= 3 for b in batches)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths)
    assert list(SortedBatchSampler(lengths, batch_size=3)) == batches  # the same order every time
    assert list(SortedBatchSampler([], batch_size=3)) == []


def test_evaluation_loaders_sort_by_length_and_training_ones_do_not(tmp_path: Path) -> None:
    records = write_records(tmp_path / "c.jsonl")
    dm = file_bytecode_module(tmp_path, records, batch_size=4, max_length=512)
    for loader in (dm.val_dataloader(), dm.test_dataloader()):
        assert isinstance(loader.batch_sampler, SortedBatchSampler)
        data = loader.dataset
        cells, seen = padded_cells(loader)
        assert sorted(seen) == sorted(int(data[k]["index"]) for k in range(len(data)))  # every row once
        unsorted = torch.utils.data.DataLoader(data, batch_size=4, collate_fn=loader.collate_fn)
        plain_cells, _ = padded_cells(unsorted)
        assert cells < 0.8 * plain_cells
    assert not isinstance(dm.train_dataloader().batch_sampler, SortedBatchSampler)
    plain = file_bytecode_module(tmp_path / "b", records, batch_size=4, max_length=512, length_buckets=False)
    assert not isinstance(plain.val_dataloader().batch_sampler, SortedBatchSampler)


def test_a_contract_scores_the_same_in_sorted_batches(tmp_path: Path) -> None:
    from training_pipeline.models.bytecode_detector import BytecodeDetector

    records = write_records(tmp_path / "c.jsonl")
    dm = file_bytecode_module(tmp_path, records, batch_size=4, max_length=512)
    torch.manual_seed(0)
    model = BytecodeDetector(embed_dim=8, channels=8, depth=2, pooling="max", **dm.model_kwargs()).eval()
    loader = dm.val_dataloader()
    plain = torch.utils.data.DataLoader(loader.dataset, batch_size=4, collate_fn=loader.collate_fn)

    def probs(batches) -> dict[int, torch.Tensor]:
        out = {}
        with torch.no_grad():
            for batch in batches:
                p = model.predict_step(batch, 0)["probs"]
                out |= {int(i): row for i, row in zip(batch["index"], p, strict=True)}
        return out

    sorted_probs, plain_probs = probs(loader), probs(plain)
    assert sorted_probs.keys() == plain_probs.keys()
    for i, p in plain_probs.items():
        assert torch.allclose(sorted_probs[i], p, atol=1e-5), i


def test_a_folder_scan_scores_each_contract_as_alone_in_input_order() -> None:
    from conftest import tiny_detector

    from training_pipeline.data.featurizers import BytecodeFeaturizer
    from training_pipeline.scan.inference import predict_bytecode
    from training_pipeline.scan.inputs import ScanInput

    model, featurizer = tiny_detector(), BytecodeFeaturizer(max_length=4096)
    lengths = [40, 3, 900, 12, 300, 7, 2000]  # scanned in this order, batched shortest first
    items = [ScanInput(f"c{i}.bin", bytecode="0x" + "600160025b" * k + "00") for i, k in enumerate(lengths)]
    together = predict_bytecode(model, featurizer, items, batch_size=3)
    for item, out in zip(items, together, strict=True):
        (alone,) = predict_bytecode(model, featurizer, [item], batch_size=3)
        assert out["probs"] == pytest.approx(alone["probs"], abs=1e-5)
        assert out["predicted"] == alone["predicted"]
    assert len({round(out["probs"]["reentrancy"], 6) for out in together}) > 1  # the contracts differ
