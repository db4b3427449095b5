"""The real_code importer on a fake npm package tree (written here; no network, bundled compilers only).

``@fake/app`` imports a sibling file (relative path) and ``@fake/lib`` (package path, installed beside it as
npm would); the library has a public function, so the caller's bytecode holds a link placeholder.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from training_pipeline.corpus.imports import ImportResolver, UnresolvedImportError, import_paths, unit_name
from training_pipeline.corpus.solc_resolver import SolcResolver
from training_pipeline.data.importers import real_code
from training_pipeline.data.importers.real_code import (
    PackageError,
    RealCodeConfig,
    count_table,
    ensure_package,
    import_real_code,
    link_zero,
    load_real_code,
)
from training_pipeline.errors import ConfigError
from training_pipeline.utils.checks import config_dataclass

TOKEN = """\
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.0;

import "./Base.sol";
import {MathLib} from "@fake/lib/MathLib.sol";

/* import "./Missing.sol"; is a comment, not an import */
contract Token is Base {
    function twice(uint256 x) external pure returns (uint256) {
        return MathLib.double(x);
    }
}

abstract contract Half {
    function h() public virtual returns (uint256);
}
"""

BASE = """\
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.0;

interface IThing {
    function f() external;
}

contract Base {
    uint256 public x;
}
"""

MATH = """\
// SPDX-License-Identifier: MIT
pragma solidity >=0.8.0;

library MathLib {
    function double(uint256 x) public pure returns (uint256) {
        return 2 * x;
    }
}
"""

OLD = """\
pragma solidity ^0.5.0;

contract Implicit {
    function f() public;
}

contract Real {
    function g() public pure returns (uint256) {
        return 1;
    }
}
"""


def write_package(root: Path, name: str, version: str, files: dict[str, str], licence: str = "MIT") -> Path:
    """A package folder as npm leaves it: package.json and sources."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "package.json").write_text(json.dumps({"name": name, "version": version, "license": licence}))
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def npm_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRAINING_PIPELINE_SOLC_OFFLINE", "1")
    monkeypatch.setenv("TRAINING_PIPELINE_SOLC_CACHE", str(tmp_path / "solc-cache"))  # bundled releases only
    root = tmp_path / "npm"
    modules = root / "fake__app@1.0.0" / "node_modules"
    files = {"contracts/Token.sol": TOKEN, "contracts/Base.sol": BASE, "contracts/old/Old.sol": OLD}
    files["contracts/mocks/Mock.sol"] = "pragma solidity ^0.8.0;\ncontract Mock {}\n"
    write_package(modules / "@fake" / "app", "@fake/app", "1.0.0", files)
    write_package(modules / "@fake" / "lib", "@fake/lib", "2.0.0", {"MathLib.sol": MATH})
    return root


def config(npm_root: Path, *packages: dict, **overrides) -> RealCodeConfig:
    block = {"packages": list(packages), "npm_dir": str(npm_root), "install": False, "n_workers": 1}
    return config_dataclass(RealCodeConfig, {**block, **overrides}, "data.real_code")


APP = {"name": "@fake/app", "version": "1.0.0", "licence": "MIT", "subfolder": "contracts"}


def test_import_paths_and_unit_names(npm_root: Path) -> None:
    assert import_paths(TOKEN) == ["./Base.sol", "@fake/lib/MathLib.sol"]
    assert import_paths('import * as M from "a.sol";\nimport "b.sol" as B;\n') == ["a.sol", "b.sol"]
    token = npm_root / "fake__app@1.0.0/node_modules/@fake/app/contracts/Token.sol"
    assert unit_name(token) == "@fake/app/contracts/Token.sol"
    sources = ImportResolver().closure(token)
    assert set(sources.sources) == {
        "@fake/app/contracts/Token.sol",
        "@fake/app/contracts/Base.sol",
        "@fake/lib/MathLib.sol",
    }
    assert sorted(sources.pragmas()) == [">=0.8.0", "^0.8.0", "^0.8.0"]


def test_missing_import_names_it(tmp_path: Path) -> None:
    f = tmp_path / "node_modules" / "p" / "A.sol"
    f.parent.mkdir(parents=True)
    f.write_text('pragma solidity ^0.8.0;\nimport "@nowhere/pkg/X.sol";\ncontract A {}\n')
    with pytest.raises(UnresolvedImportError, match="@nowhere/pkg"):
        ImportResolver().closure(f)


@pytest.mark.parametrize("same_text", [True, False])
def test_nested_copy_of_a_dependency_is_one_source_when_identical(tmp_path: Path, same_text: bool) -> None:
    # app imports lib/L.sol and dep/D.sol; dep has its own nested copy of lib (npm could not dedupe it)
    modules = tmp_path / "node_modules"
    lib = "pragma solidity ^0.8.0;\nlibrary L { function f() internal pure returns (uint) { return 1; } }\n"
    (modules / "lib").mkdir(parents=True)
    (modules / "lib" / "L.sol").write_text(lib)
    nested = modules / "dep" / "node_modules" / "lib"
    nested.mkdir(parents=True)
    (nested / "L.sol").write_text(lib if same_text else lib.replace("return 1", "return 2"))
    (modules / "dep" / "D.sol").write_text('pragma solidity ^0.8.0;\nimport "lib/L.sol";\ncontract D {}\n')
    app = modules / "app" / "A.sol"
    app.parent.mkdir(parents=True)
    app.write_text('pragma solidity ^0.8.0;\nimport "lib/L.sol";\nimport "dep/D.sol";\ncontract A {}\n')
    if same_text:
        sources = ImportResolver().closure(app)
        assert set(sources.sources) == {"app/A.sol", "lib/L.sol", "dep/D.sol"}
        assert sources.sources["lib/L.sol"] == lib
    else:
        with pytest.raises(UnresolvedImportError, match="two different files share the source name 'lib/L"):
            ImportResolver().closure(app)


def test_era_rule_picks_the_oldest_minor_a_range_allows() -> None:
    resolver = SolcResolver(releases=["0.5.17", "0.6.11", "0.6.12", "0.7.6", "0.8.26"])
    assert real_code.era_constraint([">=0.6.0 <0.8.0"], resolver) == ">=0.6.0 <0.7.0"
    assert real_code.era_constraint(["^0.8.0"], resolver) == ">=0.8.0 <0.9.0"
    assert real_code.era_constraint(["^0.9.0"], resolver) is None


def test_link_zero_counts_placeholders() -> None:
    new_style, old_style = "__$" + "ab" * 17 + "$__", "__Contract.sol:Lib".ljust(40, "_")
    code, n = link_zero("6080" + new_style + "56" + old_style + "00")
    assert n == 2 and "_" not in code and len(code) == 4 + 40 + 2 + 40 + 2


def test_fake_package_compiles_into_linked_records(npm_root: Path, tmp_path: Path) -> None:
    outcome = import_real_code(config(npm_root, APP), tmp_path / "data")
    assert not outcome.failed
    manifest = outcome.manifests()["@fake/app@1.0.0"]
    (path,) = outcome.stored.values()
    records, _ = real_code.load_stored(path)
    by_name = {r["contract_name"]: r for r in records}
    # Token (relative + package import, linked library), Base, Real (0.5); never the interface, the
    # library, the abstract contract (keyword) or the 0.5 contract the compiler leaves without bytecode;
    # mocks are excluded.
    assert set(by_name) == {"Token", "Base", "Real"}, manifest
    token = by_name["Token"]
    assert token["id"] == "npm:@fake/app@1.0.0:contracts/Token.sol:Token"
    assert token["source_code"] == TOKEN and token["labels"] == [] and "negative_labels" not in token
    assert (
        token["bytecode"].startswith("0x") and "_" not in token["bytecode"] and "0" * 40 in token["bytecode"]
    )
    assert token["compiler_version"] == "0.8.26" and by_name["Real"]["compiler_version"] == "0.5.17"
    assert token["family"] == "@fake/app" and token["group"] == "npm:@fake/app@1.0.0"
    assert manifest["linked_library_placeholders"] >= 1 and manifest["records_with_linked_libraries"] == 1
    assert manifest["skipped"] == {"abstract": 2, "interface": 1}  # Half (keyword), Implicit (no bytecode)
    assert manifest["per_era"]["0.8"] == 2 and manifest["per_era"]["0.5"] == 1
    assert manifest["package"]["licence"] == "MIT" and manifest["compile_failures"] == 0
    assert "| @fake/app@1.0.0 | 0 | 1 | 0 | 0 | 2 | 3 |" in count_table(outcome.manifests())


def test_rerun_hits_the_store(npm_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(npm_root, APP)
    first = import_real_code(cfg, tmp_path / "data").stored

    def no_compile(*args, **kwargs):
        raise AssertionError("recompiled although the import is stored")

    monkeypatch.setattr(real_code, "compile_source_sets", no_compile)
    assert import_real_code(cfg, tmp_path / "data").stored == first
    block = {"packages": [APP], "npm_dir": str(npm_root), "install": False, "n_workers": 1}
    loaded = load_real_code(block, tmp_path / "data")
    assert loaded.records and all(r["unlabeled"] and r["labels"] == [] for r in loaded.records)
    assert all(isinstance(r["fold"], int) for r in loaded.records)


@pytest.mark.parametrize("name", ["@uniswap/v2-core", "@gnosis.pm/safe-contracts", "@aave/core-v3"])
def test_refused_packages_are_a_one_line_error(npm_root: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="refused") as err:
        config(npm_root, APP, {"name": name, "version": "1.0.1"})
    assert name in str(err.value) and "\n" not in str(err.value)


def test_refused_extra_package_is_an_error(npm_root: Path) -> None:
    with pytest.raises(ConfigError, match="@uniswap/v3-core is refused"):
        config(npm_root, {**APP, "extra": ["@uniswap/v3-core@1.0.0"]})


def test_extra_packages_must_be_installed_too(npm_root: Path, tmp_path: Path) -> None:
    spec = config(npm_root, {**APP, "extra": ["@fake/lib@2.0.0"]}).specs[0]
    assert ensure_package(spec, npm_root, install=False).name == "app"  # @fake/lib 2.0.0 is there
    spec = config(npm_root, {**APP, "extra": ["@fake/lib@3.0.0"]}).specs[0]
    with pytest.raises(PackageError, match=r"@fake/app@1\.0\.0: not installed.*@fake/lib@3\.0\.0"):
        ensure_package(spec, npm_root, install=False)


def test_config_typos_and_loose_versions_are_errors(npm_root: Path) -> None:
    with pytest.raises(ConfigError, match="subfoldr"):
        config(npm_root, {**APP, "subfoldr": "x"})
    with pytest.raises(ConfigError, match="not exact"):
        config(npm_root, {"name": "x", "version": "^1.0.0"})


def test_missing_or_failing_package_is_one_line_naming_it(npm_root: Path, tmp_path: Path) -> None:
    missing = {"name": "@fake/absent", "version": "0.1.0"}
    outcome = import_real_code(config(npm_root, APP, missing), tmp_path / "data")
    assert set(outcome.stored) == {"@fake/app@1.0.0"}  # the other package still builds
    assert "@fake/absent@0.1.0" in outcome.failed["@fake/absent@0.1.0"]
    assert "npm install" in outcome.failed["@fake/absent@0.1.0"]
    spec = config(npm_root, missing).specs[0]
    with pytest.raises(PackageError, match=r"@fake/absent@0\.1\.0.*exited with 1"):
        ensure_package(spec, npm_root, install=True, npm="false")  # `false`: an npm that always fails
    assert not list(npm_root.glob(".*partial*"))  # nothing half-installed is left behind
    wrong = import_real_code(config(npm_root, {**APP, "licence": "GPL-3.0"}), tmp_path / "data")
    assert "licence in config 'GPL-3.0', in its package.json 'MIT'" in wrong.failed["@fake/app@1.0.0"]


def test_packaged_list_covers_every_era_and_builds() -> None:
    cfg = config_dataclass(RealCodeConfig, real_code.default_config_block(), "data.real_code")
    oz = {s.version for s in cfg.specs if s.name == "@openzeppelin/contracts"}
    assert {"2.5.1", "3.4.2", "3.4.2-solc-0.7"} <= oz and any(v.startswith("4.") for v in oz)
    assert any(v.startswith("5.") for v in oz) and all(s.licence for s in cfg.specs)
    # the audited code is more than OpenZeppelin's style: other families, in more than one era
    others = [s for s in cfg.specs if "zeppelin" not in s.name]
    assert len({s.name for s in others}) >= 8


def test_compile_variants_are_one_record_each(npm_root: Path, tmp_path: Path) -> None:
    variants = [{"optimize": False}, {"optimize": True, "runs": 200}]
    outcome = import_real_code(config(npm_root, APP, compile_variants=variants), tmp_path / "data")
    plain = import_real_code(config(npm_root, APP), tmp_path / "data")
    assert outcome.stored != plain.stored  # another store key; the default keeps the key it had
    assert "compile_variants" not in plain.manifests()["@fake/app@1.0.0"]["config"]
    (path,) = outcome.stored.values()
    records, manifest = real_code.load_stored(path)
    assert {r["contract_name"] for r in records} == {"Token", "Base", "Real"}
    for r in records:
        assert (
            list(r["bytecode_variants"]) == ["o0", "o1-r200"]
            and r["bytecode"] == r["bytecode_variants"]["o0"]
        )
        assert (
            r["bytecode_variants"]["o1-r200"] != r["bytecode"]
            and "_" not in r["bytecode_variants"]["o1-r200"]
        )
    assert {k: v["records"] for k, v in manifest["variants"].items()} == {"o0": 3, "o1-r200": 3}
    with pytest.raises(ConfigError, match=r"^data.real_code.compile_variants: evm_version is not supported"):
        config(npm_root, APP, compile_variants=[{"optimize": True, "evm_version": "london"}])


def test_folds_are_dealt_to_clone_groups_and_balanced() -> None:
    # two releases of one package share a file (the data module merges their groups): they must get one fold,
    # and that merged group counts as large, so the validation and test folds are not left near empty
    shared = "pragma solidity ^0.8.0;\ncontract Shared { uint256 x; }\n"
    records = [{"group": "npm:a@1", "source_code": shared}, {"group": "npm:a@2", "source_code": shared}]
    records += [{"group": "npm:a@1", "source_code": f"contract A{i} {{ address v{i}; }}"} for i in range(9)]
    records += [{"group": "npm:a@2", "source_code": f"contract B{i} {{ bool w; }} // {i}"} for i in range(9)]
    records += [
        {"group": f"npm:p{i}@1", "source_code": f"contract P{i} {{ int{8 * (i + 1)} p; }}"} for i in range(20)
    ]
    real_code.deal_folds(records, n_folds=3, seed=0)
    assert records[0]["fold"] == records[1]["fold"] == records[2]["fold"] == records[11]["fold"]
    assert {r["group"] for r in records[:2]} == {"npm:a@1", "npm:a@2"}  # records keep their own groups
    loads = [sum(r["fold"] == f for r in records) for f in range(3)]
    assert sorted(loads) == [10, 10, 20]  # the 20-contract merged group alone, the 20 small ones split evenly


def count_jobs(monkeypatch: pytest.MonkeyPatch, module, name: str) -> list[int]:
    """Wraps ``module.name`` (a compile function): each call appends how many jobs it was given."""
    calls: list[int] = []
    real = getattr(module, name)

    def spy(jobs, *args, **kwargs):
        calls.append(len(jobs))
        return real(jobs, *args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


def test_packages_compile_in_one_pass_and_each_is_stored_alone(
    npm_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = {"name": "@fake/other", "version": "0.3.0", "licence": "MIT"}
    modules = npm_root / "fake__other@0.3.0" / "node_modules"
    write_package(modules / "@fake" / "other", "@fake/other", "0.3.0", {"Old.sol": OLD})
    passes = count_jobs(monkeypatch, real_code, "compile_source_sets")
    variants = [{"optimize": False}, {"optimize": True, "runs": 200}]
    both = import_real_code(config(npm_root, APP, other, compile_variants=variants), tmp_path / "both")
    assert passes == [
        (3 + 1) * 2
    ]  # one pass: (Token, Base, Old of @fake/app; Old of @fake/other) x 2 variants
    for package in (APP, other):
        alone = import_real_code(config(npm_root, package, compile_variants=variants), tmp_path / "alone")
        spec = f"{package['name']}@{package['version']}"
        assert alone.stored[spec].name == both.stored[spec].name  # the same store key
        got = {r["id"]: r for r in real_code.load_stored(both.stored[spec])[0]}
        want = {r["id"]: r for r in real_code.load_stored(alone.stored[spec])[0]}
        assert got.keys() == want.keys() and all(got[k] == want[k] for k in want)
        assert all(r["group"] == f"npm:{spec}" for r in got.values())
    assert len(passes) == 3 and both.manifests()[f"{APP['name']}@1.0.0"]["n_records"] == 3


def test_a_grown_variant_list_compiles_only_the_new_variant(
    npm_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # make train's stores (o0, o1-r200), then train-all's (+ o1-r1000) in the same data dir: the compile cache
    # answers what both lists share
    from training_pipeline.corpus import imports as corpus_imports

    fresh = count_jobs(monkeypatch, corpus_imports, "compile_fresh_source_sets")
    off = [{"optimize": False}]
    both = [*off, {"optimize": True, "runs": 200}]
    import_real_code(config(npm_root, APP, compile_variants=off), tmp_path / "data")
    grown = import_real_code(config(npm_root, APP, compile_variants=both), tmp_path / "data")
    cold = import_real_code(config(npm_root, APP, compile_variants=both), tmp_path / "cold")
    assert fresh == [3, 3, 6]  # Token, Base, Old: optimizer off, then only on; a cold data dir compiles both
    spec = f"{APP['name']}@{APP['version']}"
    got, want = (real_code.load_stored(o.stored[spec])[0] for o in (grown, cold))
    assert got == want and all(len(r["bytecode_variants"]) == 2 for r in got)


class _FakeRelease:
    def __init__(self, path: Path) -> None:
        self.path = path


class _FakeResolver:
    """Versions 0.0.x → a solc-js stand-in folder whose compile answers, exits or never returns."""

    BEHAVIOUR = {
        "0.0.1": "process.exit(3)",
        "0.0.2": "for (;;) {}",
        "0.0.3": "return JSON.stringify({contracts: {[e]: {C: {evm: {deployedBytecode: {object: 'ab'}}}}}})",
    }

    def __init__(self, root: Path) -> None:
        self.root = root
        for version, body in self.BEHAVIOUR.items():
            folder = root / version
            folder.mkdir(parents=True)
            (folder / "index.js").write_text(
                "module.exports = {compile: (input) => { "
                + "const e = Object.keys(JSON.parse(input).sources)[0]; "
                + body
                + "; }};\n"
            )

    def ensure(self, version: str) -> _FakeRelease:
        return _FakeRelease(self.root / version)


def test_a_crashing_or_hanging_compile_fails_alone(tmp_path: Path) -> None:
    from training_pipeline.corpus.imports import SourceSetJob, compile_source_sets

    order = ["0.0.3", "0.0.1", "0.0.3", "0.0.2", "0.0.3", "0.0.3"]
    jobs = [SourceSetJob({f"F{i}.sol": "contract C {}"}, f"F{i}.sol", v) for i, v in enumerate(order)]
    seen: list[tuple[int, int]] = []
    results = compile_source_sets(
        jobs, _FakeResolver(tmp_path), n_workers=2, timeout_s=3, progress=lambda d, t: seen.append((d, t))
    )
    assert [r.contracts for r in results] == [
        {"C": "ab"} if v == "0.0.3" else None for v in order
    ]  # in the order asked, each job on its own
    assert "node exited with 3" in str(results[1].error)
    assert results[3].error == "compile did not finish within 3 s"
    assert seen[-1] == (6, 6) and [d for d, _ in seen] == sorted(d for d, _ in seen)
