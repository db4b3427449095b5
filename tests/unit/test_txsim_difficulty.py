"""The simulator's difficulty knob: 0 is the original simulator; higher values blur what marks an anomaly."""

from __future__ import annotations

import numpy as np
import pytest
from test_txsim import records

from training_pipeline.corpus import txsim
from training_pipeline.corpus.build import CorpusConfig
from training_pipeline.corpus.txsim import SimConfig
from training_pipeline.data.transactions import TransactionDataModule
from training_pipeline.errors import ConfigError

# content_hash of simulate_histories(records(60), SimConfig()) computed before the knob existed
ORIGINAL_HASH = "ac298a2fb25463038539e8445d93c942869efbb9066f0ea43bd6f5b13b8bbbb1"
DRAINS = ("exploit_drain", "flash_loan_attack", "rug_pull")


@pytest.fixture(scope="module")
def by_difficulty() -> dict[float, list[dict]]:
    recs = records()
    return {d: txsim.simulate_histories(recs, SimConfig(difficulty=d)) for d in (0.0, 0.5, 1.0)}


def test_difficulty_zero_is_the_original_simulator() -> None:
    histories = txsim.simulate_histories(records(60), SimConfig(difficulty=0.0))
    assert txsim.content_hash(histories) == ORIGINAL_HASH


def test_difficulty_zero_keeps_the_cache_key_and_others_get_their_own() -> None:
    corpus = CorpusConfig(n_contracts=20)
    assert "difficulty" not in SimConfig().content_fields()
    assert txsim.histories_key(corpus, SimConfig(difficulty=0.0)) == txsim.histories_key(corpus, SimConfig())
    assert SimConfig(difficulty=0.5).content_fields()["difficulty"] == 0.5
    assert txsim.histories_key(corpus, SimConfig(difficulty=0.5)) != txsim.histories_key(corpus, SimConfig())


def test_a_difficulty_is_deterministic_in_any_order() -> None:
    recs, cfg = records(40), SimConfig(difficulty=0.7)
    assert txsim.simulate_histories(recs, cfg) == txsim.simulate_histories(recs[::-1], cfg)[::-1]


def _largest_outflow(h: dict) -> float:
    """The largest single outflow as a share of the highest balance the contract reached."""
    delta = np.array(h["balance_delta"])
    return float(max(-delta.min(), 0.0) / max(np.cumsum(delta).max(), 1e-9))


def _separation(histories: list[dict]) -> float:
    """AUROC of the largest outflow, drained histories against normal ones (0.5: no separation)."""
    drained = np.array([_largest_outflow(h) for h in histories if h["label"] in DRAINS])
    normal = np.array([_largest_outflow(h) for h in histories if h["label"] == "normal"])
    above = drained[:, None] > normal[None, :]
    ties = drained[:, None] == normal[None, :]
    return float(above.mean() + 0.5 * ties.mean())


def test_higher_difficulty_blurs_the_largest_outflow(by_difficulty) -> None:
    easy, medium, hard = (_separation(by_difficulty[d]) for d in (0.0, 0.5, 1.0))
    assert easy > medium > hard
    assert easy - hard > 0.15


def test_subtle_lookalikes_appear_only_above_zero(by_difficulty) -> None:
    def kinds(d: float) -> set[str]:
        return {h["scenario"].split("/")[1] for h in by_difficulty[d] if h["label"] == "normal"}

    assert not kinds(0.0) & set(txsim.TWINS)
    assert set(txsim.TWINS) <= kinds(1.0)
    lookalike_share = [
        np.mean([h["scenario"] != "normal/ordinary" for h in by_difficulty[d]]) for d in (0, 1)
    ]
    assert lookalike_share[1] > lookalike_share[0]


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_an_out_of_range_difficulty_is_a_one_line_config_error(tmp_path, value) -> None:
    with pytest.raises(ConfigError, match=r"data\.sim\.difficulty=") as err:
        TransactionDataModule(str(tmp_path), sim={"difficulty": value})
    assert "\n" not in str(err.value)


def test_the_behavior_config_defaults_to_a_harder_task(tmp_path) -> None:
    from conftest import compose_config
    from hydra.utils import instantiate

    cfg = compose_config("train.yaml", ["model=behavior_model"], tmp_path)
    assert instantiate(cfg.data, _convert_="all").sim_cfg.difficulty == 0.5
