"""The scanner on real projects: exact pragmas (releases beyond the bundled ones, from the compiler cache),
imports (relative, node_modules, Foundry remappings and lib/), folders (tests, mocks, lib/ skipped; every
deployable contract; interfaces, libraries, abstract and base contracts listed), one error line per bad file,
and each file compiled once, then served from the compile cache.

No network: the compiler cache is a temporary folder; a "cached release" 0.4.24 / 0.5.16 is the bundled
0.4.26 / 0.5.17 package under another version (as in test_solc_resolver), and since an exact pragma refuses
another compiler, a spy on the compile rewrites ``pragma solidity 0.4.24`` to ``^0.4.24`` on the way in.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import tiny_detector

from training_pipeline.corpus import imports as corpus_imports
from training_pipeline.corpus.solc_resolver import SOLC_CACHE_ENV
from training_pipeline.scan import cli, project
from training_pipeline.scan.inputs import collect_inputs, read_inputs
from training_pipeline.scan.models import BaseView
from training_pipeline.scan.scanner import Scanner

SOLC_DIR = Path(__file__).resolve().parents[2] / "scripts" / "solc"


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def fake_release(cache: Path, version: str, bundled: str) -> None:
    """``<cache>/<version>/node_modules/solc``: the bundled package's files under another version."""
    src = SOLC_DIR / "node_modules" / bundled
    pkg = cache / version / "node_modules" / "solc"
    pkg.mkdir(parents=True)
    for entry in src.iterdir():
        if entry.name != "package.json":
            (pkg / entry.name).symlink_to(entry)
    meta = json.loads((src / "package.json").read_text())
    (pkg / "package.json").write_text(json.dumps({**meta, "version": version}))


@pytest.fixture
def solc_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty compiler cache (offline, from conftest) and the compile cache under tmp_path."""
    cache = tmp_path / "solc-cache"
    cache.mkdir()
    monkeypatch.setenv(SOLC_CACHE_ENV, str(cache))
    monkeypatch.chdir(tmp_path)  # data/solc_cache (the compile cache) goes here
    return cache


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[list[corpus_imports.SourceSetJob]]:
    """Every compile pass's jobs; exact pragmas are loosened to a caret so a stand-in release compiles."""
    calls: list[list[corpus_imports.SourceSetJob]] = []
    real = corpus_imports.compile_fresh_source_sets  # what reaches solc: cache hits are answered before it

    def spy(jobs, resolver, n_workers, timeout_s, progress):
        calls.append(list(jobs))
        loose = [
            replace(
                j,
                sources={
                    u: re.sub(r"pragma solidity =?(\d)", r"pragma solidity ^\1", t)
                    for u, t in j.sources.items()
                },
            )
            for j in jobs
        ]
        return real(loose, resolver, n_workers, timeout_s, progress)

    monkeypatch.setattr(corpus_imports, "compile_fresh_source_sets", spy)
    return calls


TOKEN_04 = """pragma solidity 0.4.24;
contract Token {
    mapping(address => uint256) public balanceOf;
    function transfer(address to, uint256 v) public { balanceOf[msg.sender] -= v; balanceOf[to] += v; }
}
"""


def test_exact_pragma_offline_names_the_release_and_the_install_command(
    solc_cache: Path, tmp_path: Path
) -> None:
    sol = write(tmp_path / "p", {"Token.sol": TOKEN_04}) / "Token.sol"
    found = collect_inputs([str(sol)])
    assert found.items == [] and len(found.errors) == 1
    (error,) = found.errors
    assert error.startswith(f"{sol}: solc 0.4.24 (for pragma solidity 0.4.24) is not installed")
    assert f"npm install --prefix {solc_cache / '0.4.24'} --no-audit --no-fund solc@0.4.24" in error


def test_exact_pragma_uses_that_release_from_the_cache(solc_cache: Path, tmp_path: Path, compiles) -> None:
    fake_release(solc_cache, "0.4.24", "solc-0426")
    sol = write(tmp_path / "p", {"Token.sol": TOKEN_04}) / "Token.sol"
    (item,) = read_inputs([str(sol)])
    assert item.name == f"{sol}:Token" and item.compiler == "0.4.24"
    assert item.bytecode.startswith("0x60") and item.source_code == TOKEN_04
    assert [j.version for j in compiles[0]] == ["0.4.24"]


UNISWAP = {
    "package.json": "{}",
    "contracts/interfaces/IUniswapV2Pair.sol": "pragma solidity >=0.5.0;\ninterface IUniswapV2Pair {\n"
    "    function mint(address to) external returns (uint liquidity);\n}\n",
    "contracts/libraries/Math.sol": "pragma solidity =0.5.16;\nlibrary Math {\n"
    "    function min(uint x, uint y) internal pure returns (uint z) { z = x < y ? x : y; }\n}\n",
    "contracts/UniswapV2ERC20.sol": "pragma solidity =0.5.16;\ncontract UniswapV2ERC20 {\n"
    "    uint public totalSupply;\n    mapping(address => uint) public balanceOf;\n}\n",
    "contracts/UniswapV2Pair.sol": 'pragma solidity =0.5.16;\nimport "./interfaces/IUniswapV2Pair.sol";\n'
    'import "./UniswapV2ERC20.sol";\nimport "./libraries/Math.sol";\n'
    "contract UniswapV2Pair is IUniswapV2Pair, UniswapV2ERC20 {\n"
    "    function mint(address to) external returns (uint liquidity) {\n"
    "        liquidity = Math.min(balanceOf[to], totalSupply);\n    }\n}\n",
}


def test_exact_pragma_with_relative_imports(solc_cache: Path, tmp_path: Path, compiles) -> None:
    fake_release(solc_cache, "0.5.16", "solc-0517")
    root = write(tmp_path / "v2-core", UNISWAP)
    found = collect_inputs([str(root / "contracts")])
    assert not found.errors
    names = {i.name: i for i in found.items}
    assert set(names) == {
        f"{root}/contracts/UniswapV2Pair.sol:UniswapV2Pair",
        f"{root}/contracts/UniswapV2ERC20.sol:UniswapV2ERC20",
    }
    assert {i.compiler for i in found.items} == {"0.5.16"}
    assert sorted(found.skipped) == [
        f"{root}/contracts/interfaces/IUniswapV2Pair.sol:IUniswapV2Pair (interface)",
        f"{root}/contracts/libraries/Math.sol:Math (library)",
    ]
    # one compile pass, each file compiled once, with every file it imports under its root-relative name
    (jobs,) = compiles
    assert sorted(j.entry for j in jobs) == ["contracts/UniswapV2ERC20.sol", "contracts/UniswapV2Pair.sol"]
    pair = next(j for j in jobs if j.entry == "contracts/UniswapV2Pair.sol")
    assert set(pair.sources) == {
        "contracts/UniswapV2Pair.sol",
        "contracts/UniswapV2ERC20.sol",
        "contracts/interfaces/IUniswapV2Pair.sol",
        "contracts/libraries/Math.sol",
    }
    # the same scan again: served from the compile cache, nothing compiled
    again = collect_inputs([str(root / "contracts")])
    assert len(compiles) == 1 and [i.bytecode for i in again.items] == [i.bytecode for i in found.items]


OWNABLE = {
    "node_modules/@openzeppelin/contracts/utils/Context.sol": "pragma solidity ^0.8.20;\n"
    "abstract contract Context {\n"
    "    function _msgSender() internal view virtual returns (address) { return msg.sender; }\n}\n",
    "node_modules/@openzeppelin/contracts/access/Ownable.sol": "pragma solidity ^0.8.20;\n"
    'import "../utils/Context.sol";\n'
    "abstract contract Ownable is Context {\n    address public owner;\n"
    "    constructor() { owner = _msgSender(); }\n"
    "    modifier onlyOwner() { require(owner == _msgSender(), 'owner'); _; }\n}\n",
}


def test_node_modules_package_import(solc_cache: Path, tmp_path: Path, compiles) -> None:
    root = write(
        tmp_path / "hardhat",
        {
            **OWNABLE,
            "package.json": "{}",
            "hardhat.config.js": "module.exports = {};\n",
            "contracts/Vault.sol": "pragma solidity ^0.8.20;\n"
            'import "@openzeppelin/contracts/access/Ownable.sol";\n'
            "contract Vault is Ownable {\n"
            "    function sweep() external onlyOwner {\n"
            "        payable(owner).transfer(address(this).balance);\n    }\n}\n",
            "contracts/mocks/VaultMock.sol": "pragma solidity ^0.8.20;\ncontract VaultMock {}\n",
            "test/Vault.t.sol": "pragma solidity ^0.8.20;\ncontract VaultTest {}\n",
        },
    )
    found = collect_inputs([str(root)])  # node_modules, mocks and test/ are not scanned
    assert not found.errors
    (item,) = found.items
    assert item.name == f"{root}/contracts/Vault.sol:Vault" and item.bytecode.startswith("0x60")
    assert item.compiler == "0.8.26"  # newest 0.8 known is not cached offline: the newest bundled match
    assert any(n.endswith("is not installed (offline): compiled with 0.8.26") for n in item.notes)
    (job,) = compiles[0]
    assert set(job.sources) == {
        "contracts/Vault.sol",
        "@openzeppelin/contracts/access/Ownable.sol",
        "@openzeppelin/contracts/utils/Context.sol",
    }


def test_foundry_remappings_and_lib(solc_cache: Path, tmp_path: Path, compiles) -> None:
    ownable = {
        k.replace("node_modules/@openzeppelin/contracts", "lib/openzeppelin-contracts/contracts"): v
        for k, v in OWNABLE.items()
    }
    root = write(
        tmp_path / "forge",
        {
            **ownable,
            "foundry.toml": '[profile.default]\nsrc = "src"\nlibs = ["lib"]\n'
            'remappings = ["@oz/=lib/openzeppelin-contracts/contracts/"]\n',
            "lib/forge-std/src/Test.sol": "pragma solidity ^0.8.20;\nabstract contract Test {\n"
            "    function assertTrue(bool c) internal pure { require(c, 'assert'); }\n}\n",
            "src/Counter.sol": 'pragma solidity ^0.8.20;\nimport {Ownable} from "@oz/access/Ownable.sol";\n'
            "contract Counter is Ownable {\n    uint public n;\n"
            "    function inc() external onlyOwner { n += 1; }\n}\n",
            "test/Counter.t.sol": 'pragma solidity ^0.8.20;\nimport "forge-std/Test.sol";\n'
            'import "../src/Counter.sol";\ncontract CounterTest is Test {\n'
            "    function testInc() public {\n"
            "        Counter c = new Counter();\n"
            "        c.inc();\n        assertTrue(c.n() == 1);\n    }\n}\n",
            "script/Deploy.s.sol": "pragma solidity ^0.8.20;\ncontract Deploy {}\n",
        },
    )
    assert project.find_solidity(root) == [root / "src" / "Counter.sol"]  # lib/, test/, script/ skipped
    found = collect_inputs([str(root)], include_tests=True)  # the test uses forge-std/ (lib/ auto remapping)
    assert not found.errors
    assert [i.name for i in found.items] == [
        f"{root}/src/Counter.sol:Counter",
        f"{root}/test/Counter.t.sol:CounterTest",
    ]
    jobs = {j.entry: j for j in compiles[0]}
    assert set(jobs["src/Counter.sol"].sources) == {
        "src/Counter.sol",
        "@oz/access/Ownable.sol",
        "@oz/utils/Context.sol",
    }
    assert "forge-std/Test.sol" in jobs["test/Counter.t.sol"].sources


def test_folder_walk_skips_tests_mocks_scripts_and_excluded(tmp_path: Path) -> None:
    root = write(
        tmp_path / "repo",
        {
            name: "contract A {}\n"
            for name in [
                "contracts/A.sol",
                "contracts/legacy/Old.sol",
                "contracts/ERC20Mock.sol",
                "contracts/MOCKS/B.sol",
                "contracts/Notes.md",
                "tests/T.sol",
                "test/U.sol",
                "src/C.t.sol",
                "script/D.s.sol",
                "node_modules/x/E.sol",
                ".deps/F.sol",
            ]
        },
    )
    rel = lambda paths: sorted(p.relative_to(root).as_posix() for p in paths)  # noqa: E731
    assert rel(project.find_solidity(root)) == ["contracts/A.sol", "contracts/legacy/Old.sol"]
    assert rel(project.find_solidity(root, exclude=["legacy"])) == ["contracts/A.sol"]
    assert rel(project.find_solidity(root, exclude=["contracts/legacy/*"])) == ["contracts/A.sol"]
    assert rel(project.find_solidity(root, include_tests=True)) == [
        "contracts/A.sol",
        "contracts/ERC20Mock.sol",
        "contracts/MOCKS/B.sol",
        "contracts/legacy/Old.sol",
        "src/C.t.sol",
        "test/U.sol",
        "tests/T.sol",
    ]


MIXED = """pragma solidity ^0.8.0;
interface IThing { function thing() external view returns (uint); }
library Lib { function twice(uint x) internal pure returns (uint) { return 2 * x; } }
abstract contract Base { function thing() public view virtual returns (uint); }
contract Store { uint internal stored; }
contract Good is Base, Store {
    function thing() public view override returns (uint) { return Lib.twice(stored); }
}
contract Other { function ping() external pure returns (uint) { return 1; } }
"""


def test_cli_folder_reports_good_files_and_one_error_line_per_bad_file(
    solc_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, compiles
) -> None:
    root = write(
        tmp_path / "proj",
        {
            "Good.sol": MIXED,
            "IOnly.sol": "pragma solidity ^0.8.0;\ninterface IOnly { function f() external; }\n",
            "Bad.sol": 'pragma solidity ^0.8.0;\nimport "./missing/Gone.sol";\ncontract Bad {}\n',
            "Prose.sol": "Just some notes, saved with the wrong extension.\n",
            "Empty.sol": "// nothing here\npragma solidity ^0.8.0;\n",
            "Reexport.sol": 'pragma solidity ^0.8.0;\nimport "./Good.sol";\n',  # OpenZeppelin's draft-*.sol
        },
    )
    view = BaseView.of(tiny_detector(), {"batch_size": 2, "max_length": 256})
    monkeypatch.setattr(
        Scanner, "from_checkpoint", classmethod(lambda cls, ckpt, static=False: Scanner([view]))
    )
    code = cli.main([str(root), "--checkpoint", "tiny.ckpt", "--json"])
    out, err = capsys.readouterr()
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [  # the missing file's path is shown below the current folder
        f"error: {root}/Bad.sol: import './missing/Gone.sol': no such file proj/missing/Gone.sol",
        f"error: {root}/Prose.sol: no contract, library or interface declaration found "
        "(not Solidity source?)",
    ]
    for quiet in ("Empty.sol", "Reexport.sol"):  # Solidity with nothing to deploy: noted, not an error
        assert f"{root}/{quiet}:{quiet} (no contract declared: imports or free definitions only)" in err
    reports = json.loads(out)["reports"]
    assert [r["input"] for r in reports] == [f"{root}/Good.sol:Good", f"{root}/Good.sol:Other"]
    assert all(r["compiler"] == "0.8.26" for r in reports)
    note = next(n for n in reports[0]["notes"] if n.startswith("not scanned"))
    for listed in ["IThing (interface)", "Lib (library)", "Base (abstract contract)", "Store (base of Good)"]:
        assert listed in note and listed in err
    assert f"{root}/IOnly.sol:IOnly (interface)" in err
    assert [j.entry for j in compiles[0]] == ["Good.sol"]  # the others never reach the compiler


def test_cli_folder_without_solidity_is_one_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = write(tmp_path / "docs", {"README.md": "# nothing\n", "test/A.sol": "contract A {}\n"})
    assert cli.main([str(folder), "--checkpoint", "never-loaded.ckpt"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {folder}: no Solidity (.sol) files to scan")


def test_solc_override_any_release_and_unknown_release(solc_cache: Path, tmp_path: Path, compiles) -> None:
    fake_release(solc_cache, "0.4.24", "solc-0426")
    sol = write(tmp_path / "p", {"Token.sol": TOKEN_04.replace("0.4.24", "^0.4.11")}) / "Token.sol"
    (item,) = read_inputs([str(sol)], solc="0.4.24")  # not bundled: from the compiler cache
    assert item.compiler == "0.4.24" and [j.version for j in compiles[0]] == ["0.4.24"]
    with pytest.raises(Exception, match=r"--solc 0\.4\.99: not a solc-js release"):
        read_inputs([str(sol)], solc="0.4.99")
