"""Import transaction histories from block-explorer CSV exports (the Etherscan API layout).

Inputs (a file, or a folder whose ``*.csv`` files are read in name order):

* transactions (required): ``hash, blockNumber, timeStamp, from, to, value`` (wei), ``gas, gasUsed, isError``
  and ``input`` or ``methodId``; optional ``contractAddress`` (contract creation), ``txreceipt_status``.
* internal transactions (optional): ``hash, blockNumber, timeStamp, from, to, value`` and optional
  ``isError``: they give each transaction its internal-call count and the ether the contract sent or got
  through calls; a call into the contract inside somebody else's transaction becomes a row of its own,
  sent by role ``contract``.
* token transfers (optional): ``hash, from, to, value, contractAddress`` and optional ``tokenDecimal``: the
  token amount a transaction moved to, from or of the contract.
* labels (required): ``address, label`` and optional ``group``, ``family``, ``split`` (train/val/test) and
  ``flagged_tx`` (``;``-separated hashes of the anomalous transactions). Labels are taxonomy.ANOMALY_TYPES
  names or aliases from ``data.label_map``.

Rows are grouped by the labelled address they touch (``to``, ``contractAddress`` or ``from``). Bad rows are
never dropped silently; every rule below is counted per file and logged (``ImportReport``):

* non-numeric or negative numbers, malformed hashes or addresses: dropped (``on_bad_rows=error`` stops
  instead, naming the file and line);
* a row that touches no labelled address: dropped (an export may hold other addresses' transactions);
* a duplicate (the same hash for the same address; for internal rows the same hash, sender, receiver,
  value and trace): the first one is kept;
* rows out of order: the history is sorted by block, timestamp and file order (a fix, so always counted);
* a labelled address without any transaction: left out.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training_pipeline import taxonomy
from training_pipeline.errors import ConfigError, DataError

log = logging.getLogger(__name__)

# 4-byte selector -> method category; each selector is keccak256(signature)[:4] of the signature beside it.
_SELECTOR_TABLE: tuple[tuple[str, str, str], ...] = (
    ("0xa9059cbb", "transfer", "transfer(address,uint256)"),
    ("0x42842e0e", "transfer", "safeTransferFrom(address,address,uint256)"),  # ERC721, by the owner
    ("0xb88d4fde", "transfer", "safeTransferFrom(address,address,uint256,bytes)"),
    ("0x095ea7b3", "approve", "approve(address,uint256)"),
    ("0xa22cb465", "approve", "setApprovalForAll(address,bool)"),
    ("0x39509351", "approve", "increaseAllowance(address,uint256)"),
    ("0xd505accf", "approve", "permit(address,address,uint256,uint256,uint8,bytes32,bytes32)"),
    ("0x23b872dd", "transfer_from", "transferFrom(address,address,uint256)"),
    ("0xd0e30db0", "deposit", "deposit()"),
    ("0xb6b55f25", "deposit", "deposit(uint256)"),
    ("0x6e553f65", "deposit", "deposit(uint256,address)"),
    ("0x617ba037", "deposit", "supply(address,uint256,address,uint16)"),
    ("0xa694fc3a", "deposit", "stake(uint256)"),
    ("0xe8b5e51f", "deposit", "invest()"),
    ("0x2e1a7d4d", "withdraw", "withdraw(uint256)"),
    ("0x3ccfd60b", "withdraw", "withdraw()"),
    ("0x853828b6", "withdraw", "withdrawAll()"),
    ("0x5312ea8e", "withdraw", "emergencyWithdraw(uint256)"),
    ("0xb460af94", "withdraw", "withdraw(uint256,address,address)"),
    ("0xba087652", "withdraw", "redeem(uint256,address,address)"),
    ("0x2e17de78", "withdraw", "unstake(uint256)"),
    ("0xe9fad8ee", "withdraw", "exit()"),
    ("0x40c10f19", "mint", "mint(address,uint256)"),
    ("0xa0712d68", "mint", "mint(uint256)"),
    ("0x1249c58b", "mint", "mint()"),
    ("0x40d097c3", "mint", "safeMint(address)"),
    ("0x42966c68", "burn", "burn(uint256)"),
    ("0x79cc6790", "burn", "burnFrom(address,uint256)"),
    ("0x7ff36ab5", "swap", "swapExactETHForTokens(uint256,address[],address,uint256)"),
    ("0x18cbafe5", "swap", "swapExactTokensForETH(uint256,uint256,address[],address,uint256)"),
    ("0x38ed1739", "swap", "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)"),
    ("0xfb3bdb41", "swap", "swapETHForExactTokens(uint256,address[],address,uint256)"),
    ("0x8803dbee", "swap", "swapTokensForExactTokens(uint256,uint256,address[],address,uint256)"),
    ("0x791ac947", "swap", "swapExactTokensForETHSupportingFeeOnTransferTokens(...)"),
    ("0xb6f9de95", "swap", "swapExactETHForTokensSupportingFeeOnTransferTokens(...)"),
    ("0x5c11d795", "swap", "swapExactTokensForTokensSupportingFeeOnTransferTokens(...)"),
    (
        "0x414bf389",
        "swap",
        "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))",
    ),
    ("0xc04b8d59", "swap", "exactInput((bytes,address,uint256,uint256,uint256))"),
    ("0x3593564c", "swap", "execute(bytes,bytes[],uint256)"),  # Uniswap's universal router
    ("0x022c0d9f", "swap", "swap(uint256,uint256,address,bytes)"),  # a Uniswap V2 pair
    ("0xf305d719", "liquidity_add", "addLiquidityETH(address,uint256,uint256,uint256,address,uint256)"),
    (
        "0xe8e33700",
        "liquidity_add",
        "addLiquidity(address,address,uint256,uint256,uint256,uint256,address,uint256)",
    ),
    ("0x02751cec", "liquidity_remove", "removeLiquidityETH(address,uint256,uint256,uint256,address,uint256)"),
    (
        "0xbaa2abde",
        "liquidity_remove",
        "removeLiquidity(address,address,uint256,uint256,uint256,address,uint256)",
    ),
    ("0xded9382a", "liquidity_remove", "removeLiquidityETHWithPermit(...)"),
    ("0xaf2979eb", "liquidity_remove", "removeLiquidityETHSupportingFeeOnTransferTokens(...)"),
    ("0xab9c4b5d", "flash_loan", "flashLoan(address,address[],uint256[],uint256[],address,bytes,uint16)"),
    ("0x5cffe9de", "flash_loan", "flashLoan(address,address,uint256,bytes)"),  # ERC-3156
    ("0x490e6cbc", "flash_loan", "flash(address,uint256,uint256,bytes)"),  # Uniswap V3
    ("0x42b0b77c", "flash_loan", "flashLoanSimple(address,address,uint256,bytes,uint16)"),
    ("0xa415bcad", "flash_loan", "borrow(address,uint256,uint256,uint16,address)"),
    ("0x573ade81", "flash_loan", "repay(address,uint256,uint256,address)"),
    ("0x4e71d92d", "claim", "claim()"),
    ("0x3d18b912", "claim", "getReward()"),
    ("0x372500ab", "claim", "claimRewards()"),
    ("0x4641257d", "claim", "harvest()"),
    ("0x1998aeef", "bid", "bid()"),
    ("0xa6f2ae3a", "buy", "buy()"),
    ("0xec8ac4d8", "buy", "buyTokens(address)"),
    ("0xedca914c", "buy", "buyTicket()"),
    ("0xe97dcb62", "buy", "enter()"),
    ("0xf2fde38b", "admin", "transferOwnership(address)"),
    ("0x715018a6", "admin", "renounceOwnership()"),
    ("0x8456cb59", "admin", "pause()"),
    ("0x3f4ba83a", "admin", "unpause()"),
    ("0x69fe0e2d", "admin", "setFee(uint256)"),
    ("0xc6427474", "admin", "submitTransaction(address,uint256,bytes)"),  # multisig
    ("0xc01a8c84", "admin", "confirmTransaction(uint256)"),
    ("0xee22610b", "withdraw", "executeTransaction(uint256)"),  # a multisig paying out
    ("0x6a761202", "withdraw", "execTransaction(address,uint256,bytes,uint8,uint256,uint256,uint256,...)"),
    ("0x3659cfe6", "upgrade", "upgradeTo(address)"),
    ("0x4f1ef286", "upgrade", "upgradeToAndCall(address,bytes)"),
)
SELECTORS: dict[str, str] = {sel: cat for sel, cat, _ in _SELECTOR_TABLE}

# Aliases of common label sets -> taxonomy.ANOMALY_TYPES (data.label_map adds or overrides entries).
DEFAULT_LABEL_MAP: dict[str, str] = {
    "benign": "normal",
    "legit": "normal",
    "phishing": "phishing_drain",
    "phish": "phishing_drain",
    "ponzi": "ponzi_collapse",
    "ponzi_scheme": "ponzi_collapse",
    "rugpull": "rug_pull",
    "rug": "rug_pull",
    "exploit": "exploit_drain",
    "hack": "exploit_drain",
    "reentrancy": "exploit_drain",
    "flash_loan": "flash_loan_attack",
    "flashloan": "flash_loan_attack",
}
BAD_ROW_MODES = ("drop", "error")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")
_TX_REQUIRED = ("hash", "blockNumber", "timeStamp", "from", "to", "value", "gas", "gasUsed", "isError")
_INTERNAL_REQUIRED = ("hash", "blockNumber", "timeStamp", "from", "to", "value")
_TOKEN_REQUIRED = ("hash", "from", "to", "value", "contractAddress")
WEI = 1e18


def method_category(selector_or_input: str | None, creation: bool = False) -> str:
    """The method category of a call from its ``methodId`` or ``input``: ``deploy`` for a contract creation,
    ``plain_ether`` without calldata, ``other`` for a selector not in the table."""
    if creation:
        return "deploy"
    data = (selector_or_input or "").strip().lower()
    if data in ("", "0x", "0x0", "deprecated"):
        return "plain_ether"
    return SELECTORS.get(data[:10], "other")


@dataclass
class ImportReport:
    """Counts of what the importer dropped or fixed, per file and rule, with the first lines of each."""

    counts: Counter = field(default_factory=Counter)
    lines: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(list))
    histories: int = 0
    transactions: int = 0

    def add(self, file: str, rule: str, line: int | None = None) -> None:
        """Count one row of ``file`` that ``rule`` dropped or fixed (the first lines are kept)."""
        self.counts[(file, rule)] += 1
        if line is not None and len(self.lines[(file, rule)]) < 5:
            self.lines[(file, rule)].append(line)

    def total(self, rule: str) -> int:
        """Rows dropped or fixed by ``rule`` in every file."""
        return sum(n for (_, r), n in self.counts.items() if r == rule)

    def summary(self) -> str:
        """One line: count (and first lines) per file and rule."""
        if not self.counts:
            return "no bad rows"
        parts = []
        for (file, rule), n in sorted(self.counts.items()):
            at = self.lines.get((file, rule))
            more = ", ..." if at and n > len(at) else ""
            parts.append(f"{file}: {n} {rule}" + (f" (line {', '.join(map(str, at))}{more})" if at else ""))
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """Counts as JSON (the run's import report)."""
        return {
            "histories": self.histories,
            "transactions": self.transactions,
            "counts": {f"{file}:{rule}": n for (file, rule), n in sorted(self.counts.items())},
        }


class _BadRow(ValueError):
    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule


def _files(path: str | Path, what: str) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.csv"))
        if not files:
            raise DataError(f"{p}: no *.csv files in this folder ({what})")
        return files
    if not p.is_file():
        raise DataError(f"{p}: no such file ({what})")
    return [p]


def _rows(path: Path, required: Sequence[str], any_of: Sequence[str] = ()) -> Iterator[tuple[int, dict]]:
    """(line number, row) of a CSV file whose header must hold ``required`` (and one of ``any_of``)."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        missing = [c for c in required if c not in header]
        if any_of and not any(c in header for c in any_of):
            missing.append(" or ".join(any_of))
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; header is {header}")
        for row in reader:
            yield reader.line_num, {k: (v or "").strip() for k, v in row.items() if k is not None}


def _int(row: dict, col: str) -> int:
    text = row.get(col, "")
    if not text.isdigit():
        raise _BadRow("non_numeric", f"{col}={text!r} is not a non-negative integer")
    return int(text)


def _address(row: dict, col: str, optional: bool = False) -> str:
    text = row.get(col, "").lower()
    if optional and not text:
        return ""
    if not _ADDRESS.match(text):
        raise _BadRow("malformed", f"{col}={text!r} is not a 0x-address")
    return text


def _hash(row: dict) -> str:
    text = row.get("hash", "").lower()
    if not _HASH.match(text):
        raise _BadRow("malformed", f"hash={text!r} is not a 0x-prefixed 32-byte hash")
    return text


def read_labels(path: str | Path, label_map: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """address -> {label, group, family, split, flagged}; an unknown label or a conflict is a DataError."""
    aliases = {**DEFAULT_LABEL_MAP, **{k.lower(): v for k, v in (label_map or {}).items()}}
    bad = sorted({v for v in aliases.values() if v not in taxonomy.ANOMALY_TYPES})
    if bad:
        raise ConfigError(
            f"data.label_map: unknown target(s) {bad}; expected some of {taxonomy.ANOMALY_TYPES}"
        )
    out: dict[str, dict[str, Any]] = {}
    for file in _files(path, "data.labels_path"):
        for line, row in _rows(file, ("address", "label")):
            where = f"{file}:{line}"
            try:
                address = _address(row, "address")
            except _BadRow as exc:
                raise DataError(f"{where}: {exc}") from None
            raw = row["label"].lower().replace("-", "_").replace(" ", "_")
            label = raw if raw in taxonomy.ANOMALY_TYPES else aliases.get(raw)
            if label is None:
                raise DataError(
                    f"{where}: unknown label {row['label']!r}; expected one of "
                    f"{', '.join(taxonomy.ANOMALY_TYPES)} or an alias in data.label_map"
                )
            split = row.get("split") or None
            if split not in (None, "train", "val", "test"):
                raise DataError(f"{where}: split={split!r}; expected train, val or test")
            flagged = {h.strip().lower() for h in (row.get("flagged_tx") or "").split(";") if h.strip()}
            entry = {
                "label": label,
                "group": row.get("group") or address,
                "family": row.get("family") or None,
                "split": split,
                "flagged": flagged if "flagged_tx" in row and (flagged or label == "normal") else None,
            }
            if address in out and out[address]["label"] != label:
                raise DataError(f"{where}: {address} is labelled {out[address]['label']!r} and {label!r}")
            out[address] = entry
    if not out:
        raise DataError(f"{path}: no labelled addresses (data.labels_path)")
    return out


def check_bad_row_mode(on_bad_rows: str) -> None:
    """``data.on_bad_rows`` must be ``drop`` or ``error``."""
    if on_bad_rows not in BAD_ROW_MODES:
        raise ConfigError(f"data.on_bad_rows={on_bad_rows!r}: expected one of {BAD_ROW_MODES}")


def import_histories(
    path: str | Path,
    labels_path: str | Path,
    internal_path: str | Path | None = None,
    token_path: str | Path | None = None,
    label_map: Mapping[str, str] | None = None,
    on_bad_rows: str = "drop",
) -> tuple[list[dict[str, Any]], ImportReport]:
    """Histories (the simulator's record layout, plus ``hash`` per row) and what was dropped or fixed."""
    check_bad_row_mode(on_bad_rows)
    histories, report = collect_histories(
        path, read_labels(labels_path, label_map), internal_path, token_path, on_bad_rows
    )
    if not histories:
        raise DataError(f"{path}: no transactions of any labelled address (data.path, data.labels_path)")
    return histories, report


def import_history(
    path: str | Path,
    address: str,
    internal_path: str | Path | None = None,
    token_path: str | Path | None = None,
    on_bad_rows: str = "drop",
) -> dict[str, Any]:
    """The history of one unlabelled address (to score it): its transactions in an export, labelled normal."""
    check_bad_row_mode(on_bad_rows)
    address = address.lower()
    if not _ADDRESS.match(address):
        raise DataError(f"{path}: address {address!r} is not a 0x-address")
    info = {"label": "normal", "group": address, "family": None, "split": None, "flagged": None}
    histories, _ = collect_histories(path, {address: info}, internal_path, token_path, on_bad_rows)
    if not histories:
        raise DataError(f"{path}: no transactions of {address}")
    return histories[0]


def collect_histories(
    path: str | Path,
    labels: Mapping[str, dict[str, Any]],
    internal_path: str | Path | None = None,
    token_path: str | Path | None = None,
    on_bad_rows: str = "drop",
) -> tuple[list[dict[str, Any]], ImportReport]:
    """The histories of the addresses in ``labels`` (as ``read_labels`` returns them) found in the exports."""
    report = ImportReport()

    def bad(file: Path, line: int, exc: _BadRow) -> None:
        if on_bad_rows == "error":
            raise DataError(f"{file}:{line}: {exc}")
        report.add(file.name, exc.rule, line)

    # internal transactions: per hash, the calls and the ether into or out of each labelled address
    calls: Counter = Counter()
    flows: dict[tuple[str, str], float] = defaultdict(float)
    callers: dict[
        tuple[str, str], dict[str, Any]
    ] = {}  # calls into an address from inside other transactions
    if internal_path is not None:
        seen: set[tuple] = set()
        for file in _files(internal_path, "data.internal_path"):
            for line, row in _rows(file, _INTERNAL_REQUIRED):
                try:
                    h, frm, to = _hash(row), _address(row, "from"), _address(row, "to", optional=True)
                    block, ts, value = _int(row, "blockNumber"), _int(row, "timeStamp"), _int(row, "value")
                    failed = row.get("isError", "0") not in ("", "0")
                except _BadRow as exc:
                    bad(file, line, exc)
                    continue
                key = (h, frm, to, value, row.get("traceId", ""))
                if key in seen:
                    report.add(file.name, "duplicate", line)
                    continue
                seen.add(key)
                if frm not in labels and to not in labels:
                    report.add(file.name, "unknown_address")
                    continue
                calls[h] += 1
                eth = 0.0 if failed else value / WEI
                for subject, sign in ((to, 1.0), (frm, -1.0)):
                    if subject in labels:
                        flows[(h, subject)] += sign * eth
                for subject, other in ((to, frm), (frm, to)):
                    if subject in labels and (h, subject) not in callers:
                        callers[(h, subject)] = {"block": block, "timestamp": ts, "from": other}

    tokens: dict[tuple[str, str], float] = defaultdict(float)
    if token_path is not None:
        seen_tok: set[tuple] = set()
        for file in _files(token_path, "data.token_path"):
            for line, row in _rows(file, _TOKEN_REQUIRED):
                try:
                    h, frm, to = _hash(row), _address(row, "from"), _address(row, "to")
                    token = _address(row, "contractAddress")
                    amount = _int(row, "value") / 10 ** min(
                        _int(row, "tokenDecimal") if row.get("tokenDecimal") else 0, 36
                    )
                except _BadRow as exc:
                    bad(file, line, exc)
                    continue
                key = (h, frm, to, token, row["value"], row.get("logIndex", ""))
                if key in seen_tok:
                    report.add(file.name, "duplicate", line)
                    continue
                seen_tok.add(key)
                touched = {a for a in (frm, to, token) if a in labels}
                if not touched:
                    report.add(file.name, "unknown_address")
                for subject in touched:
                    tokens[(h, subject)] += amount

    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    seen_tx: set[tuple[str, str]] = set()
    order = 0
    for file in _files(path, "data.path"):
        for line, row in _rows(file, _TX_REQUIRED, any_of=("input", "methodId")):
            try:
                h, frm = _hash(row), _address(row, "from")
                to = _address(row, "to", optional=True)
                created = _address(row, "contractAddress", optional=True)
                block, ts = _int(row, "blockNumber"), _int(row, "timeStamp")
                value, gas_used = _int(row, "value"), _int(row, "gasUsed")
                _int(row, "gas")
                is_error = _int(row, "isError")
            except _BadRow as exc:
                bad(file, line, exc)
                continue
            success = is_error == 0 and row.get("txreceipt_status", "1") != "0"
            creation = not to and bool(created)
            subjects = [a for a in dict.fromkeys((to, created, frm)) if a and a in labels]
            if not subjects:
                report.add(file.name, "unknown_address")
                continue
            for subject in subjects:
                if (h, subject) in seen_tx:
                    report.add(file.name, "duplicate", line)
                    continue
                seen_tx.add((h, subject))
                eth = value / WEI
                delta = (eth if to == subject else 0.0) - (eth if frm == subject else 0.0)
                rows[subject].append(
                    {
                        "order": order,
                        "hash": h,
                        "timestamp": ts,
                        "block": block,
                        "sender": frm,
                        "contract_caller": False,
                        "method": method_category(
                            row.get("methodId") or row.get("input"), creation and created == subject
                        ),
                        "value": eth,
                        "gas_used": gas_used,
                        "success": int(success),
                        "internal_calls": calls.get(h, 0),
                        "balance_delta": (delta + flows.get((h, subject), 0.0)) if success else 0.0,
                        "token_amount": tokens.get((h, subject), 0.0) if success else 0.0,
                    }
                )
                order += 1
    for (h, subject), call in callers.items():
        if (h, subject) in seen_tx:
            continue
        rows[subject].append(
            {
                "order": order,
                "hash": h,
                "timestamp": call["timestamp"],
                "block": call["block"],
                "sender": call["from"],
                "contract_caller": True,
                "method": "other",
                "value": max(flows.get((h, subject), 0.0), 0.0),
                "gas_used": 0,
                "success": 1,
                "internal_calls": calls.get(h, 0),
                "balance_delta": flows.get((h, subject), 0.0),
                "token_amount": tokens.get((h, subject), 0.0),
            }
        )
        order += 1

    histories = []
    for address, info in labels.items():
        txs = rows.get(address)
        if not txs:
            report.add("labels", "address_without_transactions")
            continue
        histories.append(_history(address, info, txs, report))
    report.histories = len(histories)
    report.transactions = sum(len(h["hash"]) for h in histories)
    if report.counts:
        log.warning("Transaction import: %s", report.summary())
    return histories, report


def _history(
    address: str, info: dict[str, Any], txs: list[dict[str, Any]], report: ImportReport
) -> dict[str, Any]:
    """Sort one address's rows (counting the ones out of order), then derive roles and flags."""
    listed = [t for t in txs if not t["contract_caller"]]  # the export's rows, in file order
    pairs = zip(listed, listed[1:], strict=False)
    unsorted = sum(1 for a, b in pairs if (b["block"], b["timestamp"]) < (a["block"], a["timestamp"]))
    if unsorted:
        report.counts[("transactions", "out_of_order_sorted")] += unsorted
    txs = sorted(txs, key=lambda t: (t["block"], t["timestamp"], t["order"]))
    for a, b in zip(txs, txs[1:], strict=False):
        if b["timestamp"] < a["timestamp"]:  # a later block cannot be older: keep the previous timestamp
            b["timestamp"] = a["timestamp"]
            report.counts[("transactions", "timestamp_before_previous_block_clamped")] += 1
    creator = next((t["sender"] for t in txs if t["method"] == "deploy"), None)
    seen: set[str] = set()
    roles = []
    for t in txs:
        if t["contract_caller"]:
            roles.append("contract")
        elif t["sender"] in (creator, address):
            roles.append("deployer")  # the contract's deployer, or the account itself for an account history
        else:
            roles.append("returning_account" if t["sender"] in seen else "new_account")
        seen.add(t["sender"])
    flagged = info["flagged"]
    if info["label"] == "normal":
        anomaly = [0] * len(txs)
    elif flagged is None:
        anomaly = [-1] * len(txs)  # unknown: left out of the per-transaction loss and metrics
    else:
        anomaly = [int(t["hash"] in flagged) for t in txs]
    return {
        "contract_id": address,
        "group": info["group"],
        "family": info["family"],
        "vuln_labels": [],
        "label": info["label"],
        "scenario": info["label"],
        "split": info["split"],
        "hash": [t["hash"] for t in txs],
        "timestamp": [t["timestamp"] for t in txs],
        "block": [t["block"] for t in txs],
        "sender": [t["sender"] for t in txs],
        "sender_role": roles,
        "method": [t["method"] for t in txs],
        "value": [t["value"] for t in txs],
        "gas_used": [t["gas_used"] for t in txs],
        "success": [t["success"] for t in txs],
        "internal_calls": [t["internal_calls"] for t in txs],
        "balance_delta": [t["balance_delta"] for t in txs],
        "token_amount": [t["token_amount"] for t in txs],
        "anomaly": anomaly,
    }


def files_version(*paths: str | Path | None) -> str:
    """Data version of imported files: sha256 over their bytes, in order."""
    h = hashlib.sha256()
    for p in paths:
        if p is None:
            continue
        for file in _files(p, "data"):
            h.update(file.name.encode() + b"\0" + file.read_bytes())
    return "sha256:" + h.hexdigest()
