"""Transaction features, the train-only normalizer, truncation, and masking of padded steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training_pipeline.data import featurizers as tx
from training_pipeline.data.featurizers import FeatureNormalizer, featurize
from training_pipeline.data.transactions import TransactionDataModule, collate
from training_pipeline.errors import ConfigError
from training_pipeline.models.behavior_model import BehaviorModel

TINY = {"n_contracts": 60}  # the integration tests' size: one build per session


def history(n: int = 6) -> dict:
    return {
        "timestamp": [100, 160, 160, 400, 1000, 1000][:n],
        "block": [10, 15, 15, 35, 85, 85][:n],
        "sender": ["d", "a", "b", "a", "x", "x"][:n],
        "sender_role": [
            "deployer",
            "new_account",
            "new_account",
            "returning_account",
            "contract",
            "contract",
        ][:n],
        "method": ["deploy", "deposit", "deposit", "withdraw", "withdraw", "no_such_method"][:n],
        "value": [0.0, 2.0, 2.0, 0.0, 0.0, 0.0][:n],
        "gas_used": [900_000, 50_000, 50_000, 40_000, 300_000, 20_000][:n],
        "success": [1, 1, 1, 1, 1, 0][:n],
        "internal_calls": [0, 0, 0, 1, 20, 0][:n],
        "balance_delta": [0.0, 2.0, 2.0, -1.0, -3.0, 0.0][:n],
        "token_amount": [0.0] * n,
        "anomaly": [0, 0, 0, 0, 1, 0][:n],
    }


def test_features_describe_time_money_and_senders() -> None:
    numeric, methods, roles = featurize(history())
    col = {name: numeric[:, i] for i, name in enumerate(tx.NUMERIC_FEATURES)}
    assert numeric.shape == (6, len(tx.NUMERIC_FEATURES)) and numeric.dtype == np.float32
    assert col["log_time_delta"][0] == 0 and col["log_time_delta"][2] == 0  # same block, same second
    assert col["log_balance"][3] == pytest.approx(np.log1p(3.0 / tx.MILLI_ETHER), rel=1e-5)
    assert col["balance_fraction"][1] == pytest.approx(1.0) and col["balance_fraction"][4] == pytest.approx(
        -1.0
    )
    assert col["log_sender_seen"].tolist() == pytest.approx(np.log1p([0, 0, 0, 1, 0, 1]).tolist())
    assert methods[-1] == tx.METHOD_INDEX["other"] and roles[-1] == tx.ROLE_INDEX["contract"]
    assert methods.min() >= 1 and roles.min() >= 1  # 0 is padding


def test_truncation_strategies() -> None:
    assert tx.keep_positions(5, 8, "tail").tolist() == [0, 1, 2, 3, 4]
    assert tx.keep_positions(20, 8, "tail").tolist() == list(range(12, 20))
    assert tx.keep_positions(20, 8, "head").tolist() == list(range(8))
    assert tx.keep_positions(20, 8, "head_tail").tolist() == [0, 1, *range(14, 20)]


@pytest.fixture(scope="module")
def datamodule(data_dir) -> TransactionDataModule:
    dm = TransactionDataModule(str(data_dir), corpus=TINY, max_length=64, batch_size=4)
    dm.prepare_data()
    dm.setup()
    return dm


def _raw_numeric(dm: TransactionDataModule, split: str) -> np.ndarray:
    rows = []
    for i in dm.splits[split].index:
        numeric = featurize(dm.records[i])[0]
        rows.append(numeric[dm.positions[i]])
    return np.concatenate(rows).astype(np.float64)


def test_normalizer_is_fitted_on_train_only(datamodule, tmp_path) -> None:
    train = _raw_numeric(datamodule, "train")
    every = _raw_numeric(datamodule, "all")
    state = datamodule.normalizer.state_dict()
    assert np.allclose(state["mean"], train.mean(0), atol=1e-4)
    assert not np.allclose(state["mean"], every.mean(0), atol=1e-4)
    # The same data with val and test histories scaled up: identical statistics.
    changed = TransactionDataModule(str(tmp_path), corpus=TINY, max_length=64)
    changed._histories_path = datamodule._histories_path
    original_load = changed._load

    def load_with_altered_eval_splits():
        records = original_load()
        for i in [*datamodule.splits["val"].index, *datamodule.splits["test"].index]:
            records[i]["value"] = [v * 1000 + 5 for v in records[i]["value"]]
        return records

    changed._load = load_with_altered_eval_splits
    changed.setup()
    assert changed.normalizer.state_dict() == state
    train_x = np.concatenate([x["numeric"] for x in datamodule.splits["train"].items])
    assert np.allclose(train_x.mean(0), 0, atol=1e-3)


def test_a_saved_normalizer_is_reused_not_refitted(datamodule, tmp_path) -> None:
    state = datamodule.model_kwargs()["normalizer_state"]
    skewed = {**state, "mean": [m + 1.0 for m in state["mean"]]}
    other = TransactionDataModule(str(tmp_path), corpus=TINY, max_length=64)
    other._histories_path = datamodule._histories_path
    other.use_normalizer_state(skewed)
    other.setup()
    assert other.normalizer.state_dict()["mean"] == pytest.approx(skewed["mean"])
    with pytest.raises(Exception, match="features"):
        FeatureNormalizer.from_state_dict({**state, "names": ["something_else"]})


def test_model_kwargs_carry_weights_and_label_maps(datamodule) -> None:
    kw = datamodule.model_kwargs()
    assert kw["class_names"][0] == "normal" and len(kw["class_weights"]) == len(kw["class_names"])
    assert kw["tx_pos_weight"] > 1  # few transactions are anomalous
    assert len(kw["feature_names"]) == len(kw["normalizer_state"]["mean"])
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["numeric"].shape[:2] == batch["mask"].shape
    assert (batch["tx_labels"][~batch["mask"]] == -1).all()


def test_misspelled_keys_and_bad_values_are_config_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="attack_rat"):
        TransactionDataModule(str(tmp_path), sim={"attack_rat": 0.1})
    with pytest.raises(ConfigError, match="truncation"):
        TransactionDataModule(str(tmp_path), truncation="middle")
    with pytest.raises(ConfigError, match="labels_path"):
        TransactionDataModule(str(tmp_path), path="txs.csv")


@pytest.mark.parametrize("encoder", ["gru", "lstm", "transformer"])
def test_padding_changes_no_prediction(encoder) -> None:
    torch.manual_seed(0)
    n_feat = len(tx.NUMERIC_FEATURES)
    model = BehaviorModel(
        ["normal", "exploit_drain"], list(tx.NUMERIC_FEATURES), 20, 5, encoder=encoder, d_model=16, hidden=8
    ).eval()

    def item(length: int, seed: int) -> dict:
        g = np.random.default_rng(seed)
        return {
            "numeric": g.normal(size=(length, n_feat)).astype(np.float32),
            "method": g.integers(1, 20, length),
            "role": g.integers(1, 5, length),
            "tx_labels": np.zeros(length, np.float32),
            "label": 0,
            "index": seed,
        }

    short, long = item(7, 1), item(30, 2)
    with torch.no_grad():
        alone = model(collate([short]))
        batch = collate([short, long])
        batch["numeric"][0, 7:] = 1e3  # garbage in the padded steps must not leak either
        batch["method"][0, 7:] = 3
        padded = model(batch)
    assert torch.allclose(alone[0][0], padded[0][0], atol=1e-5)
    assert torch.allclose(alone[1][0], padded[1][0, :7], atol=1e-5)


def test_the_corpus_block_is_the_contract_models_so_ids_and_folds_match(tmp_path) -> None:
    from conftest import compose_config
    from omegaconf import OmegaConf

    behavior = compose_config("train.yaml", ["model=behavior_model"], tmp_path).data.corpus
    contracts = compose_config("train.yaml", ["model=bytecode_detector"], tmp_path).data.corpus
    assert OmegaConf.to_container(behavior, resolve=True) == OmegaConf.to_container(contracts, resolve=True)
