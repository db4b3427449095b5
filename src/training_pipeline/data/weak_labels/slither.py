"""Slither on one Solidity source, offline: crytic-compile's standard-JSON platform calls the solc-js bridge.

``slither-analyzer`` (the ``analysis`` extra) is imported inside functions only: it is heavy and optional,
and nothing else in the package needs it.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from training_pipeline.corpus.solc import compatible_compilers, pragma_constraints, satisfies, solc_dir
from training_pipeline.errors import UserError

BRIDGE_SCRIPT = "solc_bridge.js"
VERSION_ENV = "SCATHAT_SOLC_VERSION"  # read by the bridge: the bundled solc-js release to use
PRAGMA_LESS_VERSIONS = ("0.4.26", "0.5.17")  # no pragma: mostly pre-0.5 code; 0.5.17 as a second try
# Bump when what an analysis produces changes for the same source and Slither version (compiler choice,
# detectors registered, the fields kept): the cache then starts afresh.
ANALYSIS_VERSION = 1
MAX_ATTEMPTS = 2  # compilers tried per source (next one only after a compile error)
_EXACT = re.compile(r"^=?\s*(\d+\.\d+\.\d+)$")
_SPACED_DOT = re.compile(r"(?<=\d)\s*\.\s*(?=\d)")


def _bundled() -> list[str]:
    from training_pipeline.taxonomy import COMPILER_VERSIONS

    return sorted(COMPILER_VERSIONS.values(), key=lambda v: tuple(int(p) for p in v.split(".")))


class SlitherNotInstalledError(UserError, RuntimeError):
    """slither-analyzer (the ``analysis`` extra) or the solc bridge is missing: a one-line user error."""


def slither_version() -> str:
    """The installed slither-analyzer version (part of the cache key)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("slither-analyzer")
    except PackageNotFoundError:
        raise SlitherNotInstalledError(
            "slither-analyzer is not installed: pip install -e '.[analysis]' (or the pin in requirements.txt)"
        ) from None


def source_sha256(source: str) -> str:
    """The cache key of a source: sha256 of its UTF-8 text."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def bridge_path(configured: str | Path | None = None) -> Path:
    """The ``solc`` executable crytic-compile calls: ``configured``, else ``<solc dir>/solc_bridge.js``."""
    path = Path(configured) if configured else solc_dir() / BRIDGE_SCRIPT
    if not path.is_file() or not os.access(path, os.X_OK):
        raise SlitherNotInstalledError(f"solc bridge {path} is missing or not executable (chmod +x it)")
    if shutil.which("node") is None:
        raise SlitherNotInstalledError("node is not on PATH: the solc bridge runs solc-js under Node.js")
    return path.resolve()


def relax_exact_pragmas(source: str, bundled: list[str] | None = None) -> str:
    """``pragma solidity 0.4.19;`` → ``pragma solidity ^0.4.19;`` where that exact release is not bundled.

    Only the version text changes, so line numbers stay the same.
    """
    bundled = bundled or _bundled()

    def relax(match: re.Match[str]) -> str:
        exact = _EXACT.match(match.group(2).strip())
        if not exact or exact.group(1) in bundled:
            return match.group(0)
        return f"{match.group(1)}^{exact.group(1)}{match.group(3)}"

    return re.sub(r"(\bpragma\s+solidity\s+)([^;]*?)(\s*;)", relax, source)


@dataclass(frozen=True)
class CompilePlan:
    """The solc releases to try, in order, and the text to compile (exact pragmas relaxed when needed)."""

    versions: tuple[str, ...]
    source: str
    note: str = ""


def plan_compile(source: str) -> CompilePlan:
    """Which bundled solc-js compiles ``source``: the oldest its pragmas allow, relaxing exact pins to a
    caret of the same minor when needed; pragma-less code gets 0.4.26 (then 0.5.17)."""
    constraints = pragma_constraints(source)
    if not constraints:
        return CompilePlan(PRAGMA_LESS_VERSIONS, source, "no pragma")
    found = compatible_compilers(source)
    if found:
        return CompilePlan(tuple(found[:MAX_ATTEMPTS]), source)
    # `^ 0.4 .6` (spaces inside the version, which solc accepts) reads as no range at all: close them up.
    spaced = [_SPACED_DOT.sub(".", c) for c in constraints]
    if spaced != constraints:
        found = [v for v in _bundled() if all(satisfies(v, c) for c in spaced)]
        if found:
            return CompilePlan(tuple(found[:MAX_ATTEMPTS]), source, "spaces inside the pragma's version")
    relaxed = relax_exact_pragmas(source)
    if relaxed != source:
        found = compatible_compilers(relaxed)
        if found:
            return CompilePlan(tuple(found[:MAX_ATTEMPTS]), relaxed, "exact pragma relaxed to a caret")
    return CompilePlan((), source, f"no bundled solc satisfies pragma {' and '.join(constraints)}")


@cache
def _detector_classes() -> list[type]:
    """Every detector class Slither ships (none run unless registered)."""
    import slither.detectors.all_detectors as all_detectors
    from slither.detectors.abstract_detector import AbstractDetector

    return [
        d
        for _, d in inspect.getmembers(all_detectors, inspect.isclass)
        if issubclass(d, AbstractDetector) and d is not AbstractDetector
    ]


@cache
def detector_catalog() -> dict[str, dict[str, str]]:
    """``check`` → {impact, confidence} of every registered Slither detector."""
    return {
        d.ARGUMENT: {"impact": _title(d.IMPACT.name), "confidence": _title(d.CONFIDENCE.name)}
        for d in _detector_classes()
    }


def _title(name: str) -> str:
    return name.capitalize()  # HIGH → High: the spelling of Slither's JSON output


def _element(e: dict[str, Any]) -> dict[str, Any]:
    lines = (e.get("source_mapping") or {}).get("lines") or []
    return {
        "type": e.get("type"),
        "name": str(e.get("name", ""))[:160],
        "start": min(lines) if lines else None,
        "end": max(lines) if lines else None,
    }


def _finding(raw: dict[str, Any]) -> dict[str, Any]:
    """One Slither result reduced to what labels need: check, impact, confidence, element lines."""
    elements = raw.get("elements") or []
    lines_of = [(e.get("type"), (e.get("source_mapping") or {}).get("lines") or []) for e in elements]
    node_lines = {ln for kind, lines in lines_of if kind == "node" for ln in lines}
    all_lines = {ln for _, lines in lines_of for ln in lines}
    return {
        "check": raw.get("check"),
        "impact": raw.get("impact"),
        "confidence": raw.get("confidence"),
        "lines": sorted(node_lines or all_lines),  # statements when there are some, else whole elements
        "elements": [_element(e) for e in elements],
        "description": " ".join(str(raw.get("description", "")).split())[:300],
    }


def _first_line(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:limit]


def analyse_source(source: str, bridge: str | Path | None = None) -> dict[str, Any]:
    """Compile ``source`` through the bridge and run every Slither detector on it.

    Returns the cache record: status (ok | compile_error | unsupported_pragma | error), reason, solc version,
    seconds and the findings; never raises for a bad contract.
    """
    from crytic_compile import CryticCompile
    from crytic_compile.platform.exceptions import InvalidCompilation
    from crytic_compile.platform.solc_standard_json import SolcStandardJson
    from slither import Slither

    start = time.perf_counter()
    bridge = bridge_path(bridge)
    plan = plan_compile(source)
    record: dict[str, Any] = {
        "sha256": source_sha256(source),
        "tool": "slither",
        "slither_version": slither_version(),
        "analysis_version": ANALYSIS_VERSION,
        "status": "unsupported_pragma",
        "reason": plan.note,
        "solc_version": None,
        "compile_note": plan.note,
        "solc_tried": list(plan.versions),
        "findings": [],
    }
    with tempfile.TemporaryDirectory(prefix="scathat-slither-") as tmp:
        path = Path(tmp) / "Contract.sol"
        path.write_text(plan.source, encoding="utf-8")
        for version in plan.versions:
            record["solc_version"] = version
            env = {**os.environ, VERSION_ENV: version}  # --version sees only this env: keep PATH
            try:
                sj = SolcStandardJson()
                sj.add_source_file(str(path))
                cc = CryticCompile(sj, solc=str(bridge), solc_env=env, solc_disable_warnings=True)
            except Exception as exc:  # InvalidCompilation; or the bridge crashed, odd compiler output
                kind = "" if isinstance(exc, InvalidCompilation) else "bridge: "
                reason = kind + _first_line(exc).replace(str(path), path.name).replace(tmp + "/", "")
                if record["status"] != "compile_error":  # the first compiler's complaint is the telling one
                    record.update(status="compile_error", reason=f"solc {version}: {reason}")
                continue
            try:
                sl = Slither(cc)
                for detector in _detector_classes():
                    sl.register_detector(detector)
                results = sl.run_detectors()
            except Exception as exc:  # Slither's own parsing or a detector failed on this contract
                record.update(status="error", reason=_first_line(exc))
                break
            record.update(
                status="ok",
                reason="",
                findings=[_finding(r) for per_detector in results for r in per_detector],
            )
            break
    record["seconds"] = round(time.perf_counter() - start, 3)
    return record
