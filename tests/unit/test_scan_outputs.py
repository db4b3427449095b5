"""The scanner in CI: creation code and unlinked library placeholders read as the runtime the compiler emits,
SARIF 2.1.0 that validates against the official schema, ``--fail-on`` exit codes, ``--version`` and the JSON
report's schema version and package id (through ``cli.main`` with a tiny packaged model)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import torch
from conftest import tiny_detector

from training_pipeline import __version__, taxonomy
from training_pipeline.deploy.package import assemble
from training_pipeline.scan.bytecode import runtime_of
from training_pipeline.scan.cli import main
from training_pipeline.scan.inputs import read_bytecode

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BYTECODE = FIXTURES / "bytecode"  # solc 0.8.26 / 0.4.26 output, see generate.js there
SCHEMA = json.loads((FIXTURES / "sarif" / "sarif-schema-2.1.0.json").read_text())
HEXES = [str(p) for p in sorted((FIXTURES / "evm").glob("vault-*.hex"))[:2]]
CLASSES = taxonomy.VULNERABILITY_CLASSES
UNFLAGGED = 4  # the first classes get an unreachable threshold


def _pair(stem: str) -> tuple[str, str]:
    return (BYTECODE / f"{stem}.creation.hex").read_text(), (BYTECODE / f"{stem}.runtime.hex").read_text()


@pytest.mark.parametrize("stem", ["counter-0.8.26", "adder-0.8.26", "adder-0.4.26", "linked-0.4.26"])
def test_creation_code_reads_as_the_runtime_the_compiler_emits(stem: str, tmp_path: Path) -> None:
    creation, runtime = _pair(stem)
    path = tmp_path / f"{stem}.hex"
    path.write_text(creation)
    item = read_bytecode(str(path))
    assert item.bytecode == runtime_of(runtime, "runtime")[0]
    assert len(item.bytecode) < len(creation.strip())
    assert any(n.startswith("creation code: scanned its runtime part") for n in item.notes)
    args = "00" * 31 + "2a"  # one ABI word of constructor arguments after the code, as deployed
    code, notes = runtime_of(creation.strip() + args, "deployed")
    assert code == item.bytecode and any("32 bytes of constructor arguments" in n for n in notes)
    assert runtime_of(runtime, "runtime")[1] == [n for n in item.notes if n.startswith("linked")]


def test_library_placeholders_are_linked_to_zero_with_a_note() -> None:
    creation, runtime = _pair("linked-0.8.26")
    assert "__$" in runtime
    code, notes = runtime_of(runtime, "linked.hex")
    placeholder = runtime[runtime.index("__$") : runtime.index("$__") + 3]
    assert code == runtime.strip().replace(placeholder, "0" * 40)
    assert notes == [f"linked library placeholders to 0x0: {placeholder}"]
    assert runtime_of(creation, "c")[0] == code  # the creation code's copy of it, linked the same way
    old, old_notes = runtime_of(_pair("linked-0.4.26")[1], "old.hex")  # solc < 0.5: __Box.sol:Adder___...
    assert "__" not in old and old_notes == ["linked library placeholders to 0x0: Box.sol:Adder"]


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda c: c + "deadbeef", "not constructor arguments"),
        (lambda c: c[: len(c) - 40], "does not fit"),
        (lambda c: c[:600] + "ab" * 32 + c[600:], "misses the solc metadata"),
    ],
)
def test_creation_code_with_garbage_is_one_error_naming_the_input(
    mangle, message: str, tmp_path: Path, capsys
) -> None:
    bad = tmp_path / "bad-creation.hex"
    bad.write_text(mangle(_pair("counter-0.8.26")[0].strip()))
    assert main([str(bad), "--model", str(tmp_path / "never-loaded")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {bad}: creation code") and message in err[0]


def tiny_package(tmp_path: Path, bias: float):
    """A packaged tiny bytecode detector whose every class probability is sigmoid(bias)."""
    model = tiny_detector()
    with torch.no_grad():
        model.vuln_head.weight.zero_()
        model.vuln_head.bias.fill_(bias)
        model.thresholds.fill_(0.5)
        model.thresholds[:UNFLAGGED] = 2.0
    meta = {"name": "scathat-bytecode_detector", "kind": "model", "model": "bytecode_detector"}
    featurizer = {"batch_size": 2, "max_length": 512}
    return assemble(meta, {"model": (model.eval(), featurizer)}, tmp_path / f"packages{bias}", archive=False)


def test_sarif_of_two_contracts_validates_with_one_result_per_flagged_class(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    pkg = tiny_package(tmp_path, bias=8.0)  # every probability ~1: critical
    out = tmp_path / "scan.sarif"
    assert main([*HEXES, "--model", str(pkg.path), "--output", str(out), "--format", "sarif"]) == 0
    printed = json.loads(capsys.readouterr().out)
    sarif = json.loads(out.read_text())
    assert printed == sarif
    jsonschema.Draft4Validator(SCHEMA).validate(sarif)
    (run,) = sarif["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "scathat" and driver["semanticVersion"] == __version__
    assert driver["version"] == pkg.id and [r["id"] for r in driver["rules"]] == list(CLASSES)
    flagged = set(CLASSES[UNFLAGGED:])
    for hexfile in HEXES:
        mine = [r for r in run["results"] if r["message"]["text"].startswith(hexfile)]
        assert {r["ruleId"] for r in mine} == flagged and len(mine) == len(flagged)
        for r in mine:
            assert r["level"] == "error" and r["properties"]["risk_level"] == "critical"
            assert r["properties"]["package_id"] == pkg.id
            assert driver["rules"][r["ruleIndex"]]["id"] == r["ruleId"]
            (loc,) = r["locations"]
            assert loc["physicalLocation"]["artifactLocation"]["uri"] == Path(hexfile).resolve().as_uri()
            assert "region" not in loc["physicalLocation"]


def test_sarif_levels_follow_the_risk_level_and_lines_become_regions(tmp_path: Path) -> None:
    from training_pipeline.scan.sarif import to_sarif

    (tmp_path / "a.sol").write_text("contract A {}\n" * 5)
    report = {
        "input": str(tmp_path / "a.sol") + ":A",
        "risk": 0.3,
        "risk_level": "medium",
        "vulnerabilities": {"reentrancy": 0.9, "arithmetic": 0.2},
        "flagged": ["reentrancy"],
        "top_lines": [{"class": "reentrancy", "line": 3, "score": 1.0, "text": "x"}],
    }
    low = {**report, "input": "bytecode", "risk": 0.1, "risk_level": "low", "top_lines": []}
    sarif = to_sarif({"models": {}, "reports": [report, low]}, root=tmp_path)
    jsonschema.Draft4Validator(SCHEMA).validate(sarif)
    medium, note = sarif["runs"][0]["results"]
    assert (medium["level"], note["level"]) == ("warning", "note")
    where = medium["locations"][0]
    assert where["physicalLocation"] == {
        "artifactLocation": {"uri": "a.sol", "uriBaseId": "SRCROOT"},
        "region": {"startLine": 3},
    }
    assert where["logicalLocations"] == [{"name": "A", "kind": "type"}]


@pytest.mark.parametrize("bias, fail_on, status", [(8.0, "high", 1), (-8.0, "high", 0), (-8.0, "low", 1)])
def test_fail_on_exits_1_when_a_contract_reaches_the_level(
    bias: float, fail_on: str, status: int, tmp_path: Path, capsys
) -> None:
    pkg = tiny_package(tmp_path, bias)
    assert main([*HEXES, "--model", str(pkg.path), "--json"]) == 0  # no gate: 0 whatever the risk
    levels = {r["risk_level"] for r in json.loads(capsys.readouterr().out)["reports"]}
    assert levels == ({"critical"} if bias > 0 else {"low"})
    assert main([*HEXES, "--model", str(pkg.path), "--json", "--fail-on", fail_on]) == status


def test_bad_input_exits_2_even_with_fail_on(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.hex"
    bad.write_text("0x60zz")
    assert main([str(bad), "--fail-on", "low", "--model", str(tmp_path / "none")]) == 2


def test_version_prints_the_package_version_without_loading_a_model(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version", "--model", "/nonexistent/package"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"scathat-scan {__version__}"


def test_json_report_carries_schema_version_tool_and_package_id(tmp_path: Path, capsys) -> None:
    pkg = tiny_package(tmp_path, bias=-8.0)
    out = tmp_path / "report.json"
    assert main([HEXES[0], "--model", str(pkg.path), "--output", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["schema_version"] == "1.1"
    assert payload["tool"] == {"name": "scathat", "version": __version__}
    assert payload["models"]["package_id"] == pkg.id
    assert [r["input"] for r in payload["reports"]] == [HEXES[0]] and payload["reports"][0]["flagged"] == []
    assert f"report: {out}" in capsys.readouterr().out  # the table by default


def test_a_folder_scan_gives_valid_sarif_and_fail_on_gates_on_its_risky_contract(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    from training_pipeline.scan.scanner import Scanner

    vault = (
        "pragma solidity ^0.8.0;\ncontract Vault {\n    uint256 public total;\n"
        "    function put() external payable { total += msg.value; }\n}\n"
    )
    drainer = (
        "pragma solidity ^0.8.0;\ncontract Drainer {\n"
        "    function go(address payable to) external { to.transfer(address(this).balance); }\n}\n"
    )
    for folder, files in {
        "risky": {"Vault.sol": vault, "Drainer.sol": drainer},
        "clean": {"Vault.sol": vault},
    }.items():
        for name, text in files.items():
            (tmp_path / folder / "src").mkdir(parents=True, exist_ok=True)
            (tmp_path / folder / "src" / name).write_text(text)
    pkg = tiny_package(tmp_path, bias=-8.0)  # every contract low on its own
    scan = Scanner.scan

    def drainer_is_critical(
        self, items
    ):  # the gate is under test, not the model: one contract is made critical
        reports = scan(self, items)
        for report in reports:
            if report["input"].endswith(":Drainer"):
                report.update(risk=0.97, risk_level="critical", flagged=["reentrancy"])
        return reports

    monkeypatch.setattr(Scanner, "scan", drainer_is_critical)
    out = tmp_path / "scan.sarif"
    args = ["--model", str(pkg.path), "--output", str(out), "--fail-on", "high"]
    assert main([str(tmp_path / "risky"), *args]) == 1
    sarif = json.loads(out.read_text())
    jsonschema.Draft4Validator(SCHEMA).validate(sarif)
    (result,) = sarif["runs"][0]["results"]  # the low contract is flagged for nothing
    assert result["ruleId"] == "reentrancy" and result["level"] == "error"
    assert result["message"]["text"].startswith(str(tmp_path / "risky" / "src" / "Drainer.sol"))
    assert main([str(tmp_path / "clean"), *args]) == 0
    assert json.loads(out.read_text())["runs"][0]["results"] == []
    capsys.readouterr()
