"""Slither on one Solidity source, offline: crytic-compile's standard-JSON platform calls the solc-js bridge.

Two kinds of input: a self-contained source text (``analyse_source(str)``: written to a temporary file, a
bundled solc-js picked from its pragmas, cached by the text's sha256), or a file analysed in place inside its
own tree (``TreeSource``, from ``tree_source``: imports read from disk, relative ones against the file and
package paths such as ``@openzeppelin/contracts/...`` from ``node_modules`` folders; any solc-js release the
project's ``SolcResolver`` has, passed to the bridge as a package folder; cached by the hash of the resolved
input set, so a change in any imported file, or another release, is a new analysis).

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

from training_pipeline.corpus.imports import ImportResolver, UnresolvedImportError, unit_name
from training_pipeline.corpus.solc import compatible_compilers, pragma_constraints, satisfies, solc_dir
from training_pipeline.errors import UserError

BRIDGE_SCRIPT = "solc_bridge.js"
VERSION_ENV = "SCATHAT_SOLC_VERSION"  # read by the bridge: the bundled solc-js release to use
SOLC_PATH_ENV = "SCATHAT_SOLC_PATH"  # read by the bridge: a solc-js package folder (any release) to load
INCLUDE_ENV = "SCATHAT_SOLC_INCLUDE"  # read by the bridge: more folders package imports are read from
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


def _element(e: dict[str, Any], with_file: bool = False) -> dict[str, Any]:
    mapping = e.get("source_mapping") or {}
    lines = mapping.get("lines") or []
    out = {
        "type": e.get("type"),
        "name": str(e.get("name", ""))[:160],
        "start": min(lines) if lines else None,
        "end": max(lines) if lines else None,
    }
    if with_file:
        out["file"] = mapping.get("filename_short") or mapping.get("filename_relative")
    return out


def _finding(raw: dict[str, Any], entry: str | None = None) -> dict[str, Any]:
    """One Slither result reduced to what labels need: check, impact, confidence, element lines.

    With ``entry`` (the absolute path of the analysed file, when imported files were analysed with it):
    ``in_entry`` says whether any element lies in that file, ``lines`` keeps that file's lines only, and each
    element names its file. Without it every element is in the one file analysed.
    """
    elements = raw.get("elements") or []
    if entry is not None:
        here = [e for e in elements if (e.get("source_mapping") or {}).get("filename_absolute") == entry]
    else:
        here = elements
    lines_of = [(e.get("type"), (e.get("source_mapping") or {}).get("lines") or []) for e in here]
    node_lines = {ln for kind, lines in lines_of if kind == "node" for ln in lines}
    all_lines = {ln for _, lines in lines_of for ln in lines}
    out = {
        "check": raw.get("check"),
        "impact": raw.get("impact"),
        "confidence": raw.get("confidence"),
        "lines": sorted(node_lines or all_lines),  # statements when there are some, else whole elements
        "elements": [_element(e, entry is not None) for e in elements],
        "description": " ".join(str(raw.get("description", "")).split())[:300],
    }
    if entry is not None:
        out["in_entry"] = bool(here)
    return out


def _run_detectors(cc: Any, entry: str | None = None) -> list[dict[str, Any]]:
    """Every registered Slither detector over a compiled unit; the reduced findings."""
    from slither import Slither

    sl = Slither(cc)
    for detector in _detector_classes():
        sl.register_detector(detector)
    return [_finding(r, entry) for per_detector in sl.run_detectors() for r in per_detector]


def _first_line(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:limit]


def analyse_source(source: str | TreeSource, bridge: str | Path | None = None) -> dict[str, Any]:
    """Compile ``source`` through the bridge and run every Slither detector on it.

    Returns the cache record: status (ok | compile_error | unsupported_pragma | error), reason, solc version,
    seconds and the findings; never raises for a bad contract. A ``TreeSource`` is analysed in place
    (``analyse_tree``).
    """
    if isinstance(source, TreeSource):
        return analyse_tree(source, bridge)
    from crytic_compile import CryticCompile
    from crytic_compile.platform.exceptions import InvalidCompilation
    from crytic_compile.platform.solc_standard_json import SolcStandardJson

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
                findings = _run_detectors(cc)
            except Exception as exc:  # Slither's own parsing or a detector failed on this contract
                record.update(status="error", reason=_first_line(exc))
                break
            record.update(status="ok", reason="", findings=findings)
            break
    record["seconds"] = round(time.perf_counter() - start, 3)
    return record


# --- a file inside its own tree (imports from disk) ------------------------------------------------------


@dataclass(frozen=True)
class TreeSource:
    """One Solidity file analysed in place: crytic-compile runs in ``base`` on ``entry`` (a path relative
    to it), the bridge reads imports relative to ``base`` and then under each ``include`` folder, with the
    solc-js package in ``solc_path``. ``key`` (the cache key) hashes the resolved input set; ``note`` says
    why the analysis cannot run (no solc, unresolved import) and is then the record's reason."""

    path: str  # the file, absolute
    base: str  # crytic-compile's working dir: the nearest node_modules above the file, else its folder
    entry: str  # the file relative to base: its source unit name
    include: tuple[str, ...]  # node_modules folders above the file (package imports)
    solc_version: str
    solc_path: str | None  # the solc-js package folder; None: the release is not available (see note)
    key: str
    source_sha256: str
    n_files: int = 1  # files in the import closure
    record_id: str | None = None  # the caller's id, kept in the cache record
    note: str = ""


def _nearest_node_modules(path: Path) -> Path | None:
    return next((p for p in path.parents if p.name == "node_modules"), None)


def input_set_key(entry: str, files: dict[str, str], solc_version: str) -> str:
    """The cache key of a multi-file analysis: sha256 over the entry's unit name, the solc release and every
    file of the import closure (source unit name → sha256 of its text), sorted."""
    import json

    blob = json.dumps(
        {"entry": entry, "solc": solc_version, "files": sorted(files.items()), "kind": "tree"},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def tree_source(
    path: str | Path,
    solc_version: str,
    resolver: Any = None,
    boundary: str | Path | None = None,
    record_id: str | None = None,
) -> TreeSource:
    """Prepare a file for ``analyse_tree``: its import closure (``corpus.imports.ImportResolver``,
    node_modules searched up to ``boundary``), the cache key, and the solc-js folder of ``solc_version`` from
    ``resolver`` (default ``SolcResolver()``: bundled or ~/.cache/scathat/solc, installed if allowed).

    Never raises for a bad file: an unresolved import or a missing release becomes ``note``.
    """
    from training_pipeline.corpus.solc_resolver import SolcResolver

    path = Path(path).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UnresolvedImportError(f"{path}: cannot read ({exc})") from None
    nm = _nearest_node_modules(path)
    base = nm if nm is not None else path.parent
    entry = path.relative_to(base).as_posix()
    stop = Path(boundary).resolve() if boundary is not None else None
    include = []
    for folder in path.parents:
        if folder.name != "node_modules" and (folder / "node_modules").is_dir():
            include.append(str(folder / "node_modules"))
        if folder == stop:
            break
    note = ""

    def name(p: Path) -> str:
        try:
            return p.relative_to(base).as_posix()
        except ValueError:
            return unit_name(p)

    try:
        closure = ImportResolver(boundary=stop).closure(path)
        files = {name(p): source_sha256(closure.sources[u]) for u, p in closure.files.items()}
    except UnresolvedImportError as exc:
        files = {entry: source_sha256(text)}
        note = f"unresolved import: {_first_line(exc)}"
    solc_path = None
    try:
        solc_path = str((resolver or SolcResolver()).ensure(solc_version).path)
    except Exception as exc:  # SolcNotInstalledError (offline), SolcVersionError (unknown release)
        note = note or f"solc {solc_version} is not available: {_first_line(exc)}"
    return TreeSource(
        path=str(path),
        base=str(base),
        entry=entry,
        include=tuple(include),
        solc_version=solc_version,
        solc_path=solc_path,
        key=input_set_key(entry, files, solc_version),
        source_sha256=source_sha256(text),
        n_files=len(files),
        record_id=record_id,
        note=note,
    )


def analyse_tree(task: TreeSource, bridge: str | Path | None = None) -> dict[str, Any]:
    """Compile ``task.entry`` in ``task.base`` with its imports through the bridge and run every detector.

    Findings cover the whole import closure; each says whether it touches the entry file (``in_entry``).
    The record's ``sha256`` is the cache key (``input_set_key``); ``source_sha256`` is the entry's text.
    """
    from crytic_compile import CryticCompile
    from crytic_compile.platform.exceptions import InvalidCompilation
    from crytic_compile.platform.solc_standard_json import SolcStandardJson

    start = time.perf_counter()
    bridge = bridge_path(bridge)
    record: dict[str, Any] = {
        "sha256": task.key,
        "key_kind": "input_set",
        "source_sha256": task.source_sha256,
        "record_id": task.record_id,
        "entry": task.entry,
        "n_files": task.n_files,
        "tool": "slither",
        "slither_version": slither_version(),
        "analysis_version": ANALYSIS_VERSION,
        "status": "compile_error",
        "reason": task.note,
        "solc_version": task.solc_version,
        "compile_note": "in place, imports from disk",
        "solc_tried": [task.solc_version],
        "findings": [],
    }
    if task.solc_path is None:
        record["seconds"] = round(time.perf_counter() - start, 3)
        return record
    env = {
        **os.environ,
        VERSION_ENV: task.solc_version,
        SOLC_PATH_ENV: task.solc_path,
        INCLUDE_ENV: os.pathsep.join(task.include),
    }
    try:
        sj = SolcStandardJson()
        sj.add_source_file(task.entry)
        cc = CryticCompile(
            sj, solc=str(bridge), solc_env=env, solc_working_dir=task.base, solc_disable_warnings=True
        )
    except Exception as exc:
        kind = "" if isinstance(exc, InvalidCompilation) else "bridge: "
        reason = kind + _first_line(exc).replace(task.base + "/", "")
        record.update(reason=f"solc {task.solc_version}: {reason}" + (f" ({task.note})" if task.note else ""))
    else:
        try:
            record.update(status="ok", reason="", findings=_run_detectors(cc, entry=task.path))
        except Exception as exc:
            record.update(status="error", reason=_first_line(exc))
    record["seconds"] = round(time.perf_counter() - start, 3)
    return record
