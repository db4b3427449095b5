"""Transaction histories for the generated corpus: ordinary use, anomaly scenarios and legitimate look-alikes.

Every contract of the corpus (joined on ``contract_id``) gets one history whose ordinary traffic follows its
family (a vault takes deposits and pays withdrawals, a token moves balances and allowances, ...): users
arrive over time with heavy-tailed values under a daily cycle, a launch burst and sometimes an airdrop,
the deployer does maintenance, some transactions fail. The contract's flaws decide which attack is
plausible (reentrancy → a drain through nested calls, front-running → a flash-loan manipulation), but not
every flawed contract is attacked; any contract may be a rug pull, a Ponzi scheme or a phishing target, and
a third of the normal histories carry a legitimate event that looks like an attack (a whale's withdrawal,
an owner's migration, a popular mint). Labels: the history's class (``taxonomy.ANOMALY_TYPES``) and a flag
per transaction (the transactions responsible: the attacker's, the deployer's dump, the Ponzi payouts, the
phishing sweeps). Deterministic for (seed, contract id); stored with HF datasets under
``data/behavior/<key>/`` beside the corpus, keyed and locked the same way (``corpus/build.py``).

``difficulty`` (``data.sim.difficulty``, 0..1) makes the task harder as it rises: attacks take less, spread
over more transactions mingled with ordinary traffic, with fewer internal calls and smaller loans, often from
an account that used the contract before (a depositor); rug pulls are staged like migrations, Ponzi schemes
keep a front of ordinary use. More normal histories carry a look-alike, and above 0 most are twins
(``TWINS``): an anomaly's own moves made legitimately (a whitehat rescue, a keeper's flash-loan liquidation,
a treasury move, a token migration) or yield payouts above the deposits; ordinary traffic gets bigger owner
withdrawals, treasury trades, contract wallets, new bots and more airdrops. At 0 every random draw is the
original one (``_History.chance`` draws nothing at probability 0): the same histories as before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from training_pipeline import taxonomy
from training_pipeline.corpus.build import CorpusConfig, generate_with_folds
from training_pipeline.corpus.generator import GENERATOR_VERSION
from training_pipeline.errors import ConfigError
from training_pipeline.utils.run import write_json

log = logging.getLogger(__name__)

SIMULATOR_VERSION = "1.0.0"  # bump when the output for a given seed changes: stored histories key on it
BUILD_FORMAT = 1  # bump when the stored columns change

# Anomaly type -> its variants; a variant and an intensity in [0, 1] are drawn per history.
SCENARIOS: dict[str, tuple[str, ...]] = {
    "exploit_drain": ("single_tx", "repeated_tx", "probe_then_drain", "attack_contract"),
    "flash_loan_attack": ("single_tx", "same_block_sequence", "oracle_manipulation"),
    "rug_pull": ("liquidity_pull", "mint_and_dump", "slow_rug"),
    "ponzi_collapse": ("doubler", "slow_bleed", "owner_exit"),
    "phishing_drain": ("approve_sweep", "slow_sweep", "approval_for_all"),
}
HARD_NEGATIVES: tuple[str, ...] = (
    "whale_withdrawal",
    "owner_migration",
    "mint_burst",
    "arbitrage_burst",
    "router_sweep",
    "failed_attack",
)
# Look-alikes drawn only at difficulty > 0, kind -> the anomaly it mirrors: the first four make that anomaly's
# own moves legitimately (nothing flagged), yield payouts pay more than was deposited as a Ponzi scheme does.
TWINS: dict[str, str] = {
    "rescue": "exploit_drain",  # a whitehat or the team's guardian empties a vulnerable contract to save it
    "liquidation": "flash_loan_attack",  # a keeper liquidates with a flash loan: many calls, ether out
    "treasury_move": "rug_pull",  # the team moves the funds to a treasury or a new pool
    "token_migration": "phishing_drain",  # holders approve a migration contract that pulls their tokens
    "yield_payouts": "ponzi_collapse",
}
EXPLOITS = ("exploit_drain", "flash_loan_attack")  # need a code flaw
DRAINS = ("exploit_drain", "flash_loan_attack", "rug_pull")  # empty the contract: its users leave
FRAUDS = ("rug_pull", "ponzi_collapse", "phishing_drain")  # need none

# Per transaction: column -> stored type (datasets feature name).
TX_COLUMNS: dict[str, str] = {
    "timestamp": "int64",
    "block": "int64",
    "sender": "string",
    "sender_role": "string",
    "method": "string",
    "value": "float64",  # ether sent with the transaction
    "gas_used": "int64",
    "success": "int8",
    "internal_calls": "int32",
    "balance_delta": "float64",  # change of the contract's ether balance
    "token_amount": "float64",  # tokens moved (whole units)
    "anomaly": "int8",  # 1 = a transaction responsible for the anomaly
}

# Vulnerability class -> (exploit_drain, flash_loan_attack) affinity: how plausibly the flaw is exploited so.
EXPLOIT_AFFINITY: dict[str, tuple[float, float]] = {
    "reentrancy": (3.0, 0.5),
    "unchecked_low_level_calls": (1.5, 0.4),
    "access_control": (2.0, 0.3),
    "arithmetic": (1.0, 1.5),
    "front_running": (0.3, 2.0),
    "bad_randomness": (1.5, 1.0),
    "time_manipulation": (1.0, 0.6),
    "denial_of_service": (0.2, 0.2),
    "other": (0.5, 0.5),
}
_UNKNOWN_AFFINITY = (0.5, 0.5)

BASE_GAS: dict[str, int] = {
    "other": 90_000,
    "plain_ether": 21_000,
    "deploy": 1_400_000,
    "transfer": 42_000,
    "approve": 46_000,
    "transfer_from": 55_000,
    "deposit": 60_000,
    "withdraw": 45_000,
    "mint": 95_000,
    "burn": 38_000,
    "swap": 130_000,
    "liquidity_add": 180_000,
    "liquidity_remove": 150_000,
    "flash_loan": 350_000,
    "claim": 65_000,
    "bid": 70_000,
    "buy": 75_000,
    "admin": 38_000,
    "upgrade": 60_000,
}
INFLOWS = ("deposit", "buy", "mint", "bid", "plain_ether", "liquidity_add")
OUTFLOWS = ("withdraw", "claim", "liquidity_remove")


@dataclass(frozen=True)
class Profile:
    """A family's ordinary traffic and which frauds and look-alikes fit it."""

    name: str
    methods: dict[str, float]  # ordinary users' method -> weight
    token: bool  # keeps a token ledger: allowances and transferFrom make sense
    fraud: dict[str, float]  # rug_pull / ponzi_collapse / phishing_drain -> weight
    hard_negatives: tuple[str, ...]
    payout: str = "withdraw"  # how ether leaves the contract
    fraud_scale: float = 1.0  # multiplies sim.fraud_rate (a Ponzi family is mostly Ponzi)


PROFILES: dict[str, Profile] = {
    "token": Profile(
        "token",
        {"transfer": 5, "approve": 2, "transfer_from": 1.2, "buy": 1.2, "burn": 0.2, "claim": 0.3},
        True,
        {"rug_pull": 1.0, "phishing_drain": 3.0, "ponzi_collapse": 0.1},
        (
            "mint_burst",
            "owner_migration",
            "whale_withdrawal",
            "router_sweep",
            "arbitrage_burst",
            "failed_attack",
        ),
        "claim",
    ),
    "nft": Profile(
        "nft",
        {"mint": 3, "transfer": 1.5, "approve": 1, "transfer_from": 1},
        True,
        {"rug_pull": 1.0, "phishing_drain": 3.0},
        ("mint_burst", "owner_migration", "router_sweep", "failed_attack"),
        "withdraw",
    ),
    "vault": Profile(
        "vault",
        {"deposit": 4, "withdraw": 3, "claim": 0.4, "plain_ether": 0.3},
        False,
        {"rug_pull": 1.0, "ponzi_collapse": 1.2},
        ("whale_withdrawal", "owner_migration", "arbitrage_burst", "failed_attack"),
    ),
    "auction": Profile(
        "auction",
        {"bid": 4, "withdraw": 1.5},
        False,
        {"rug_pull": 1.0, "ponzi_collapse": 0.2},
        ("whale_withdrawal", "owner_migration", "failed_attack"),
    ),
    "lottery": Profile(
        "lottery",
        {"buy": 5, "claim": 0.6, "plain_ether": 0.4},
        False,
        {"rug_pull": 1.0, "ponzi_collapse": 1.5},
        ("whale_withdrawal", "owner_migration", "mint_burst", "failed_attack"),
        "claim",
    ),
    "multisig": Profile(
        "multisig",
        {"deposit": 2, "admin": 1.5, "withdraw": 1, "plain_ether": 1},
        False,
        {"rug_pull": 1.0, "ponzi_collapse": 0.1},
        ("whale_withdrawal", "owner_migration", "failed_attack"),
    ),
    "exchange": Profile(
        "exchange",
        {"swap": 5, "liquidity_add": 1, "liquidity_remove": 0.7},
        True,
        {"rug_pull": 2.0, "phishing_drain": 0.5},
        ("whale_withdrawal", "owner_migration", "arbitrage_burst", "router_sweep", "failed_attack"),
        "liquidity_remove",
    ),
    "crowdsale": Profile(
        "crowdsale",
        {"buy": 5, "claim": 1, "withdraw": 0.3},
        True,
        {"rug_pull": 2.0, "phishing_drain": 1.0, "ponzi_collapse": 0.3},
        ("mint_burst", "owner_migration", "failed_attack"),
        "claim",
    ),
    "ponzi": Profile(
        "ponzi",
        {"deposit": 4, "withdraw": 2, "claim": 1},
        False,
        {"ponzi_collapse": 6.0, "rug_pull": 1.0},
        ("whale_withdrawal", "failed_attack"),
        fraud_scale=3.0,
    ),
    "proxy": Profile(
        "proxy",
        {"deposit": 2, "withdraw": 1.5, "transfer": 1, "other": 0.5},
        True,
        {"rug_pull": 1.0, "phishing_drain": 0.5},
        ("owner_migration", "whale_withdrawal", "failed_attack"),
    ),
    "generic": Profile(  # a family this module does not know: every scenario stays possible
        "generic",
        {"deposit": 3, "withdraw": 2, "transfer": 1, "approve": 0.5, "transfer_from": 0.3, "plain_ether": 1},
        True,
        {"rug_pull": 1.0, "ponzi_collapse": 1.0, "phishing_drain": 1.0},
        HARD_NEGATIVES,
    ),
}
# Substrings of a family name -> profile, first match wins (families are being added; unknown -> generic).
_FAMILY_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("ponzi", "ponzi"),
    ("investment", "ponzi"),
    ("scheme", "ponzi"),
    ("pyramid", "ponzi"),
    ("doubler", "ponzi"),
    ("721", "nft"),
    ("nft", "nft"),
    ("multisig", "multisig"),
    ("erc20", "token"),
    ("token", "token"),
    ("auction", "auction"),
    ("lottery", "lottery"),
    ("raffle", "lottery"),
    ("amm", "exchange"),
    ("exchange", "exchange"),
    ("dex", "exchange"),
    ("swap", "exchange"),
    ("crowdsale", "crowdsale"),
    ("sale", "crowdsale"),
    ("stak", "vault"),
    ("vault", "vault"),
    ("bank", "vault"),
    ("escrow", "vault"),
    ("wallet", "vault"),
    ("proxy", "proxy"),
)


def profile_for(family: str | None) -> Profile:
    """The traffic profile of a family name; an unknown or missing family gets the generic one."""
    name = (family or "").lower()
    for key, profile in _FAMILY_KEYWORDS:
        if key in name:
            return PROFILES[profile]
    return PROFILES["generic"]


@dataclass(frozen=True)
class SimConfig:
    """``data.sim.*``: how histories are drawn; a misspelled key is a TypeError at startup."""

    seed: int = 0
    attack_rate: float = 0.45  # flawed contracts (with a strongly exploitable flaw) that get attacked
    fraud_rate: float = 0.35  # contracts not attacked that are a rug pull, Ponzi scheme or phishing target
    hard_negative_rate: float = 0.5  # normal histories with a legitimate look-alike event
    median_transactions: int = 90
    min_transactions: int = 16
    max_transactions: int = 600  # cap of the drawn length; an injected event may add a few rows past it
    failure_rate: float = 0.03
    difficulty: float = 0.0  # 0: the original simulator (conf/data/behavior_model.yaml sets the default)

    def __post_init__(self) -> None:
        for name in ("attack_rate", "fraud_rate", "hard_negative_rate", "failure_rate", "difficulty"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"data.sim.{name}={getattr(self, name)}: expected a value in [0, 1]")
        if not 8 <= self.min_transactions <= self.median_transactions <= self.max_transactions:
            raise ConfigError(
                "data.sim: need 8 <= min_transactions <= median_transactions <= max_transactions, got "
                f"{self.min_transactions}, {self.median_transactions}, {self.max_transactions}"
            )

    def content_fields(self) -> dict[str, Any]:
        """The fields that decide the histories; difficulty 0 is left out, so earlier keys stay the same."""
        d = dataclasses.asdict(self)
        if not self.difficulty:
            d.pop("difficulty")
        return d


# --- one history --------------------------------------------------------------------------------------------
@dataclass
class _History:
    """The growing transaction list of one contract and the state that keeps it consistent."""

    rng: random.Random
    profile: Profile
    failure_rate: float
    difficulty: float = 0.0
    length: int = 0  # the planned number of transactions
    t: int = 0
    t0: int = 0
    block0: int = 0
    mean_gap: float = 3600.0
    phase: float = 0.0
    balance: float = 0.0
    last_block: int = 0
    last_bid: tuple[str, float] | None = None
    deposits: dict[str, float] = field(default_factory=dict)  # ether a user may withdraw
    holders: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    users: list[str] = field(default_factory=list)
    cols: dict[str, list] = field(default_factory=lambda: {k: [] for k in TX_COLUMNS})

    def __post_init__(self) -> None:
        r = self.rng
        self.t = self.t0 = 1_577_836_800 + r.randrange(3 * 365 * 86400)  # 2020-2022
        self.block0 = 9_190_000 + (self.t - 1_577_836_800) // 13
        self.last_block = self.block0
        self.mean_gap = math.exp(r.gauss(math.log(3 * 3600), 0.9))  # a median of ~3 h between transactions
        self.phase = r.uniform(0, 86400)
        self.deployer = self.address()
        self.routers = [self.address() for _ in range(r.randint(1, 3))]  # contracts that call transferFrom
        self.bots = [self.address() for _ in range(r.randint(1, 3))]  # aggregators, arbitrage bots

    def __len__(self) -> int:
        return len(self.cols["timestamp"])

    def address(self) -> str:
        return f"0x{self.rng.getrandbits(160):040x}"

    # -- difficulty ------------------------------------------------------------------------------------------
    def chance(self, p: float) -> bool:
        """True with probability ``p``; draws nothing when ``p <= 0`` (difficulty 0 keeps the old draws)."""
        return _chance(self.rng, p)

    def softer(self, x: float, by: float) -> float:
        """``x`` shrunk by the fraction ``by`` at difficulty 1, linearly; exactly ``x`` at difficulty 0."""
        return x * (1 - by * self.difficulty)

    def mingle(self) -> None:
        """Ordinary traffic between two steps of an attack (or a look-alike), more of it the harder."""
        if self.chance(self.difficulty):
            for _ in range(self.rng.randint(1, 1 + int(4 * self.difficulty))):
                self.ordinary()

    def take(self, sender: str, method: str, amount: float, **kwargs: Any) -> None:
        """``amount`` ether out in one transaction or, at difficulty d (probability d), in 2 to 2 + 5d smaller
        ones with ordinary traffic between them; ``kwargs`` go to every ``add``."""
        k = self.rng.randint(2, 2 + int(5 * self.difficulty)) if self.chance(self.difficulty) else 1
        for i in range(k):
            if i:
                self.mingle()
            self.add(sender, method, delta=-min(amount / k, self.balance), **kwargs)

    # -- draws -----------------------------------------------------------------------------------------------
    def ether(self, scale: float = 1.0) -> float:
        """Heavy-tailed value: lognormal body (median ~0.1 ETH) with a Pareto tail of whales."""
        r = self.rng
        v = math.exp(r.gauss(math.log(0.1), 1.3))
        if r.random() < 0.04:
            v *= 5 * r.paretovariate(1.2)
        return round(min(v * scale, 20_000.0), 6)

    def tokens(self, scale: float = 1.0) -> float:
        return round(min(math.exp(self.rng.gauss(math.log(500), 2.0)) * scale, 1e12), 4)

    def user(self, new_bias: float = 0.0) -> str:
        """A new account (more likely early and in bursts) or a returning one (heavy users more often)."""
        r = self.rng
        p_new = max(0.12, 0.9 * math.exp(-len(self.users) / 60)) + new_bias
        if not self.users or r.random() < p_new:
            u = self.address()
            self.users.append(u)
            return u
        return r.choice(self.users) if r.random() < 0.6 else r.choice(self.users[-20:])  # recent ones

    def depositor(self) -> str | None:
        owed = [u for u, v in self.deposits.items() if v > 1e-9]
        return self.rng.choice(owed) if owed else None

    # -- time ------------------------------------------------------------------------------------------------
    def advance(self, rate: float = 1.0) -> None:
        """Poisson arrivals thinned by a daily cycle (busy afternoons, quiet nights)."""
        r = self.rng
        while True:
            self.t += max(1, int(r.expovariate(rate / self.mean_gap)))
            day = 2 * math.pi * ((self.t + self.phase) % 86400) / 86400
            if r.random() < (1 + 0.7 * math.sin(day)) / 1.7:
                return

    # -- one transaction -------------------------------------------------------------------------------------
    def add(
        self,
        sender: str,
        method: str,
        *,
        value: float = 0.0,
        delta: float = 0.0,
        tokens: float = 0.0,
        internal: int = 0,
        success: bool | None = None,
        flag: int = 0,
        contract: bool = False,
        rate: float = 1.0,
        same_block: bool = False,
    ) -> bool:
        """Append a transaction; a failed one moves nothing. Returns whether it succeeded."""
        r = self.rng
        if same_block and len(self):
            block = self.last_block
        else:
            self.advance(rate)
            block = max(self.block0 + (self.t - self.t0) // 12 + r.randint(0, 1), self.last_block)
        if success is None:
            success = r.random() >= self.failure_rate
        if delta < 0 and self.balance + delta < -1e-9:
            success = False  # cannot pay out more than the contract holds
        gas = BASE_GAS.get(method, 60_000) + 9_000 * internal
        gas = int(gas * r.uniform(0.85, 1.2))
        if not success:  # reverted: nothing moves, and nothing it attempted is to blame
            delta, tokens, internal, flag, gas = 0.0, 0.0, 0, 0, int(gas * r.uniform(0.2, 0.9))
        if contract:
            role = "contract"
        elif sender == self.deployer:
            role = "deployer"
        else:
            role = "returning_account" if sender in self.seen else "new_account"
        self.seen.add(sender)
        self.balance = max(self.balance + delta, 0.0)
        self.last_block = block
        row = (self.t, block, sender, role, method, value, gas, int(success), internal, delta, tokens, flag)
        for col, v in zip(self.cols.values(), row, strict=True):
            col.append(v)
        return success

    # -- ordinary traffic ------------------------------------------------------------------------------------
    def ordinary(
        self, rate: float = 1.0, new_bias: float = 0.0, scale: float = 1.0, method: str | None = None
    ):
        """One ordinary transaction: the deployer's maintenance now and then, else a user's."""
        r = self.rng
        if method is None and r.random() < 0.04:
            if self.balance > 0 and r.random() < 0.25:  # the owner takes a fee (or moves treasury funds)
                cut = r.uniform(0.005, 0.03 + 0.3 * self.difficulty)
                self.add(self.deployer, "withdraw", delta=-self.balance * cut, internal=1)
            elif self.chance(0.5 * self.difficulty):  # the team mints emissions or sells from its treasury
                out = -self.balance * r.uniform(0.0, 0.1)
                self.add(
                    self.deployer, r.choice(("mint", "swap")), delta=out, tokens=self.tokens(20), internal=2
                )
            else:
                self.add(self.deployer, r.choice(("admin", "admin", "upgrade")), rate=rate)
            return
        p_bot = (0.03 if self.profile.token else 0.015) * (1 + 2 * self.difficulty)
        if method is None and r.random() < p_bot:
            self.complex_call(rate)
            return
        methods = self.profile.methods
        method = method or r.choices(list(methods), weights=list(methods.values()))[0]
        if method in OUTFLOWS:
            u = self.depositor()
            if u is None or r.random() < 0.1:
                method = "deposit" if not self.profile.token else "buy"
            else:
                amount = self.deposits[u] * (1.0 if r.random() < 0.6 else r.uniform(0.2, 0.9))
                wallet = self.chance(0.2 * self.difficulty)  # a contract wallet makes a few calls
                calls = 1 + r.randint(1, 3) if wallet else 1
                if self.add(u, method, delta=-amount, internal=calls, rate=rate):
                    self.deposits[u] -= amount
                return
        sender = self.user(new_bias)
        if method in INFLOWS:
            v = self.ether(scale)
            delta, internal = v, 0
            if method == "bid":
                if self.last_bid and self.last_bid[0] != sender:
                    v = max(v, self.last_bid[1] * r.uniform(1.02, 1.3))
                    delta, internal = v - self.last_bid[1], 1  # the outbid amount goes back
                    v = round(v, 6)
            tokens = self.tokens(scale) if method in ("buy", "mint", "liquidity_add") else 0.0
            if self.add(sender, method, value=v, delta=delta, tokens=tokens, internal=internal, rate=rate):
                if method == "bid":
                    self.last_bid = (sender, v)
                elif method in ("deposit", "liquidity_add", "plain_ether"):
                    self.deposits[sender] = self.deposits.get(sender, 0.0) + v
                if tokens:
                    self.holders.append(sender)
        elif method == "swap":
            if r.random() < 0.5:
                v = self.ether(scale)
                self.add(sender, "swap", value=v, delta=v, tokens=self.tokens(), internal=2, rate=rate)
            else:
                out = min(self.ether(scale), 0.05 * self.balance)
                self.add(sender, "swap", delta=-out, tokens=self.tokens(), internal=2, rate=rate)
        elif method == "transfer_from":
            if r.random() < 0.8:  # a router or marketplace moving users' tokens, as approved
                self.add(
                    r.choice(self.routers), method, tokens=self.tokens(), internal=1, contract=True, rate=rate
                )
            else:
                self.add(sender, method, tokens=self.tokens(), rate=rate)
        elif method == "approve":
            amount = 1e12 if r.random() < 0.5 else self.tokens()  # "unlimited" approvals are common
            self.add(sender, method, tokens=amount, rate=rate)
        elif method == "admin":
            self.add(sender, method, rate=rate)
        else:  # transfer, burn, other
            if self.add(sender, method, tokens=self.tokens(), rate=rate) and method == "transfer":
                self.holders.append(sender)

    def complex_call(self, rate: float = 1.0, same_block: bool = False) -> None:
        """A legitimate contract call with many internal calls and big token amounts (an aggregator, an
        arbitrage bot, a vault's strategy): what an attack looks like, without the loss."""
        r = self.rng
        if self.chance(0.3 * self.difficulty):  # a new aggregator or bot shows up
            self.bots.append(self.address())
        bot = self.bots[r.randrange(len(self.bots))]
        v = self.ether() if r.random() < 0.5 else 0.0
        out = -min(self.balance * r.uniform(0.0, 0.03), self.ether(2.0)) if r.random() < 0.5 else 0.0
        self.add(
            bot,
            r.choice(("swap", "swap", "other", "flash_loan")),
            value=v,
            delta=v + out,
            tokens=round(math.exp(r.gauss(math.log(5e4), 2.0)), 2),
            internal=r.randint(2, 40),
            contract=True,
            rate=rate,
            same_block=same_block,
        )

    def ensure_balance(self, minimum: float) -> None:
        """Ordinary deposits until the contract holds ``minimum`` ether (an attack needs something)."""
        for _ in range(12):
            if self.balance >= minimum:
                return
            method = "buy" if self.profile.token else ("bid" if "bid" in self.profile.methods else "deposit")
            self.ordinary(method=method, scale=3.0)
        if self.balance < minimum:
            v = round(minimum * self.rng.uniform(1.0, 2.0), 6)
            self.add(self.user(), "deposit", value=v, delta=v, success=True)
            self.deposits[self.users[-1]] = v


# --- scenarios ----------------------------------------------------------------------------------------------
def _chance(rng: random.Random, p: float) -> bool:
    """True with probability ``p``, drawing from ``rng`` only when ``p > 0``."""
    return p > 0 and rng.random() < p


def _attacker(h: _History) -> str:
    """A fresh account; at difficulty d, with probability d/2, one that has used the contract before."""
    if h.users and h.chance(0.5 * h.difficulty):
        return h.rng.choice(h.users)
    return h.address()


def exploit_drain(h: _History, variant: str, intensity: float, flag: int = 1) -> None:
    """A flaw emptied: withdrawals re-entered through nested internal calls, by an attacker's account."""
    r = h.rng
    h.ensure_balance(2.0)
    before = h.balance
    frac = h.softer(0.1 + 0.85 * intensity, 0.8)  # a weak attack takes little and calls little
    insider = h.depositor() if h.chance(h.difficulty) else None  # a depositor's withdrawal that re-enters
    attacker = insider or _attacker(h)
    contract = variant == "attack_contract" or r.random() < 0.25
    method = h.profile.payout if r.random() < 0.7 + 0.3 * h.difficulty else "other"
    if not insider and variant != "repeated_tx" and r.random() < 0.6:  # seed the ledger so withdraw pays
        seed = round(min(h.ether(), 0.02 * before) + 0.001, 6)
        h.add(attacker, "deposit", value=seed, delta=seed, flag=flag, contract=contract, success=True)
    if variant == "probe_then_drain":
        h.add(
            attacker, method, delta=-0.02 * h.balance, internal=r.randint(2, 4), flag=flag, contract=contract
        )
        for _ in range(r.randint(1, 4)):
            h.ordinary()
    if variant == "repeated_tx":
        k = r.randint(2, 6)
        for i in range(k):
            if i:
                h.mingle()
            h.add(
                attacker,
                method,
                delta=-min(frac * before / k, h.balance),
                internal=r.randint(2, 3 + int(12 * h.softer(intensity, 1.0))),
                flag=flag,
                contract=contract,
                success=True,
                same_block=i > 0 and r.random() < 0.5,
                rate=30.0,
            )
    else:
        calls = int(2 + 50 * h.softer(intensity, 1.0) * r.uniform(0.5, 1.0))
        h.take(attacker, method, frac * h.balance, internal=calls, flag=flag, contract=contract, success=True)


def flash_loan_attack(h: _History, variant: str, intensity: float, flag: int = 1) -> None:
    """Borrow big, manipulate, repay in one block: huge token amounts, many calls, ether out."""
    r = h.rng
    h.ensure_balance(2.0)
    loss = h.softer(0.03 + 0.8 * intensity, 0.75) * h.balance
    attacker = _attacker(h)
    contract = r.random() < 0.8
    borrowed = round(math.exp(r.gauss(math.log(2e4 * 10 ** (2 * h.softer(intensity, 1.0))), 1.5)), 2)
    if variant == "single_tx":
        method = r.choice(("flash_loan", "flash_loan", "other", "swap"))
        calls = r.randint(4, 10 + int(80 * h.softer(intensity, 0.9)))
        h.add(
            attacker,
            method,
            delta=-loss,
            tokens=borrowed,
            internal=calls,
            flag=flag,
            contract=contract,
            success=True,
        )
    elif variant == "same_block_sequence":
        steps = [
            "swap",
            *r.sample(("deposit", "flash_loan", "other"), r.randint(1, 3)),
            h.profile.payout,
            "swap",
        ]
        for i, method in enumerate(steps):
            out = -loss if method == h.profile.payout else 0.0
            h.add(
                attacker,
                method,
                delta=out,
                tokens=borrowed * r.uniform(0.3, 1.0),
                internal=r.randint(2, 12),
                flag=flag,
                contract=contract,
                success=True,
                same_block=i > 0,
            )
    else:  # oracle_manipulation: skew the price with one swap, cash out at it in the same block
        h.add(
            attacker,
            "swap",
            tokens=borrowed,
            internal=r.randint(3, 8),
            flag=flag,
            contract=contract,
            success=True,
        )
        h.add(
            attacker,
            h.profile.payout,
            delta=-loss,
            internal=r.randint(2, 6),
            flag=flag,
            contract=contract,
            success=True,
            same_block=True,
        )
        if r.random() < 0.6:
            h.add(
                attacker,
                "swap",
                tokens=borrowed,
                internal=3,
                flag=flag,
                contract=contract,
                success=True,
                same_block=True,
            )


def rug_pull(h: _History, variant: str, intensity: float, flag: int = 1) -> None:
    """The deployer takes the inflows: pulls the liquidity, mints and dumps, or bleeds it out slowly."""
    r = h.rng
    h.ensure_balance(1.0)
    pull = "liquidity_remove" if h.profile.name == "exchange" else "withdraw"
    if h.chance(0.5 * h.difficulty):  # staged like a migration: pause and upgrade first
        h.add(h.deployer, "admin")
        h.add(h.deployer, "upgrade")
    if variant == "liquidity_pull":
        k = 1 if r.random() < 0.7 else 2
        frac = h.softer(0.3 + 0.7 * intensity, 0.6)
        for _ in range(k):
            h.take(
                h.deployer, pull, h.balance * frac / k * 1.5 ** (k - 1), internal=1, flag=flag, success=True
            )
    elif variant == "mint_and_dump":
        minted = h.tokens(h.softer(200 * (1 + 9 * intensity), 0.95))
        h.add(h.deployer, "mint", tokens=minted, flag=flag, success=True)
        k = r.randint(2, 5)
        frac = h.softer(0.4 + 0.55 * intensity, 0.6)
        for i in range(k):
            if i:
                h.mingle()
            h.add(
                h.deployer,
                "swap",
                delta=-h.balance * frac / k * 1.5,
                tokens=h.tokens(50),
                internal=2,
                flag=flag,
                success=True,
                rate=8.0,
            )
    else:  # slow_rug
        for _ in range(r.randint(4, 8)):
            h.add(
                h.deployer,
                pull,
                delta=-h.balance * h.softer(r.uniform(0.08, 0.1 + 0.2 * intensity), 0.6),
                internal=1,
                flag=flag,
            )
            for _ in range(r.randint(1, 6)):
                h.ordinary()


def phishing_drain(h: _History, variant: str, intensity: float, flag: int = 1) -> None:
    """Victims approve one spender (a phishing site), then it sweeps their tokens with transferFrom."""
    r = h.rng
    n_victims = max(4, int(r.randint(6, 30) * (0.5 + intensity)))
    n_victims = min(n_victims, max(4, (h.length - len(h)) // 2))
    victims = []
    for _ in range(n_victims):  # the campaign: approvals among ordinary traffic
        v = r.choice(h.holders) if h.holders and r.random() < 0.7 else h.user(0.3)
        amount = 1e12 if variant != "approval_for_all" and r.random() < h.softer(0.8, 0.35) else 1.0
        if h.add(v, "approve", tokens=amount, rate=2.0):
            victims.append(v)
        if r.random() < 0.5:
            h.ordinary()
    drainer = _attacker(h)
    contract = r.random() < 0.2 or h.chance(0.6 * h.difficulty)
    swept = victims[: max(1, int(len(victims) * h.softer(0.5 + 0.5 * intensity, 0.5)))]
    for i, _ in enumerate(swept):
        if i:
            h.mingle()
        tokens = float(r.randint(1, 5)) if variant == "approval_for_all" else h.tokens(3.0)
        h.add(
            drainer,
            "transfer_from",
            tokens=tokens,
            internal=1 if contract else 0,
            flag=flag,
            contract=contract,
            success=True,
            rate=h.softer(40.0, 0.5) if variant != "slow_sweep" else 1.0,
            same_block=variant == "approve_sweep" and r.random() < 0.4,
        )
        if variant == "slow_sweep" and r.random() < 0.6:
            h.ordinary()


# Anomalies that happen at a point of an otherwise ordinary history (a Ponzi scheme is the whole history).
EVENTS: dict[str, Callable[..., None]] = {
    "exploit_drain": exploit_drain,
    "flash_loan_attack": flash_loan_attack,
    "rug_pull": rug_pull,
    "phishing_drain": phishing_drain,
}


def ponzi_collapse(h: _History, variant: str, intensity: float, n: int) -> None:
    """Payouts to earlier investors funded by later deposits; inflows peak, then payouts fail: the collapse.

    Flagged: every payout larger than the payee's own deposit (it is paid from others' money) and the owner's
    cut and exit.
    """
    r = h.rng
    promise = 1.2 + 0.8 * h.softer(intensity, 0.9)  # the multiple an investor is promised
    peak = int(n * r.uniform(0.45, 0.75))
    owed: list[tuple[str, float]] = []  # payout queue, first in first paid
    while len(h) < n:
        i = len(h)
        growth = i / peak if i < peak else max(0.05, 1 - (i - peak) / max(n - peak, 1) * h.softer(1.5, 0.6))
        rate = 0.5 + h.softer(3, 0.7) * growth
        if h.chance(0.5 * h.difficulty):  # the scheme's front: ordinary use of the contract
            h.ordinary(rate=rate)
            continue
        if r.random() < h.softer(0.03, 0.8):
            cut = -h.balance * r.uniform(0.03, 0.1)
            h.add(h.deployer, "withdraw", delta=cut, internal=1, flag=1, rate=rate)
            continue
        if r.random() < 0.35 + 0.45 * growth or not owed:
            investor = h.user(0.2 * growth)
            v = h.ether(1 + growth)
            head = owed[0] if owed else None
            if variant == "doubler" and head and h.balance + v >= head[1]:
                if h.add(investor, "deposit", value=v, delta=v - head[1], internal=1, flag=1, rate=rate):
                    owed.pop(0)
                    owed.append((investor, v * promise))
            elif h.add(investor, "deposit", value=v, delta=v, rate=rate):
                owed.append((investor, v * promise))
        else:
            j = 0 if variant == "doubler" else r.randrange(len(owed))
            payee, amount = owed[j]
            if h.add(payee, r.choice(("withdraw", "claim")), delta=-amount, internal=1, flag=1, rate=rate):
                owed.pop(j)
    if variant == "owner_exit" and h.balance > 0:
        h.add(h.deployer, "withdraw", delta=-h.balance, internal=1, flag=1, success=True)


def hard_negative(h: _History, kind: str, whale: str | None) -> None:
    """A legitimate event shaped like an attack; nothing is flagged."""
    r = h.rng
    pull = "liquidity_remove" if h.profile.name == "exchange" else "withdraw"
    if kind == "whale_withdrawal" and whale and h.deposits.get(whale, 0) > 0:
        amount = min(h.deposits[whale], h.balance)
        calls = 1 if r.random() < 0.6 else r.randint(2, 5)  # a smart-contract wallet makes a few calls
        h.take(whale, h.profile.payout, amount, internal=calls, success=True)  # amount <= balance: succeeds
        h.deposits[whale] = 0.0
    elif kind == "owner_migration":
        h.add(h.deployer, "admin")  # pause
        for _ in range(r.randint(0, 3)):
            h.ordinary()
        h.add(h.deployer, "upgrade")
        h.take(h.deployer, pull, h.balance * r.uniform(0.8, 1.0), internal=1, success=True)
    elif kind == "yield_payouts":  # a strategy's profit comes back, depositors withdraw more than they put in
        profit = round(h.balance * r.uniform(0.2, 0.6), 6)
        h.add(r.choice(h.bots), "other", value=profit, delta=profit, internal=r.randint(2, 20), contract=True)
        for _ in range(r.randint(3, 10)):
            payee = h.depositor()
            if payee is None:
                break
            amount = min(h.deposits[payee] * r.uniform(1.05, 1.6), h.balance)
            if h.add(payee, r.choice(("withdraw", "claim")), delta=-amount, internal=1, rate=3.0):
                h.deposits[payee] = 0.0
            h.mingle()
    elif (
        kind == "failed_attack"
    ):  # somebody tries an exploit on a contract that is not vulnerable: it reverts
        attacker = _attacker(h)
        contract = r.random() < 0.5
        for _ in range(r.randint(1, 4)):
            method = r.choice((h.profile.payout, "flash_loan", "other"))
            h.add(attacker, method, internal=r.randint(2, 30), contract=contract, success=False, rate=20.0)
    elif kind == "arbitrage_burst":  # bots racing in a few blocks after a price move
        for i in range(r.randint(3, 8)):
            h.complex_call(rate=30.0, same_block=i > 0 and r.random() < 0.6)
    elif kind in TWINS:  # the anomaly's own moves, made legitimately
        anomaly = TWINS[kind]
        EVENTS[anomaly](h, r.choice(SCENARIOS[anomaly]), round(r.uniform(0.0, 1.0), 3), flag=0)
    elif kind == "router_sweep":  # a token listing: approvals, then a router moves the tokens as approved
        holders = [h.user(0.3) for _ in range(r.randint(6, 25))]
        for u in holders:
            h.add(u, "approve", tokens=1e12 if r.random() < 0.7 else h.tokens(), rate=2.0)
            h.mingle()
        router = r.choice(h.routers)
        for i, _ in enumerate(holders[: r.randint(len(holders) // 2, len(holders))]):
            if i:
                h.mingle()
            h.add(router, "transfer_from", tokens=h.tokens(3.0), internal=1, contract=True, rate=20.0)
    else:  # mint_burst: a popular drop, many new accounts within minutes
        method = "mint" if "mint" in h.profile.methods else "buy"
        for _ in range(r.randint(20, 60)):
            h.ordinary(rate=40.0, new_bias=0.8, method=method)


# --- a history from a corpus record -------------------------------------------------------------------------
def _rng(seed: int, contract_id: str) -> random.Random:
    digest = hashlib.sha256(f"txsim:{seed}:{contract_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def lookalike(rng: random.Random, profile: Profile, difficulty: float) -> str:
    """A look-alike kind for a normal history of ``profile``; above difficulty 0 the subtle ones join, each
    1 + 6·difficulty times as likely as an original one (they mirror the common anomalies)."""
    if not difficulty:
        return rng.choice(profile.hard_negatives)
    subtle = [k for k, anomaly in TWINS.items() if anomaly in EXPLOITS or anomaly in profile.fraud]
    weights = [1.0] * len(profile.hard_negatives) + [1 + 6 * difficulty] * len(subtle)
    return rng.choices([*profile.hard_negatives, *subtle], weights=weights)[0]


def choose_scenario(
    rng: random.Random, labels: Sequence[str], profile: Profile, cfg: SimConfig
) -> tuple[str, str, float]:
    """(class, variant, intensity): flaws make exploits plausible, frauds need none; look-alikes (more of them
    the harder)."""
    drain = flash = 0.0
    for lbl in labels:
        a, b = EXPLOIT_AFFINITY.get(lbl, _UNKNOWN_AFFINITY)
        drain, flash = drain + a, flash + b
    if profile.name == "exchange":
        flash *= 2.0
    elif profile.name in ("vault", "multisig"):
        drain *= 1.5
    p_attack = cfg.attack_rate * min(1.0, (drain + flash) / 2.0)
    if labels and rng.random() < p_attack:
        label = rng.choices(EXPLOITS, weights=(drain, flash))[0]
    elif profile.fraud and rng.random() < min(1.0, cfg.fraud_rate * profile.fraud_scale):
        label = rng.choices(list(profile.fraud), weights=list(profile.fraud.values()))[0]
    else:
        if rng.random() < cfg.hard_negative_rate + (1 - cfg.hard_negative_rate) * 0.8 * cfg.difficulty:
            return "normal", lookalike(rng, profile, cfg.difficulty), 1.0
        return "normal", "ordinary", 0.0
    return label, rng.choice(SCENARIOS[label]), round(rng.uniform(0.0, 1.0), 3)


def simulate_history(record: dict[str, Any], cfg: SimConfig) -> dict[str, Any]:
    """The transaction history of one corpus record (``id``, ``family``, ``labels``); deterministic."""
    rng = _rng(cfg.seed, record["id"])
    profile = profile_for(record.get("family"))
    label, variant, intensity = choose_scenario(rng, list(record.get("labels") or ()), profile, cfg)
    n = int(round(math.exp(rng.gauss(math.log(cfg.median_transactions), 0.7))))
    n = min(max(n, cfg.min_transactions), cfg.max_transactions)
    h = _History(rng, profile, cfg.failure_rate, cfg.difficulty, n)
    h.add(h.deployer, "deploy", success=True)
    for _ in range(rng.randint(0, 2)):
        h.add(h.deployer, "admin", success=True)
    if label == "ponzi_collapse":
        ponzi_collapse(h, variant, intensity, n)
    else:
        event_at = max(int(n * rng.uniform(0.4, 0.85)), 6)
        launch = int(n * rng.uniform(0.04, 0.15))
        airdrop = (
            int(n * rng.uniform(0.2, 0.6))
            if profile.token and rng.random() < 0.25 * (1 + cfg.difficulty)
            else -1
        )
        hype = int(event_at * rng.uniform(0.15, 0.3)) if label == "rug_pull" else 0
        whale_at = int(event_at * rng.uniform(0.2, 0.5)) if variant == "whale_withdrawal" else -1
        whale = None
        while len(h) < event_at:
            i = len(h)
            if i == whale_at:  # a whale deposits early and leaves at the event
                whale = h.user()
                v = h.ether(60.0) + 20.0
                h.add(whale, "deposit", value=v, delta=v, success=True)
                h.deposits[whale] = v
            elif airdrop <= i < airdrop + 15:  # an airdrop: new accounts claim free tokens
                h.add(h.user(0.9), "claim", tokens=h.tokens(), internal=0, rate=25.0)
            elif i < launch:
                h.ordinary(rate=6.0, new_bias=0.5)
            elif i >= event_at - hype:
                h.ordinary(rate=h.softer(4.0, 0.75), new_bias=h.softer(0.5, 1.0), scale=h.softer(2.5, 0.6))
            else:
                h.ordinary()
        if label in EVENTS:
            EVENTS[label](h, variant, intensity)
        elif variant != "ordinary":
            hard_negative(h, variant, whale)
        drained = TWINS.get(variant, label) in DRAINS and not h.chance(0.8 * cfg.difficulty)
        rest = n - len(h)
        if drained:  # activity dies down; holders rush to withdraw and find the contract empty
            rest = int(rest * rng.uniform(0.2, 0.6))
        for _ in range(max(rest, 0)):
            if drained and rng.random() < 0.5:
                h.ordinary(method=profile.payout, rate=0.5)
            else:
                h.ordinary(rate=0.5 if drained else 1.0)
    return {
        "contract_id": record["id"],
        "group": record.get("group") or record["id"],
        "family": record.get("family"),
        "vuln_labels": list(record.get("labels") or ()),
        "fold": int(record.get("fold", 0)),
        "label": label,
        "scenario": f"{label}/{variant}",
        "intensity": intensity,
        **h.cols,
    }


def simulate_histories(records: Sequence[dict[str, Any]], cfg: SimConfig) -> list[dict[str, Any]]:
    return [simulate_history(r, cfg) for r in records]


# --- the corpus it follows and the stored dataset -----------------------------------------------------------
def corpus_records(corpus_cfg: CorpusConfig) -> list[dict[str, Any]]:
    """The corpus's metadata (id, group, family, labels, fold) without compiling: the same generator call and
    fold assignment as ``corpus.build`` (``generate_with_folds``), so ids and folds match the built corpus."""
    contracts, folds = generate_with_folds(corpus_cfg)
    return [
        {"id": c.id, "group": c.group, "family": c.family, "labels": list(c.labels), "fold": folds[c.group]}
        for c in contracts
    ]


def _features():
    import datasets  # heavy import, see ``_build``

    seq = {k: datasets.Sequence(datasets.Value(v)) for k, v in TX_COLUMNS.items()}
    return datasets.Features(
        {
            "contract_id": datasets.Value("string"),
            "group": datasets.Value("string"),
            "family": datasets.Value("string"),
            "vuln_labels": datasets.Sequence(datasets.Value("string")),
            "fold": datasets.Value("int32"),
            "label": datasets.Value("string"),
            "scenario": datasets.Value("string"),
            "intensity": datasets.Value("float32"),
            **seq,
        }
    )


def histories_key(corpus_cfg: CorpusConfig, sim_cfg: SimConfig) -> str:
    """Hash of everything that decides the stored histories' content."""
    payload = {
        "corpus": corpus_cfg.content_fields(),
        "generator": GENERATOR_VERSION,
        "sim": sim_cfg.content_fields(),
        "simulator": SIMULATOR_VERSION,
        "format": BUILD_FORMAT,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def content_hash(histories: Sequence[dict[str, Any]]) -> str:
    """Data version: sha256 over every history's id, label and transaction columns, in order."""
    h = hashlib.sha256()
    for hist in histories:
        h.update(f"{hist['contract_id']}\t{hist['label']}\n".encode())
        for col in TX_COLUMNS:
            h.update(json.dumps(hist[col]).encode())
    return h.hexdigest()


def manifest_counts(histories: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "per_label": dict(sorted(Counter(x["label"] for x in histories).items())),
        "per_scenario": dict(sorted(Counter(x["scenario"] for x in histories).items())),
        "per_family": dict(sorted(Counter(str(x["family"]) for x in histories).items())),
        "per_fold": {str(k): v for k, v in sorted(Counter(x["fold"] for x in histories).items())},
        "transactions": sum(len(x["timestamp"]) for x in histories),
        "flagged_transactions": sum(sum(x["anomaly"]) for x in histories),
        "failed_transactions": sum(len(x["success"]) - sum(x["success"]) for x in histories),
    }


def build_histories(
    corpus_cfg: CorpusConfig, sim_cfg: SimConfig, data_dir: str | Path, force: bool = False
) -> Path:
    """Return ``data/behavior/<key>/``, simulating and storing the histories only when missing."""
    out = Path(data_dir) / "behavior" / histories_key(corpus_cfg, sim_cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):  # parallel sweep jobs wait for one build instead of racing
        if (out / "manifest.json").exists() and not force:
            log.info("Reusing transaction histories %s", out)
            return out
        return _build(corpus_cfg, sim_cfg, out)


def _build(corpus_cfg: CorpusConfig, sim_cfg: SimConfig, out: Path) -> Path:
    import datasets  # heavy (about a second to import): only building or reading histories pays for it

    start = time.perf_counter()
    histories = simulate_histories(corpus_records(corpus_cfg), sim_cfg)
    seconds = time.perf_counter() - start
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    datasets.disable_progress_bars()
    columns = {k: [h[k] for h in histories] for k in _features()}
    datasets.Dataset.from_dict(columns, features=_features()).save_to_disk(str(tmp / "dataset"))
    manifest = {
        "key": out.name,
        "simulator_version": SIMULATOR_VERSION,
        "generator_version": GENERATOR_VERSION,
        "corpus_config": corpus_cfg.content_fields(),
        "sim_config": dataclasses.asdict(sim_cfg),
        "n_records": len(histories),
        "content_hash": content_hash(histories),
        "counts": manifest_counts(histories),
        "build": {"seconds": round(time.perf_counter() - start, 2), "simulate_seconds": round(seconds, 2)},
    }
    write_json(tmp / "manifest.json", manifest)  # written last: a dir without it is never reused
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log.info("Simulated %d transaction histories in %.1f s: %s", len(histories), seconds, out)
    return out


def load_manifest(path: str | Path) -> dict[str, Any]:
    return json.loads((Path(path) / "manifest.json").read_text())


def load_histories(path: str | Path) -> list[dict[str, Any]]:
    """The stored histories as a list of dicts (columns as lists)."""
    import datasets  # heavy import, see ``_build``

    return datasets.load_from_disk(str(Path(path) / "dataset")).to_list()


__all__ = [
    "HARD_NEGATIVES",
    "SCENARIOS",
    "SIMULATOR_VERSION",
    "TX_COLUMNS",
    "TWINS",
    "SimConfig",
    "build_histories",
    "corpus_records",
    "load_histories",
    "profile_for",
    "simulate_history",
    "simulate_histories",
]

assert set(SCENARIOS) | {"normal"} == set(taxonomy.ANOMALY_TYPES)
assert set(BASE_GAS) == set(taxonomy.METHOD_CATEGORIES)
