"""The scan report as SARIF 2.1.0, what CI systems and code-scanning dashboards read (GitHub code scanning,
GitLab, VS Code's SARIF viewer): one run of the ``scathat`` tool whose rules are the taxonomy's vulnerability
classes, and one result per class a scanned contract is flagged for.

A result's level follows the contract's risk level (critical/high: error, medium: warning, low: note); its
locations are the code analyzer's top lines for that class when the report has them, else the scanned file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from training_pipeline import __version__
from training_pipeline.taxonomy import VULNERABILITY_CLASSES

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
TOOL_NAME = "scathat"
SRCROOT = "SRCROOT"
LEVELS = {"critical": "error", "high": "error", "medium": "warning", "low": "note"}
"""A contract's risk level -> the SARIF level of its results."""

RULE_DESCRIPTIONS: dict[str, str] = {
    "access_control": "Missing or bypassable access control on a privileged action.",
    "arithmetic": "Integer overflow or underflow changes balances or limits.",
    "bad_randomness": "Randomness derived from predictable on-chain values.",
    "denial_of_service": "A call or loop an attacker can make fail or run out of gas, blocking the contract.",
    "front_running": "Outcome depends on transaction order an observer can exploit.",
    "reentrancy": "External call before state is updated lets the callee re-enter.",
    "time_manipulation": "Logic depends on a block timestamp the miner or validator can shift.",
    "unchecked_low_level_calls": "Return value of a low-level call, send or delegatecall is not checked.",
    "other": "Another vulnerability class of the taxonomy (e.g. uninitialised storage, short addresses).",
}


def _rule_name(cls: str) -> str:
    return "".join(part.capitalize() for part in cls.split("_"))


def rules() -> list[dict[str, Any]]:
    """One reporting descriptor per taxonomy class, the rule id being the class name."""
    return [
        {
            "id": cls,
            "name": _rule_name(cls),
            "shortDescription": {"text": RULE_DESCRIPTIONS.get(cls, cls.replace("_", " "))},
            "properties": {"tags": ["security", "smart-contract"]},
        }
        for cls in VULNERABILITY_CLASSES
    ]


def _artifact(name: str, root: Path) -> tuple[dict[str, Any], str | None]:
    """The artifact location of a scanned input (``path``, ``path:Contract``, ``path#record``) relative to
    ``root`` where it lies below it, and the contract name when the input names one."""
    path, contract = name, None
    for sep in (":", "#"):
        head, _, tail = name.rpartition(sep)
        if head and not Path(name).exists() and Path(head).is_file():
            path, contract = head, tail
            break
    if not Path(path).exists():  # inline bytecode: its label
        return {"uri": quote(Path(path).as_posix())}, contract
    resolved = Path(path).resolve()
    if resolved.is_relative_to(root):
        return {"uri": quote(resolved.relative_to(root).as_posix()), "uriBaseId": SRCROOT}, contract
    return {"uri": resolved.as_uri()}, contract


def _locations(report: Mapping[str, Any], cls: str, root: Path) -> list[dict[str, Any]]:
    artifact, contract = _artifact(report["input"], root)
    lines = [t["line"] for t in report.get("top_lines") or [] if t["class"] == cls]
    physical = [{"artifactLocation": artifact, "region": {"startLine": line}} for line in lines] or [
        {"artifactLocation": artifact}
    ]
    logical = [{"name": contract, "kind": "type"}] if contract else []
    return [{"physicalLocation": p, **({"logicalLocations": logical} if logical else {})} for p in physical]


def results(
    reports: Sequence[Mapping[str, Any]], models: Mapping[str, Any], root: Path
) -> list[dict[str, Any]]:
    """One result per (input, flagged class); inputs without a risk (no view read) give none."""
    index = {cls: i for i, cls in enumerate(VULNERABILITY_CLASSES)}
    out = []
    for report in reports:
        level = report.get("risk_level")
        if report.get("risk") is None or level is None:
            continue
        probs = report.get("vulnerabilities") or {}
        for cls in report.get("flagged") or []:
            p = float(probs.get(cls, 0.0))
            result: dict[str, Any] = {
                "ruleId": cls,
                "level": LEVELS.get(level, "warning"),
                "message": {
                    "text": f"{report['input']}: {cls.replace('_', ' ')} (probability {p:.2f}); "
                    f"contract risk {report['risk']:.3f} ({level})"
                },
                "locations": _locations(report, cls, root),
                "properties": {
                    "probability": p,
                    "risk": report["risk"],
                    "risk_level": level,
                    "package_id": models.get("package_id"),
                },
            }
            if cls in index:
                result["ruleIndex"] = index[cls]
            out.append(result)
    return out


def to_sarif(payload: Mapping[str, Any], root: str | Path | None = None) -> dict[str, Any]:
    """The SARIF log of a JSON report payload (``report.report_payload``); file locations relative to
    ``root`` (default: the current directory) where the scanned files lie below it."""
    root = Path(root or Path.cwd()).resolve()
    models = payload.get("models") or {}
    model_version = models.get("version") or models.get("package_id")
    driver: dict[str, Any] = {
        "name": TOOL_NAME,
        "semanticVersion": __version__,
        "rules": rules(),
        "properties": {
            "models": {
                k: models[k] for k in ("kind", "name", "package_id", "version", "uri", "path") if k in models
            }
        },
    }
    driver["version"] = str(model_version) if model_version is not None else __version__
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {"driver": driver},
                "originalUriBaseIds": {SRCROOT: {"uri": root.as_uri() + "/"}},
                "results": results(payload.get("reports") or [], models, root),
                "properties": {"schema_version": payload.get("schema_version")},
            }
        ],
    }
