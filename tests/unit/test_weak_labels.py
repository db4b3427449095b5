"""Slither weak labels: the solc bridge, offline Slither, the findings cache, the mapping and agreement."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from training_pipeline.corpus.solc import solc_dir
from training_pipeline.data.weak_labels.agreement import agreement, assessed_classes, micro, write_report
from training_pipeline.data.weak_labels.cache import FindingsCache, cached_predictions
from training_pipeline.data.weak_labels.mapping import DetectorMapping, contract_predictions, load_config
from training_pipeline.data.weak_labels.slither import plan_compile, relax_exact_pragmas
from training_pipeline.taxonomy import VULNERABILITY_CLASSES

ROOT = Path(__file__).resolve().parents[2]
BRIDGE = ROOT / "scripts" / "solc" / "solc_bridge.js"
HAVE_NODE = shutil.which("node") is not None and (ROOT / "scripts/solc/node_modules/solc-0426").is_dir()
HAVE_SLITHER = importlib.util.find_spec("slither") is not None
needs_node = pytest.mark.skipif(not HAVE_NODE, reason="node or the bundled solc-js is missing")
needs_slither = pytest.mark.skipif(not (HAVE_NODE and HAVE_SLITHER), reason="slither-analyzer not installed")

DAO = """pragma solidity ^0.4.24;

contract DAO {
    mapping(address => uint) public balances;

    function deposit() public payable {
        balances[msg.sender] += msg.value;
    }

    function withdraw() public {
        uint amount = balances[msg.sender];
        require(msg.sender.call.value(amount)());
        balances[msg.sender] = 0;
    }
}
"""
BROKEN = "pragma solidity ^0.4.24;\ncontract Broken {\n    function f() public { uint x = ; }\n}\n"


@pytest.fixture(autouse=True)
def _solc_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINING_PIPELINE_SOLC_DIR", str(ROOT / "scripts" / "solc"))


# --- the bridge -------------------------------------------------------------------------------------------
@needs_node
def test_bridge_answers_version_and_standard_json(tmp_path: Path) -> None:
    env = {"PATH": shutil.which("node").rsplit("/", 1)[0], "SCATHAT_SOLC_VERSION": "0.5.17"}  # type: ignore[union-attr]
    out = subprocess.run([str(BRIDGE), "--version"], capture_output=True, text=True, env=env, check=True)
    assert "Version: 0.5.17" in out.stdout
    (tmp_path / "A.sol").write_text(DAO)
    request = {
        "language": "Solidity",
        "sources": {"A.sol": {"urls": [str(tmp_path / "A.sol")]}},
        "settings": {"outputSelection": {"*": {"*": ["abi"], "": ["ast"]}}},
    }
    env.pop("SCATHAT_SOLC_VERSION")  # no variable: the pragma picks 0.4.26
    out = subprocess.run(
        [str(BRIDGE), "--standard-json", "--allow-paths", str(tmp_path)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=tmp_path,
    )
    answer = json.loads(out.stdout)
    assert "DAO" in answer["contracts"]["A.sol"]
    assert answer["sources"]["A.sol"]["legacyAST" if "legacyAST" in answer["sources"]["A.sol"] else "ast"]


def test_compiler_plan_relaxes_exact_pragmas_and_defaults_pragma_less_code() -> None:
    assert plan_compile("pragma solidity ^0.4.11;\ncontract A {}").versions[0] == "0.4.26"
    plan = plan_compile("pragma solidity 0.4.19;\ncontract A {}")
    assert plan.versions[0] == "0.4.26" and "pragma solidity ^0.4.19;" in plan.source
    assert relax_exact_pragmas("pragma solidity 0.5.17;") == "pragma solidity 0.5.17;"  # bundled: kept
    assert plan_compile("contract A {}").versions[0] == "0.4.26"
    assert plan_compile("pragma solidity ^ 0.4 .6;\ncontract A {}").versions[0] == "0.4.26"  # spaced, valid
    assert plan_compile("pragma solidity ^0.3.6;\ncontract A {}").versions == ()


# --- Slither ----------------------------------------------------------------------------------------------
@needs_slither
def test_slither_finds_the_dao_reentrancy_and_maps_it() -> None:
    from training_pipeline.data.weak_labels.slither import analyse_source

    record = analyse_source(DAO)
    assert record["status"] == "ok" and record["solc_version"] == "0.4.26"
    checks = {f["check"] for f in record["findings"]}
    assert "reentrancy-eth" in checks
    reentrancy = next(f for f in record["findings"] if f["check"] == "reentrancy-eth")
    assert reentrancy["impact"] == "High" and 12 in reentrancy["lines"]
    pred = contract_predictions(record["findings"], DetectorMapping.from_config())
    assert "reentrancy" in pred.labels
    assert pred.classes["reentrancy"].max_impact == "High" and 12 in pred.classes["reentrancy"].lines


@needs_slither
def test_cache_hit_on_rerun_and_failures_are_recorded(tmp_path: Path) -> None:
    from training_pipeline.data.weak_labels.runner import label_sources

    cache = FindingsCache(tmp_path / "cache")
    records, summary = label_sources([DAO, BROKEN], cache, workers=1, timeout_s=60)
    assert (summary.analysed, summary.cached, summary.failed) == (2, 0, 1)
    by_status = {r["status"]: r for r in records.values()}
    assert "Broken" not in json.dumps(by_status["ok"])
    assert "ParserError" in by_status["compile_error"]["reason"]
    assert len(cache) == 2
    # No second analysis: a bridge that does not exist is never asked for.
    records2, summary2 = label_sources([DAO, BROKEN], cache, workers=1, bridge=tmp_path / "no-such-solc")
    assert (summary2.analysed, summary2.cached) == (0, 2) and records2 == records
    dao, broken = cached_predictions([DAO, BROKEN], cache)
    assert dao is not None and "reentrancy" in dao.labels and broken is None  # a failure: no opinion


@needs_slither
def test_a_contract_over_its_time_limit_is_recorded_as_a_timeout(tmp_path: Path) -> None:
    from training_pipeline.data.weak_labels.runner import label_sources

    cache = FindingsCache(tmp_path / "cache")
    records, summary = label_sources([DAO], cache, workers=1, timeout_s=0.05)
    (record,) = records.values()
    assert record["status"] == "timeout" and summary.failed == 1
    assert cache.get(record["sha256"])["status"] == "timeout"


# --- mapping ----------------------------------------------------------------------------------------------
def test_packaged_mapping_is_valid_and_unknown_detectors_stay_raw() -> None:
    cfg = load_config()
    mapping = DetectorMapping.from_config(cfg)
    assert set(mapping.classes.values()) - {None} <= set(VULNERABILITY_CLASSES)
    findings = [
        {"check": "reentrancy-no-eth", "impact": "Medium", "confidence": "Medium", "lines": [3]},
        {"check": "reentrancy-eth", "impact": "High", "confidence": "Medium", "lines": [5]},
        {"check": "solc-version", "impact": "Informational", "confidence": "High", "lines": []},
        {"check": "brand-new-detector", "impact": "High", "confidence": "High", "lines": [9]},
    ]
    pred = contract_predictions(findings, mapping)
    assert pred.labels == ["reentrancy"]
    assert (pred.classes["reentrancy"].count, pred.classes["reentrancy"].max_impact) == (2, "High")
    assert pred.classes["reentrancy"].lines == [3, 5]
    assert pred.unmapped == {"brand-new-detector": 1, "solc-version": 1}
    assert pred.unknown == ["brand-new-detector"]
    strict = DetectorMapping.from_config(cfg, min_impact="High")
    assert contract_predictions(findings[:1], strict).labels == []


def test_mapping_refuses_a_class_outside_the_taxonomy() -> None:
    from training_pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown class"):
        DetectorMapping({"reentrancy-eth": "re-entrancy"})


# --- agreement --------------------------------------------------------------------------------------------
def test_agreement_counts_only_assessed_classes(tmp_path: Path) -> None:
    assert assessed_classes(["reentrancy"], ["arithmetic"]) == {"arithmetic": False, "reentrancy": True}
    assert len(assessed_classes(["reentrancy"], None)) == len(VULNERABILITY_CLASSES)
    refs = [
        (
            {"labels": ["reentrancy"], "negative_labels": ["arithmetic"]},
            ["reentrancy", "arithmetic"],
        ),  # TP, FP
        ({"labels": ["reentrancy"], "negative_labels": []}, []),  # FN
        ({"labels": [], "negative_labels": ["reentrancy"]}, ["reentrancy", "other"]),  # FP (other: skipped)
        ({"labels": [], "negative_labels": ["reentrancy"]}, []),  # TN
        ({"labels": ["reentrancy"], "negative_labels": []}, None),  # not analysed: left out
    ]
    per_class, coverage = agreement(refs)
    r = per_class["reentrancy"]
    assert (r.tp, r.fp, r.fn, r.tn, r.assessed) == (1, 1, 1, 1, 4)
    assert r.precision == 0.5 and r.recall == 0.5 and r.f1 == 0.5
    a = per_class["arithmetic"]
    assert (a.fp, a.assessed, a.precision, a.recall, a.f1) == (1, 1, 0.0, None, None)
    assert per_class["other"].assessed == 0
    assert coverage == {"contracts": 5, "analysed": 4, "not_analysed": 1}
    m = micro(per_class)
    assert (m.tp, m.fp, m.fn, m.tn) == (1, 2, 1, 1)
    md, js = write_report("hand-made", {"per_class": per_class, "coverage": coverage, "meta": {}}, tmp_path)
    write_report("second", {"per_class": per_class, "coverage": coverage, "meta": {}}, tmp_path)
    assert set(json.loads(js.read_text())) == {"hand-made", "second"}
    assert "| reentrancy | 4 | 2 | 1 | 1 | 1 | 0.500 | 0.500 | 0.500 |" in md.read_text()


# --- the command line -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such"), ("", "empty file"), ("just some text\n", "not Solidity")],
)
def test_cli_bad_input_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from weak_label import main
    finally:
        sys.path.pop(0)
    path = tmp_path / "x.sol"
    if content is not None:
        path.write_text(content)
    assert main(["--source", "file", str(path), "--out", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]


def test_solc_dir_holds_the_bridge() -> None:
    assert (solc_dir() / "solc_bridge.js").is_file()


# --- a file analysed in place, imports from disk ----------------------------------------------------------
LIB = """pragma solidity ^0.5.0;

library Lib {
    function onlyOrigin(address who) internal view {
        require(tx.origin == who);
    }
}
"""
BASE = """pragma solidity ^0.5.0;

contract Base {
    mapping(address => uint) public balances;
}
"""
VAULT = """pragma solidity ^0.5.0;

import "@fake/lib/Lib.sol";
import "./Base.sol";

contract Vault is Base {
    function deposit() public payable {
        Lib.onlyOrigin(msg.sender);
        balances[msg.sender] += msg.value;
    }

    function withdraw() public {
        uint amount = balances[msg.sender];
        (bool ok, ) = msg.sender.call.value(amount)("");
        require(ok);
        balances[msg.sender] = 0;
    }
}
"""


def _fake_package(root: Path) -> Path:
    (root / "node_modules" / "@fake" / "lib").mkdir(parents=True)
    (root / "node_modules" / "@fake" / "lib" / "Lib.sol").write_text(LIB)
    (root / "contracts").mkdir()
    (root / "contracts" / "Base.sol").write_text(BASE)
    (root / "contracts" / "Vault.sol").write_text(VAULT)
    return root / "contracts" / "Vault.sol"


def _resolver():
    from training_pipeline.corpus.solc_resolver import SolcResolver

    return SolcResolver(solc_dir=ROOT / "scripts" / "solc", offline=True)


def test_tree_source_keys_on_the_resolved_input_set(tmp_path: Path) -> None:
    from training_pipeline.data.weak_labels.slither import tree_source

    vault = _fake_package(tmp_path)
    task = tree_source(vault, "0.5.17", _resolver(), boundary=tmp_path, record_id="fake:Vault")
    assert (task.entry, task.base, task.n_files, task.note) == ("Vault.sol", str(vault.parent), 3, "")
    assert task.include == (str(tmp_path / "node_modules"),)
    (tmp_path / "node_modules" / "@fake" / "lib" / "Lib.sol").write_text(LIB + "\n// changed\n")
    changed = tree_source(vault, "0.5.17", _resolver(), boundary=tmp_path)
    assert changed.source_sha256 == task.source_sha256 and changed.key != task.key  # an import changed
    assert tree_source(vault, "0.4.26", _resolver(), boundary=tmp_path).key != task.key  # another release
    missing = tree_source(vault, "0.4.99", _resolver(), boundary=tmp_path)
    assert missing.solc_path is None and "0.4.99" in missing.note


@needs_slither
def test_slither_analyses_a_file_with_package_and_relative_imports(tmp_path: Path) -> None:
    from training_pipeline.data.weak_labels.agreement import flag_rates, write_flag_rates
    from training_pipeline.data.weak_labels.runner import label_sources
    from training_pipeline.data.weak_labels.slither import tree_source

    vault = _fake_package(tmp_path)
    task = tree_source(vault, "0.5.17", _resolver(), boundary=tmp_path, record_id="fake:Vault")
    assert task.solc_path is not None and task.solc_path.endswith("solc-0517")  # loaded by folder
    cache = FindingsCache(tmp_path / "cache", version="test")
    results, summary = label_sources([task], cache, workers=1, timeout_s=120)
    rec = results[task.key]
    assert rec["status"] == "ok", rec["reason"]
    assert (rec["sha256"], rec["record_id"], rec["solc_version"], rec["n_files"]) == (
        task.key,
        "fake:Vault",
        "0.5.17",
        3,
    )
    assert cache.get(task.key) == rec
    checks = {f["check"]: f for f in rec["findings"]}
    assert checks["reentrancy-eth"]["in_entry"] and checks["tx-origin"]["in_entry"] is False
    assert any("@fake/lib/Lib.sol" in (e.get("file") or "") for e in checks["tx-origin"]["elements"])
    mapping = DetectorMapping.from_config()
    entry = contract_predictions(rec["findings"], mapping)
    closure = contract_predictions(rec["findings"], mapping, entry_only=False)
    assert "reentrancy" in entry.labels and "access_control" not in entry.labels
    assert "access_control" in closure.labels
    rates = flag_rates([{"id": "fake:Vault", "family": "@fake/lib"}], [rec], mapping)
    first = rates["views"][0]
    assert (rates["analysed"], first["scope"], first["any"]["rate"]) == (1, "entry", 1.0)
    md, js = write_flag_rates("npm audited code: flag rates", rates, {"command": "x"}, tmp_path / "out")
    assert "## npm audited code: flag rates" in md.read_text() and "reentrancy" in md.read_text()
    assert json.loads(js.read_text())["npm audited code: flag rates"]["kind"] == "flag_rates"
