"""The real SolidiFI benchmark (../shared/datasets/solidifi), when present: all 350 contracts import,
compile, keep their lines and leak no bug-type name. Uses the repository's compile cache (data/solc_cache),
so only the first run pays the compile (about a minute on two cores)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from training_pipeline.corpus.solc import DEFAULT_CACHE_DIR
from training_pipeline.data.importers.solidifi import SolidifiConfig, import_solidifi, leaky_identifiers
from training_pipeline.data.importers.store import load_stored

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT.parent / "shared" / "datasets" / "solidifi"
LABEL_MAP = OmegaConf.to_container(
    OmegaConf.load(ROOT / "conf" / "data" / "_contracts.yaml").solidifi.label_map
)
LEAK = re.compile(
    r"re_ent|intou|tmstmp|txorigin|unchk|uncheck|_TOD|\bTOD\d|\bbugv?_|vundflw|undrflow|ovrflow"
)
# The injected names a scan of all 350 files finds (trailing digits dropped): every one must be renamed.
EXPECTED_RENAMED = set(
    """
    Balances_unchk UncheckedExternalCall_unchk addr_unchk balances_intou balances_re_ent bug_intou
    bug_re_ent bug_tmstmp bug_txorigin bug_unchk bug_unchk_send bugv_tmstmp buyTicket_re_ent
    callme_re_ent callnotchecked_unchk cash_unchk claimReward_TOD claimReward_re_ent claimed_TOD
    counter_re_ent getReward_TOD increaseLockTime_intou jackpot_re_ent lastPlayer_re_ent lockTime_intou
    my_func_uncheck my_func_unchk not_called_re_ent owner_TOD owner_txorigin p_intou
    pastBlockTime_tmstmp payedOut_unchk play_TOD play_tmstmp receivers_unchk redeemableEther_re_ent
    reward_TOD sendToWinner_unchk sendto_txorigin setReward_TOD subpot_unchk transferTo_txorigin
    transferValue_intou transferValue_re_ent transfer_intou transfer_undrflow unhandledsend_unchk
    userBalance_re_ent vundflw winAmount_unchk winner_TOD winner_tmstmp winner_unchk
    withdrawAll_txorigin withdrawBal_unchk withdrawBalance_re_ent withdrawFunds_re_ent
    withdrawLeftOver_unchk withdraw_balances_re_ent withdraw_intou withdraw_ovrflow
    """.split()
)


@pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} not present")
def test_real_solidifi_imports_cleanly(tmp_path: Path) -> None:
    cfg = SolidifiConfig(path=str(REAL), label_map=LABEL_MAP)
    records, manifest = load_stored(import_solidifi(cfg, tmp_path, cache_dir=DEFAULT_CACHE_DIR))
    assert len(records) == 350 and manifest["n_groups"] == 50
    assert {r["group"] for r in records} == {f"base_{n}" for n in range(1, 51)}
    assert manifest["compile"]["failures"] == 0 and all(r["bytecode"] for r in records)
    assert set(manifest["per_folder"].values()) == {50}
    assert manifest["per_label"]["access_control"] == 100  # tx.origin and Unchecked-Send
    assert set(manifest["renamed_stems"]) >= EXPECTED_RENAMED
    for r in records:
        folder, name = r["id"].split("/")[1:]
        original = (REAL / "buggy_contracts" / folder / f"{name}.sol").read_text()
        n_lines = original.count("\n") + 1
        assert r["source_code"].count("\n") + 1 == n_lines, r["id"]
        assert r["labels"] == [LABEL_MAP[folder]]
        lines = r["vulnerable_lines"][LABEL_MAP[folder]]
        assert lines and 1 <= min(lines) and max(lines) <= n_lines
        assert not leaky_identifiers(r["source_code"]), r["id"]
        assert not LEAK.search(r["source_code"]), (r["id"], LEAK.search(r["source_code"]).group())
