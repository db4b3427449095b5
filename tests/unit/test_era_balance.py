"""``data.era_balance``: per-era reweighting of training entries so that a compiler era stops predicting a
class (real flaws are old code, audited negatives new code), with val/test untouched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import file_bytecode_module

from training_pipeline import taxonomy
from training_pipeline.data.bytecode import ContractBytecodeDataModule
from training_pipeline.data.contracts import EraBalanceConfig, compiler_era, era_balance_factors
from training_pipeline.errors import ConfigError

REENT = list(taxonomy.VULNERABILITY_CLASSES).index("reentrancy")


def positive_rate(labels: np.ndarray, weight: np.ndarray, rows: np.ndarray) -> float:
    return float((weight[rows] * labels[rows]).sum() / weight[rows].sum())


def test_each_era_takes_the_overall_positive_rate_and_keeps_its_weight() -> None:
    rng = np.random.default_rng(0)
    eras = np.array(["0.4"] * 60 + ["0.5"] * 30 + ["0.8"] * 50)
    p_by_era = {"0.4": 0.7, "0.5": 0.3, "0.8": 0.1}  # the entanglement: old code flawed, new code clean
    labels = np.stack([(rng.random(len(eras)) < [p_by_era[e] for e in eras]) for _ in range(2)], 1)
    labels = labels.astype(np.float32)
    weight = rng.uniform(0.5, 1.5, labels.shape).astype(np.float32)
    weight[::7, 1] = 0.0  # masked entries (unassessed) stay out of every rate
    cfg = EraBalanceConfig(enabled=True, pseudo_count=0, max_factor=100)
    balanced = weight * era_balance_factors(labels, weight, list(eras), cfg)
    assert (balanced[::7, 1] == 0).all()
    for c in range(2):
        overall = positive_rate(labels[:, c], weight[:, c], np.ones(len(eras), bool))
        rates = []
        for era in p_by_era:
            rows = eras == era
            before = positive_rate(labels[:, c], weight[:, c], rows)
            rates.append(before)
            assert positive_rate(labels[:, c], balanced[:, c], rows) == pytest.approx(overall, abs=1e-5)
            assert balanced[rows, c].sum() == pytest.approx(weight[rows, c].sum(), rel=1e-5)
        assert max(rates) - min(rates) > 0.3  # it had something to undo


def test_small_eras_are_smoothed_and_factors_clipped() -> None:
    labels = np.array([[1.0]] * 50 + [[0.0]] * 50 + [[1.0]] * 2, dtype=np.float32)
    weight = np.ones_like(labels)
    eras = ["0.4"] * 100 + ["0.6"] * 2  # two positives alone in their era
    raw = era_balance_factors(labels, weight, eras, EraBalanceConfig(pseudo_count=0, max_factor=100))
    smoothed = era_balance_factors(labels, weight, eras, EraBalanceConfig(pseudo_count=20, max_factor=100))
    clipped = era_balance_factors(labels, weight, eras, EraBalanceConfig(pseudo_count=0, max_factor=2))
    tight = era_balance_factors(labels, weight, eras, EraBalanceConfig(pseudo_count=0, max_factor=1.5))
    assert tight[-1, 0] == pytest.approx(1 / 1.5)
    overall = 52 / 102
    assert raw[-1, 0] == pytest.approx(overall)  # the era's rate 1.0 becomes the overall one
    assert overall < smoothed[-1, 0] < 1.0  # pulled towards 1 by the pseudo-entries at the overall rate
    assert clipped[-1, 0] == pytest.approx(overall)  # within [1/2, 2]
    assert raw[100:, 0].tolist() == raw[100:101, 0].tolist() * 2
    one_era = era_balance_factors(labels[:100], weight[:100], eras[:100], EraBalanceConfig(pseudo_count=0))
    assert (one_era == 1).all()  # one era: nothing to balance
    none_positive = era_balance_factors(np.zeros_like(labels), weight, eras, EraBalanceConfig(pseudo_count=0))
    assert (none_positive == 1).all()


def test_compiler_era_of_a_record() -> None:
    versions = ("0.4.26", "v0.5.17+commit.d19bba13", "0.3.6", "0.8.26")
    eras = [compiler_era({"compiler_version": v}) for v in versions]
    assert eras == ["0.4", "0.5", "0.4", "0.8"]  # pre-0.4 code compiles with a 0.4 release
    assert compiler_era({}) == compiler_era({"compiler_version": "latest"}) == "unknown"


def write_records(path: Path) -> Path:
    """Old code mostly reentrant, new code mostly clean: the entanglement the option removes."""
    rows = []
    for i in range(48):
        old = i % 2 == 0
        flawed = (i % 8 != 0) if old else (i % 8 == 1)
        rows.append(
            {
                "id": f"c{i}",
                "bytecode": "0x" + "6001600201" * (i + 1) + "00",
                "compiler_version": "0.4.26" if old else "0.8.26",
                "labels": ["reentrancy"] if flawed else [],
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def module(tmp_path: Path, **kw) -> ContractBytecodeDataModule:
    return file_bytecode_module(tmp_path, write_records(tmp_path / "c.jsonl"), **kw)


def weights_of(dm: ContractBytecodeDataModule, split: str) -> dict[str, tuple[float, float, float]]:
    """Per record id: its reentrancy label, mask and loss weight as the split's loader batches them."""
    out = {}
    for batch in getattr(dm, f"{split}_dataloader")():
        for row, i in enumerate(batch["index"].tolist()):
            out[dm.records[i]["id"]] = tuple(
                float(batch[k][row, REENT]) for k in ("labels", "label_mask", "loss_weight")
            )
    return out


def test_the_datamodule_balances_training_entries_only(tmp_path: Path) -> None:
    plain = module(tmp_path)
    balanced = module(tmp_path, era_balance={"enabled": True, "pseudo_count": 0})
    train = weights_of(balanced, "train")
    version = {r["id"]: r["compiler_version"] for r in balanced.records}

    def rate(era: str) -> float:
        rows = [v for k, v in train.items() if version[k] == era]
        return sum(y * w for y, _, w in rows) / sum(w for _, _, w in rows)

    assert rate("0.4.26") == pytest.approx(rate("0.8.26"), abs=1e-5)
    assert {w for _, _, w in weights_of(plain, "train").values()} == {1.0}
    assert len({round(w, 4) for _, _, w in train.values()}) == 4  # positive / negative x two eras
    for split in ("val", "test"):  # metrics and selection never see the weights
        assert weights_of(balanced, split) == weights_of(plain, split)


@pytest.mark.parametrize(
    "bad, match",
    [({"max_factor": 0.5}, "max_factor=0.5"), ({"pseudo_count": -1}, "pseudo_count=-1"), ({"on": 1}, "on")],
)
def test_bad_era_balance_config_is_one_clear_error(tmp_path: Path, bad: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        module(tmp_path, era_balance={"enabled": True, **bad})
