"""The explorer CSV importer on a fixture in the Etherscan API layout: grouping, derived columns, bad rows."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from training_pipeline.data.tx_csv import SELECTORS, import_histories, method_category, read_labels
from training_pipeline.errors import ConfigError, DataError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tx_csv"
VAULT_B = "0xe67c6418f977d6fd83b3da6ac3636e52fbfe03ad"  # drained by an attacker (labels.csv)
WALLET_D = "0xfa873b9781ed0be2acd8efa68554b7e425b6391f"
SALE_E = "0xcdfdfa9290d32f54e670c579763f71a53432da1c"
TOKEN_C = "0x36cfc46abf04f4d743da8f8529a831d099ccd58e"


def load(**kw):
    return import_histories(
        FIXTURE / "transactions.csv",
        FIXTURE / "labels.csv",
        FIXTURE / "internal.csv",
        FIXTURE / "token_transfers.csv",
        **kw,
    )


@pytest.fixture(scope="module")
def imported():
    histories, report = load()
    return {h["contract_id"]: h for h in histories}, report


def test_bad_rows_are_counted_and_dropped_or_fixed(imported) -> None:
    histories, report = imported
    assert report.total("non_numeric") == 1 and report.total("malformed") == 1
    assert report.total("duplicate") == 1
    assert report.total("unknown_address") == 2  # one normal and one internal row of unlabelled addresses
    assert report.total("out_of_order_sorted") == 1
    assert report.total("timestamp_before_previous_block_clamped") == 1
    assert report.total("address_without_transactions") == 1
    assert "transactions.csv: 1 non_numeric (line 8)" in report.summary()
    assert len(histories) == 6 and report.transactions == sum(len(h["hash"]) for h in histories.values())
    for h in histories.values():
        assert h["timestamp"] == sorted(h["timestamp"]) and h["block"] == sorted(h["block"])
        assert len(set(h["hash"])) == len(h["hash"])


def test_a_drain_shows_in_balance_calls_roles_and_flags(imported) -> None:
    b = imported[0][VAULT_B]
    assert b["label"] == "exploit_drain" and b["split"] == "train" and b["group"] == "vaults"
    assert b["method"] == ["deploy", "deposit", "deposit", "deposit", "withdraw", "withdraw"]
    assert b["sender_role"][0] == "deployer" and b["sender_role"][4] == "returning_account"
    drain = b["anomaly"].index(1) + 1
    assert b["internal_calls"][drain] == 5 and b["balance_delta"][drain] == pytest.approx(-8.1)
    assert b["anomaly"] == [0, 0, 0, 1, 1, 0]
    assert b["success"][-1] == 0 and b["balance_delta"][-1] == 0.0
    assert sum(b["balance_delta"]) == pytest.approx(0.0, abs=1e-9)  # emptied


def test_internal_and_token_exports_add_calls_and_amounts(imported) -> None:
    histories, _ = imported
    d = histories[WALLET_D]
    assert "contract" in d["sender_role"]  # a call into the wallet from inside another transaction
    assert d["method"][-2:] == ["other", "other"]  # an unknown selector, and the internal caller
    c = histories[TOKEN_C]
    assert c["label"] == "phishing_drain"  # the alias "phishing"
    assert [m for m, f in zip(c["method"], c["anomaly"], strict=True) if f] == ["transfer_from"] * 3
    assert c["token_amount"][-1] == pytest.approx(900.0)
    e = histories[SALE_E]
    assert e["label"] == "rug_pull" and set(e["anomaly"]) == {-1}  # no flagged_tx given: unknown, not 0


def test_strict_mode_stops_at_the_first_bad_row() -> None:
    with pytest.raises(DataError, match=r"transactions.csv:8: value='abc'"):
        load(on_bad_rows="error")
    with pytest.raises(ConfigError, match="on_bad_rows"):
        load(on_bad_rows="ignore")


def test_bad_files_fail_with_one_line(tmp_path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("address,label\n0x527fa99d95438a295cb933855fbb308b11dee57a,scam\n")
    with pytest.raises(DataError, match=r"labels.csv:2: unknown label 'scam'"):
        read_labels(labels)
    assert (
        read_labels(labels, {"scam": "rug_pull"})["0x527fa99d95438a295cb933855fbb308b11dee57a"]["label"]
        == "rug_pull"
    )
    with pytest.raises(ConfigError, match="label_map"):
        read_labels(labels, {"scam": "fraud"})
    txs = tmp_path / "txs.csv"
    txs.write_text("hash,from,to\n")
    with pytest.raises(DataError, match="missing column"):
        import_histories(txs, FIXTURE / "labels.csv")
    with pytest.raises(DataError, match="no such file"):
        import_histories(tmp_path / "nope.csv", FIXTURE / "labels.csv")


def test_a_folder_of_exports_reads_like_one_file(tmp_path) -> None:
    shutil.copy(FIXTURE / "transactions.csv", tmp_path / "a.csv")
    histories, _ = import_histories(tmp_path, FIXTURE / "labels.csv")
    assert len(histories) == 6


def test_method_categories_from_selectors() -> None:
    assert method_category("0xa9059cbb") == "transfer"
    assert method_category("0x23b872dd000000000000000000000000abc") == "transfer_from"
    assert method_category("0x095EA7B3") == "approve"
    assert method_category("0x") == "plain_ether" and method_category("") == "plain_ether"
    assert method_category("0xdeadbeef") == "other"
    assert method_category("0x60806040", creation=True) == "deploy"
    assert all(len(s) == 10 and s.startswith("0x") for s in SELECTORS)
