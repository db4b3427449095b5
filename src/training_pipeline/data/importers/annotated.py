"""A folder of annotated ``.sol`` files + a labels file → interchange records (scripts/import_annotated.py).

Labels file, CSV (header ``path,label,lines``) or JSON (a list of ``{"path", "label", "lines"}``):

- ``path``: the ``.sol`` file, relative to the folder (it must stay inside it);
- ``label``: a taxonomy name; empty, ``safe`` or ``none`` marks a contract with no known vulnerability;
- ``lines``: 1-based lines of the vulnerable code, e.g. ``"12 15-18"`` (spaces, commas or semicolons
  between items; a JSON list of ints works too); may be empty.

Several rows may name one file (one per label). Only files the labels file names are imported; others in
the folder are reported and skipped, so a file nobody labelled never becomes a "safe" example by accident.
Every problem (missing file, unknown label, empty or non-Solidity file, line out of range, no bundled
compiler for the pragma, a compile error) is one ``DataError`` naming the input; nothing is written then.
Comments carrying labels or tool annotations are blanked with line numbers kept.

``--compile`` builds runtime bytecode with the bundled solc the pragma allows, oldest first, falling back
to the next allowed one when a compile fails (``solidity.compatible_compilers``); the contract compiled is
the one whose inheritance closure holds most labelled lines, else the last one (``solidity.main_contract``).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training_pipeline import taxonomy
from training_pipeline.corpus.solc import CompileJob, SolcPool
from training_pipeline.data.clean import blank_label_comments, code_only
from training_pipeline.data.importers.solidity import compatible_compilers, main_contract, pragma_constraints
from training_pipeline.errors import DataError

CLEAN_LABELS = frozenset({"", "safe", "none"})
_SOLIDITY = re.compile(r"\b(?:contract|library|interface)\s+[A-Za-z_$][\w$]*|\bpragma\s+solidity\b")
_RANGE = re.compile(r"^(\d+)(?:\s*-\s*(\d+))?$")


@dataclass
class Annotated:
    """One file's labels and lines, gathered from every row that names it."""

    path: Path
    where: str  # the first labels-file row naming it, for messages
    lines: dict[str, set[int]] = field(default_factory=dict)
    rows: list[tuple[str, str, list[int]]] = field(default_factory=list)  # (where, label, lines)


def parse_lines(value: Any, where: str) -> list[int]:
    """``"12 15-18"`` / ``[12, 15]`` / ``12`` → sorted 1-based lines; DataError naming ``where``."""
    if value is None or value == "":
        return []
    if isinstance(value, int) and not isinstance(value, bool):
        items: list[Any] = [value]
    elif isinstance(value, list):
        items = value
    else:
        items = [p for p in re.split(r"[\s,;]+", str(value).strip()) if p]
    out: set[int] = set()
    for item in items:
        m = _RANGE.match(str(item).strip())
        if m is None:
            raise DataError(f"{where}: bad line spec {item!r}; expected numbers or ranges like 12 or 15-18")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if lo < 1 or hi < lo:
            raise DataError(f"{where}: bad line range {item!r}")
        out.update(range(lo, hi + 1))
    return sorted(out)


def read_labels(labels: Path) -> list[tuple[str, dict[str, Any]]]:
    """(where, row) for every row of a CSV or JSON labels file."""
    if not labels.is_file():
        raise DataError(f"{labels}: no such labels file")
    try:
        text = labels.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{labels}: cannot read labels file ({exc})") from None
    if labels.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{labels}: invalid JSON ({exc})") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise DataError(f"{labels}: expected a JSON list of {{path, label, lines}} objects")
        return [(f"{labels} item {i + 1}", r) for i, r in enumerate(rows)]
    reader = csv.DictReader(text.splitlines())
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if not {"path", "label"} <= set(header):
        raise DataError(f"{labels}: expected a CSV header with path,label[,lines], got {reader.fieldnames}")
    reader.fieldnames = header
    return [(f"{labels}:{i}", row) for i, row in enumerate(reader, start=2)]


def collect(folder: Path, labels: Path) -> tuple[list[Annotated], list[Path]]:
    """Annotations per referenced file (in labels-file order) and the folder's unreferenced .sol files."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    rows = read_labels(labels)
    if not rows:
        raise DataError(f"{labels}: no labelled files")
    root = folder.resolve()
    files: dict[Path, Annotated] = {}
    for where, row in rows:
        rel = str(row.get("path") or "").strip()
        if not rel:
            raise DataError(f"{where}: empty path")
        path = (folder / rel).resolve()
        if root not in path.parents:
            raise DataError(f"{where}: {rel} is outside {folder}")
        if not path.is_file():
            raise DataError(f"{where}: {rel}: no such file in {folder}")
        label = str(row.get("label") or "").strip()
        lines = parse_lines(row.get("lines"), where)
        if label.lower() in CLEAN_LABELS:
            if lines:
                raise DataError(f"{where}: {rel} is marked clean ({label or 'empty label'}) but lists lines")
            label = ""
        else:
            try:
                taxonomy.validate_labels([label], where=where)
            except taxonomy.UnknownLabelError as exc:
                raise DataError(str(exc)) from None
        entry = files.setdefault(path, Annotated(path, where))
        entry.rows.append((where, label, lines))
        if label:
            entry.lines.setdefault(label, set()).update(lines)
    unreferenced = sorted(p for p in folder.rglob("*.sol") if p.resolve() not in files)
    return list(files.values()), unreferenced


def read_source(path: Path) -> str:
    """A file's text if it is non-empty UTF-8 Solidity; DataError naming it otherwise."""
    if path.suffix != ".sol":
        raise DataError(f"{path}: not a .sol file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file") from None
    if not text.strip():
        raise DataError(f"{path}: empty file")
    if not _SOLIDITY.search(code_only(text)):
        raise DataError(f"{path}: not Solidity (no pragma solidity and no contract, library or interface)")
    return text


def convert(folder: str | Path, labels: str | Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Records for every labelled file (not compiled) and counts for the user."""
    folder, labels = Path(folder), Path(labels)
    entries, unreferenced = collect(folder, labels)
    records, blanked = [], 0
    for e in entries:
        source = read_source(e.path)
        n_lines = source.count("\n") + 1
        for where, _, lines in e.rows:
            bad = [n for n in lines if n > n_lines]
            if bad:
                raise DataError(f"{where}: line {bad[0]} is outside {e.path} (1..{n_lines})")
        cleaned, n = blank_label_comments(source)
        blanked += n
        vulnerable = {lbl: sorted(lines) for lbl, lines in sorted(e.lines.items()) if lines}
        records.append(
            {
                "id": e.path.resolve().relative_to(folder.resolve()).as_posix(),
                "source_code": cleaned,
                "bytecode": None,
                "labels": sorted(e.lines),
                "vulnerable_lines": vulnerable or None,
                "compiler_version": None,
                "family": None,
                "_path": e.path,
            }
        )
    stats = {"records": len(records), "unreferenced_files": len(unreferenced), "blanked_comments": blanked}
    return records, stats


def compile_records(
    records: Sequence[dict[str, Any]], n_workers: int = 2, cache_dir: str | Path | None = None
) -> dict[str, Any]:
    """Fill ``bytecode`` and ``compiler_version`` in place; DataError naming the first file that fails."""
    candidates: list[list[str]] = []
    for r in records:
        versions = compatible_compilers(r["source_code"])
        if not versions:
            pragmas = pragma_constraints(r["source_code"])
            raise DataError(
                f"{r['_path']}: "
                + (
                    f"no bundled solc satisfies pragma solidity {' and '.join(pragmas)} "
                    f"(bundled: {', '.join(taxonomy.COMPILER_VERSIONS.values())})"
                    if pragmas
                    else "no 'pragma solidity' to choose a compiler by"
                )
            )
        candidates.append(versions)
    contracts = [
        main_contract(r["source_code"], {n for v in (r["vulnerable_lines"] or {}).values() for n in v})
        for r in records
    ]
    errors: dict[int, str] = {}
    attempt = dict.fromkeys(range(len(records)), 0)  # index into each record's candidate versions
    with SolcPool(n_workers=n_workers, cache_dir=cache_dir) as pool:
        while attempt:
            todo = list(attempt)
            jobs = [
                CompileJob(records[i]["source_code"], candidates[i][attempt[i]], contracts[i]) for i in todo
            ]
            for i, res in zip(todo, pool.compile(jobs), strict=True):
                version = candidates[i][attempt[i]]
                if res.ok:
                    records[i]["bytecode"], records[i]["compiler_version"] = res.bytecode, version
                    del attempt[i]
                    continue
                errors.setdefault(i, f"solc {version}: {res.error}")
                if contracts[i] is not None and "no deployed bytecode" in str(res.error):
                    contracts[i] = (
                        None  # an abstract main contract: let the compiler pick the last deployable
                    )
                elif attempt[i] + 1 < len(candidates[i]):
                    attempt[i] += 1
                else:
                    raise DataError(f"{records[i]['_path']}: does not compile ({errors[i]})")
        return dict(pool.stats)
