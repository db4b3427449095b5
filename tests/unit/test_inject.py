"""``data.inject``: generated contracts compiled into real host contracts (SolidiFI's construction, at the
source level): names made unique, the host inheriting the guest, real solc output, training rows only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import file_bytecode_module

from training_pipeline.corpus.imports import SourceSetJob, compile_source_sets
from training_pipeline.data.inject import InjectConfig, InjectStats, guest_units, inject, inject_records
from training_pipeline.errors import ConfigError

GUEST = """\
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @dev checked arithmetic, the old way
library SafeMath {
    function add(uint256 a, uint256 b) internal pure returns (uint256) {
        return a + b;
    }
}

contract Bank {
    using SafeMath for uint256;

    address public owner;
    mapping(address => uint256) public balances;
    uint256 public constant MAGIC = 0xdeadbeefcafe;

    struct Entry {
        address who;
        uint256 amount;
    }

    event Transfer(address indexed to, uint256 amount);

    constructor(address admin) {
        owner = admin;
    }

    modifier onlyOwner() {
        require(msg.sender == owner, "owner");
        _;
    }

    function deposit() public payable {
        balances[msg.sender] = balances[msg.sender].add(msg.value + MAGIC - MAGIC);
    }

    function withdraw() public {
        uint256 amount = balances[msg.sender];
        (bool ok, ) = msg.sender.call{value: amount}("");  // the reentrancy: call before the write
        require(ok);
        balances[msg.sender] = 0;
        emit Transfer(msg.sender, amount);
    }

    function sweep(address payable to) public onlyOwner {
        to.transfer(address(this).balance);
    }
}
"""

HOST = """\
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import "./Base.sol";

/// @title the host: its names are the guest's names
contract Vault is Base {
    address public owner;
    event Transfer(address indexed to, uint256 amount);

    modifier onlyOwner() {
        require(msg.sender == owner);
        _;
    }

    function withdraw() public onlyOwner {
        emit Transfer(msg.sender, 0);
    }
}
"""

BASE = """\
pragma solidity ^0.8.20;

contract Base {
    function version() public pure returns (uint256) {
        return 1;
    }
}
"""


def test_the_guest_loses_comments_and_pragmas_and_its_names_take_the_suffix() -> None:
    text, main = guest_units(GUEST, "Bank", "_x1")
    assert main == "Bank_x1"
    assert "pragma" not in text and "SPDX" not in text and "//" not in text and "@dev" not in text
    for name in (
        "SafeMath",
        "owner",
        "balances",
        "MAGIC",
        "Entry",
        "Transfer",
        "onlyOwner",
        "deposit",
        "withdraw",
    ):
        assert f"{name}_x1" in text, name
    assert "balances_x1[msg.sender].add_x1(" in text  # a library function reached through '.'
    assert "using SafeMath_x1 for uint256" in text
    # what Solidity owns keeps its name: members of msg and address, and struct fields
    assert "msg.sender.call{value: amount}" in text and "to.transfer(address(this).balance)" in text
    assert "address who;" in text
    assert "constructor" not in text and "admin" not in text  # a constructor the host could not call


def test_a_constructor_without_parameters_stays() -> None:
    source = GUEST.replace(
        "constructor(address admin) {\n        owner = admin;", "constructor() {\n        owner = msg.sender;"
    )
    text, _ = guest_units(source, "Bank", "_x1")
    assert "constructor() {" in text and "owner_x1 = msg.sender;" in text


def test_a_missing_main_contract_gives_none() -> None:
    assert guest_units(GUEST, "Vault", "_x1") is None
    assert inject(HOST, "Bank", "library L {}\n", "L") is None


def test_the_host_inherits_the_guest_placed_after_its_imports() -> None:
    text, main = guest_units(GUEST, "Bank", "_x1")
    out = inject(HOST, "Vault", text, main)
    assert "contract Vault is Base, Bank_x1 {" in out
    assert out.index('import "./Base.sol";') < out.index("library SafeMath_x1") < out.index("contract Vault")
    assert out.startswith("// SPDX-License-Identifier: MIT\npragma solidity ^0.8.20;")
    plain = inject(HOST.replace(" is Base", ""), "Vault", text, main)
    assert "contract Vault is Bank_x1 {" in plain


def host_record(**kw) -> dict:
    return {
        "id": "host-1",
        "origin": "h",
        "group": "h:host-1",
        "contract_name": "Vault",
        "compiler_version": "0.8.26",
        "source_code": HOST.replace('import "./Base.sol";\n', BASE.split("\n", 1)[1]),
        "bytecode": "0x00",
        "labels": [],
        **kw,
    }


def guest_record(**kw) -> dict:
    return {
        "id": "gen-1",
        "origin": "g",
        "group": "g:gen-1",
        "contract_name": "Bank",
        "compiler_version": "0.8.26",
        "source_code": GUEST,
        "bytecode": "0x00",
        "labels": ["reentrancy"],
        "family": "vault",
        **kw,
    }


VARIANTS = [{"optimize": False}, {"optimize": True, "runs": 200}]
CFG = InjectConfig(enabled=True, guests=["g"], hosts=["h"], n_workers=1)


def test_a_pair_compiles_into_the_hosts_contract_with_the_guests_labels(tmp_path: Path) -> None:
    stats = InjectStats()
    (row,) = inject_records([host_record(), guest_record()], CFG, tmp_path, VARIANTS, stats=stats)
    assert stats.kept == 1 and stats.failed == 0
    assert (
        row["id"] == "gen-1@host-1" and row["injected_into"] == "host-1" and row["augmented_from"] == "gen-1"
    )
    assert row["labels"] == ["reentrancy"] and row["group"] == "h:host-1" and row["origin"] == "g"
    assert (
        set(row["bytecode_variants"]) == {"o0", "o1-r200"}
        and row["bytecode"] == row["bytecode_variants"]["o0"]
    )
    assert "contract Vault is Base, Bank_" in row["source_code"]
    alone = compile_source_sets(
        [SourceSetJob({"h.sol": host_record()["source_code"]}, "h.sol", "0.8.26")],
        n_workers=1,
        cache_dir=tmp_path / "solc_cache",
    )[0].contracts["Vault"]
    assert "deadbeefcafe" in row["bytecode"] and "deadbeefcafe" not in alone  # the guest's code is in it
    assert len(row["bytecode"]) > len(alone) + 200


def test_pairs_that_cannot_be_made_are_counted_not_raised(tmp_path: Path) -> None:
    receive = "    receive() external payable {}\n}\n"
    host = host_record(source_code=host_record()["source_code"].rstrip().rstrip("}") + receive)
    guest = guest_record(source_code=GUEST.rstrip().rstrip("}") + receive)
    old = guest_record(id="gen-2", compiler_version="0.4.26")  # no host of its era
    stats = InjectStats()
    assert inject_records([host, guest, old], CFG, tmp_path, VARIANTS[:1], stats=stats) == []
    assert stats.attempted == 1 and stats.failed == 1  # two receive functions: solc refuses
    stats = InjectStats()
    assert (
        inject_records([host_record(compiler_version="0.5.17"), guest], CFG, tmp_path, VARIANTS, stats=stats)
        == []
    )
    assert stats.no_guest == 1 and stats.attempted == 0


SIMPLE = """\
pragma solidity ^0.8.0;

contract Bank{i} {{
    mapping(address => uint256) public balances;

    function withdraw() public {{
        (bool ok, ) = msg.sender.call{{value: balances[msg.sender] + {i}}}("");
        require(ok);
        balances[msg.sender] = 0;
    }}
}}
"""


def write_records(path: Path) -> Path:
    rows = []
    for i in range(12):
        source = SIMPLE.format(i=i)
        rows.append(
            {
                "id": f"c{i}",
                "contract_name": f"Bank{i}",
                "compiler_version": "0.8.26",
                "source_code": source,
                "bytecode": "0x" + "6001" * (i + 1) + "00",
                "labels": ["reentrancy"] if i % 2 else [],
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_datamodule_adds_injected_rows_to_training_only(tmp_path: Path) -> None:
    records = write_records(tmp_path / "c.jsonl")
    plain = file_bytecode_module(tmp_path / "a", records)
    injected = file_bytecode_module(
        tmp_path / "b",
        records,
        inject={"enabled": True, "guests": ["file"], "hosts": ["file"], "n_workers": 1},
    )
    n_train = plain.split_of.count("train")
    assert injected.split_of.count("train") == 2 * n_train  # one guest per host training contract
    for split in ("val", "test"):
        assert injected.split_of.count(split) == plain.split_of.count(split)
    extra = [
        (r, s) for r, s in zip(injected.records, injected.split_of, strict=True) if r.get("injected_into")
    ]
    assert len(extra) == n_train and {s for _, s in extra} == {"train"}
    extra = [r for r, _ in extra]
    trained = {r["id"] for r, s in zip(plain.records, plain.split_of, strict=True) if s == "train"}
    assert {r["injected_into"] for r in extra} == trained and {r["augmented_from"] for r in extra} <= trained
    assert len(injected.splits["train"]) == 2 * len(plain.splits["train"])


@pytest.mark.parametrize(
    "block, match",
    [
        ({"enabled": True, "hosts": ["real_code"]}, r"data.inject.hosts: \['real_code'\] are not among"),
        ({"enabled": True, "guests": "file"}, r"data.inject.guests='file': expected a non-empty list"),
        ({"enabled": True, "per_host": 0}, r"data.inject.per_host=0: expected a whole number"),
        ({"enabled": True, "per_hosts": 2}, "per_hosts"),
    ],
)
def test_bad_inject_config_is_one_clear_error(tmp_path: Path, block: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        file_bytecode_module(
            tmp_path, write_records(tmp_path / "c.jsonl"), inject={"guests": ["file"], **block}
        )
