"""The transaction simulator: deterministic, consistent labels, every scenario reachable, stored."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from training_pipeline import taxonomy
from training_pipeline.corpus import txsim
from training_pipeline.corpus.txsim import SimConfig, simulate_history
from training_pipeline.errors import ConfigError

FAMILIES = (
    "vault",
    "erc20_token",
    "lottery",
    "auction",
    "multisig_wallet",
    "investment_scheme",
    "new_family",
)


def records(n: int = 300, seed: int = 0) -> list[dict]:
    """Corpus-like records without running the generator: a family and 0-2 flaws each."""
    r = random.Random(seed)
    out = []
    for i in range(n):
        flaws = [] if r.random() < 0.4 else r.sample(taxonomy.VULNERABILITY_CLASSES[:8], r.choice((1, 1, 2)))
        out.append(
            {
                "id": f"gen-0-{i}",
                "group": f"g{i // 2}",
                "family": FAMILIES[i % len(FAMILIES)],
                "labels": flaws,
            }
        )
    return out


@pytest.fixture(scope="module")
def histories() -> list[dict]:
    return txsim.simulate_histories(records(), SimConfig())


@pytest.fixture(scope="module", params=[0.0, 0.5, 1.0], ids=lambda d: f"difficulty={d}")
def any_histories(request) -> list[dict]:
    """Histories at several difficulties: what holds at every one (well-formed rows, flags, sweeps)."""
    return txsim.simulate_histories(records(), SimConfig(difficulty=request.param))


def test_same_seed_same_history_in_any_order() -> None:
    recs = records(40)
    a = txsim.simulate_histories(recs, SimConfig())
    b = txsim.simulate_histories(recs[::-1], SimConfig())[::-1]
    assert a == b
    other = txsim.simulate_histories(recs, SimConfig(seed=1))
    assert [h["timestamp"] for h in other] != [h["timestamp"] for h in a]


def test_rows_are_well_formed(any_histories) -> None:
    for h in any_histories:
        n = len(h["timestamp"])
        assert all(len(h[c]) == n for c in txsim.TX_COLUMNS)
        assert n >= SimConfig().min_transactions
        assert np.all(np.diff(h["timestamp"]) >= 0) and np.all(np.diff(h["block"]) >= 0)
        assert set(h["method"]) <= set(taxonomy.METHOD_CATEGORIES)
        assert set(h["sender_role"]) <= set(taxonomy.SENDER_ROLES)
        assert h["method"][0] == "deploy" and h["sender_role"][0] == "deployer"
        assert np.cumsum(h["balance_delta"]).min() >= -1e-6  # never pays out more than it holds
        failed = np.array(h["success"]) == 0
        assert not np.any(np.array(h["balance_delta"])[failed])  # a reverted transaction moves nothing


def test_labels_agree_with_flags(any_histories) -> None:
    for h in any_histories:
        flags = np.array(h["anomaly"], dtype=bool)
        assert (h["label"] == "normal") == (not flags.any()), h["scenario"]
        assert np.all(np.array(h["success"])[flags] == 1)  # only transactions that took effect are to blame


def _balance_before_first_flag(h: dict) -> tuple[float, float]:
    delta = np.array(h["balance_delta"])
    flags = np.array(h["anomaly"], dtype=bool)
    first = int(np.argmax(flags))
    return float(delta[:first].sum()), float(delta[flags].sum())


@pytest.mark.parametrize(
    ("label", "least"), [("exploit_drain", 0.05), ("flash_loan_attack", 0.02), ("rug_pull", 0.1)]
)
def test_a_drained_history_loses_its_balance_in_the_flagged_transactions(histories, label, least) -> None:
    drained = [h for h in histories if h["label"] == label]
    assert drained
    for h in drained:
        before, flagged = _balance_before_first_flag(h)
        assert before > 0.5, h["scenario"]
        assert flagged <= -least * before, (h["scenario"], before, flagged)
    if label == "exploit_drain":  # emptied through nested calls: the drain itself makes many internal calls
        assert all(max(np.array(h["internal_calls"])[np.array(h["anomaly"], bool)]) >= 2 for h in drained)


def test_phishing_sweeps_go_to_one_address(any_histories) -> None:
    phished = [h for h in any_histories if h["label"] == "phishing_drain"]
    assert phished
    for h in phished:
        flags = np.array(h["anomaly"], dtype=bool)
        assert set(np.array(h["method"])[flags]) == {"transfer_from"}
        assert len(set(np.array(h["sender"])[flags])) == 1
        assert "approve" in h["method"]


def test_every_scenario_occurs_and_the_task_is_not_trivial(histories) -> None:
    scenarios = Counter(h["scenario"] for h in histories)
    for label in taxonomy.ANOMALY_TYPES[1:]:
        assert any(s.startswith(label + "/") for s in scenarios), label
    for kind in txsim.HARD_NEGATIVES:
        assert scenarios[f"normal/{kind}"] > 0, kind
    flawed_normal = sum(1 for h in histories if h["vuln_labels"] and h["label"] == "normal")
    safe_fraud = sum(1 for h in histories if not h["vuln_labels"] and h["label"] != "normal")
    exploits_of_safe = sum(1 for h in histories if not h["vuln_labels"] and h["label"] in txsim.EXPLOITS)
    assert flawed_normal > 10 and safe_fraud > 10 and exploits_of_safe == 0


def test_unknown_family_falls_back_to_the_generic_profile() -> None:
    assert txsim.profile_for("brand_new_thing").name == "generic"
    assert txsim.profile_for(None).name == "generic"
    assert txsim.profile_for("investment_scheme").name == "ponzi"
    h = simulate_history({"id": "x", "family": None, "labels": ["reentrancy"]}, SimConfig())
    assert h["family"] is None and len(h["timestamp"]) >= 16


def test_sim_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="attack_rate"):
        SimConfig(attack_rate=1.5)
    with pytest.raises(ConfigError, match="min_transactions"):
        SimConfig(min_transactions=500, median_transactions=90)


def test_histories_are_stored_versioned_and_reused(tmp_path) -> None:
    from training_pipeline.corpus.build import CorpusConfig

    corpus = CorpusConfig(n_contracts=20)
    path = txsim.build_histories(corpus, SimConfig(), tmp_path)
    manifest = txsim.load_manifest(path)
    stored = txsim.load_histories(path)
    ids = [r["id"] for r in txsim.corpus_records(corpus)]
    assert [h["contract_id"] for h in stored] == ids
    assert manifest["n_records"] == 20 and len(manifest["content_hash"]) == 64
    assert sum(manifest["counts"]["per_label"].values()) == 20
    stamp = (path / "manifest.json").stat().st_mtime_ns
    assert txsim.build_histories(corpus, SimConfig(), tmp_path) == path
    assert (path / "manifest.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert txsim.build_histories(corpus, SimConfig(seed=3), tmp_path) != path


@pytest.mark.slow
def test_ids_families_and_folds_match_the_compiled_corpus(tmp_path) -> None:
    from training_pipeline.corpus.build import CorpusConfig, build_corpus, load_corpus

    corpus = CorpusConfig(n_contracts=20)
    built = load_corpus(build_corpus(corpus, tmp_path)).to_list()
    meta = txsim.corpus_records(corpus)
    for rec, m in zip(built, meta, strict=True):
        assert (rec["id"], rec["group"], rec["family"], list(rec["labels"]), rec["fold"]) == (
            m["id"],
            m["group"],
            m["family"],
            m["labels"],
            m["fold"],
        )
