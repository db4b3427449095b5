"""Labels, families and compiler eras: the one source of truth every source and model shares."""

from __future__ import annotations

from training_pipeline.errors import DataError

# DASP / SmartBugs categories (ARCHITECTURE.md, "Taxonomy"). The order fixes the model's output index.
VULNERABILITY_CLASSES: tuple[str, ...] = (
    "access_control",
    "arithmetic",
    "bad_randomness",
    "denial_of_service",
    "front_running",
    "reentrancy",
    "time_manipulation",
    "unchecked_low_level_calls",
    "other",
)
LABEL_TO_INDEX: dict[str, int] = {name: i for i, name in enumerate(VULNERABILITY_CLASSES)}

# Contract families the corpus generator knows; imported data may carry None or another name.
FAMILIES: tuple[str, ...] = (
    "erc20_token",
    "vault",
    "auction",
    "lottery",
    "multisig_wallet",
    "erc721_collection",
    "crowdsale",
    "staking_rewards",
    "simple_exchange",
    "upgradeable_proxy",
    "investment_scheme",
    "escrow",
)

# Compiler eras: the exact solc-js release each era compiles with (scripts/solc/package.json pins them).
COMPILER_VERSIONS: dict[str, str] = {
    "0.4": "0.4.26",
    "0.5": "0.5.17",
    "0.6": "0.6.12",
    "0.7": "0.7.6",
    "0.8": "0.8.26",
}

# Severity weight per class, for risk scores built on top of the classifiers.
SEVERITY: dict[str, float] = {
    "access_control": 1.0,
    "arithmetic": 0.7,
    "bad_randomness": 0.6,
    "denial_of_service": 0.6,
    "front_running": 0.5,
    "reentrancy": 1.0,
    "time_manipulation": 0.4,
    "unchecked_low_level_calls": 0.7,
    "other": 0.3,
}


class UnknownLabelError(DataError, ValueError):
    """A label that is not in the taxonomy."""


def validate_labels(labels: list[str], where: str = "input") -> list[str]:
    """Return ``labels`` unchanged if every one is a taxonomy class, else raise a one-line error."""
    unknown = sorted({lbl for lbl in labels if lbl not in LABEL_TO_INDEX})
    if unknown:
        raise UnknownLabelError(
            f"{where}: unknown label(s) {', '.join(map(repr, unknown))}; "
            f"expected some of {', '.join(VULNERABILITY_CLASSES)}"
        )
    return labels


def multi_hot(labels: list[str]) -> list[float]:
    """Multi-hot vector over ``VULNERABILITY_CLASSES``."""
    vec = [0.0] * len(VULNERABILITY_CLASSES)
    for lbl in labels:
        vec[LABEL_TO_INDEX[lbl]] = 1.0
    return vec


# --- Transaction behaviour (the behavior model, corpus/txsim.py, data/tx_csv.py) ---------------------------
# History-level classes: "normal" or the anomaly a contract's transaction history shows. Order = output index.
ANOMALY_TYPES: tuple[str, ...] = (
    "normal",
    "exploit_drain",
    "flash_loan_attack",
    "rug_pull",
    "ponzi_collapse",
    "phishing_drain",
)
# What a transaction calls, from its 4-byte selector (data/tx_csv.py holds the selector table).
METHOD_CATEGORIES: tuple[str, ...] = (
    "other",  # an unknown selector
    "plain_ether",  # no calldata: a bare ether transfer or the fallback
    "deploy",
    "transfer",
    "approve",
    "transfer_from",
    "deposit",
    "withdraw",
    "mint",
    "burn",
    "swap",
    "liquidity_add",
    "liquidity_remove",
    "flash_loan",
    "claim",
    "bid",
    "buy",
    "admin",
    "upgrade",
)
# Who sent a transaction, relative to the contract whose history it is.
SENDER_ROLES: tuple[str, ...] = ("deployer", "new_account", "returning_account", "contract")
