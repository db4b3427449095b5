"""The contract interchange format (JSONL or parquet, one record a contract): read with checks, write safely.

Fields (ARCHITECTURE.md): id, source_code, bytecode, labels, vulnerable_lines, compiler_version, family.
Optional extra fields we understand: group (records sharing it never straddle splits), split, fold,
negative_labels (classes assessed absent: when present, classes in neither list are unassessed and masked),
and bytecode_variants (compile variant key such as ``o1-r200`` → that build's runtime bytecode; null or empty
values are variants that did not compile; a JSON string in parquet files).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from training_pipeline.data.evm import InvalidBytecodeError, parse_hex
from training_pipeline.errors import DataError
from training_pipeline.taxonomy import validate_labels

FIELDS = ("id", "source_code", "bytecode", "labels", "vulnerable_lines", "compiler_version", "family")
SUFFIXES = (".jsonl", ".json", ".parquet")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The raw rows of a JSONL, JSON (array) or parquet file; unreadable content is a DataError naming it."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq  # heavy, and only parquet files need it

        try:
            return pq.read_table(path).to_pylist()
        except Exception as exc:
            raise DataError(f"{path}: not a readable parquet file ({exc})") from None
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON ({exc})") from None
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{n}: invalid JSON line ({exc.msg})") from None
    return rows


def _hex(code: Any, where: str) -> str | None:
    """Bytecode as lower-case 0x-hex; None for none (null, "" or "0x"); bad hex is a DataError naming it."""
    if code in (None, "", "0x"):
        return None
    try:
        return "0x" + parse_hex(code, source=where).hex()
    except InvalidBytecodeError as exc:
        raise DataError(str(exc)) from None


def bytecode_variants(value: Any, where: str) -> dict[str, str] | None:
    """A ``bytecode_variants`` field (a map, or its JSON text) checked: variant key → lower-case 0x-hex, the
    variants without bytecode left out; None when none is left."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value else None
        except json.JSONDecodeError:
            raise DataError(f"{where}: 'bytecode_variants' is not a JSON map") from None
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DataError(f"{where}: 'bytecode_variants' must map a variant key to its bytecode")
    out = {}
    for key, code in value.items():
        if not isinstance(key, str) or not key:
            raise DataError(f"{where}: 'bytecode_variants' has an empty or non-string key {key!r}")
        if (hexed := _hex(code, f"{where} bytecode_variants[{key!r}]")) is not None:
            out[key] = hexed
    return out or None


def normalize_record(row: dict[str, Any], where: str, require_bytecode: bool = False) -> dict[str, Any]:
    """Check one record's fields and return it in canonical form (bytecode and its variants lower-case
    0x-hex)."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    rid = row.get("id")
    if not isinstance(rid, str) or not rid:
        raise DataError(f"{where}: missing or empty 'id'")
    where = f"{where} (id {rid!r})"
    code = _hex(row.get("bytecode"), where)
    if code is None and require_bytecode:
        raise DataError(f"{where}: no bytecode (this dataset needs runtime bytecode)")
    labels = row.get("labels") or []
    if isinstance(labels, str):
        labels = [labels]
    validate_labels(list(labels), where=where)
    lines = row.get("vulnerable_lines")
    if isinstance(lines, str):
        lines = json.loads(lines) if lines else None
    if lines is not None:
        if not isinstance(lines, dict):
            raise DataError(f"{where}: 'vulnerable_lines' must map a label to line numbers")
        validate_labels(list(lines), where=f"{where} vulnerable_lines")
        lines = {k: sorted(int(x) for x in v) for k, v in lines.items() if v is not None}
    negatives = row.get("negative_labels")
    if negatives is not None:
        negatives = [negatives] if isinstance(negatives, str) else list(negatives)
        validate_labels(negatives, where=f"{where} negative_labels")
        both = sorted(set(labels) & set(negatives))
        if both:
            raise DataError(f"{where}: {both} are in both labels and negative_labels")
    record = {
        "id": rid,
        "source_code": row.get("source_code"),
        "bytecode": code,
        "labels": sorted(set(labels)),
        "vulnerable_lines": lines,
        "compiler_version": row.get("compiler_version"),
        "family": row.get("family"),
    }
    for extra in ("group", "split", "fold"):
        if row.get(extra) is not None:
            record[extra] = row[extra]
    if row.get("unlabeled"):  # no human labels at all (real code): every class unassessed
        record["unlabeled"] = True
    if negatives is not None:
        record["negative_labels"] = sorted(set(negatives))
    if (variants := bytecode_variants(row.get("bytecode_variants"), where)) is not None:
        record["bytecode_variants"] = variants
    return record


def read_records(path: str | Path, require_bytecode: bool = False) -> list[dict[str, Any]]:
    """Read and check an interchange file; any problem is a one-line DataError naming file and record."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir() or path.suffix not in SUFFIXES:
        raise DataError(f"{path}: expected a {', '.join(SUFFIXES)} file of contract records")
    rows = read_rows(path)
    if not rows:
        raise DataError(f"{path}: no records")
    records = [normalize_record(r, f"{path} record {i + 1}", require_bytecode) for i, r in enumerate(rows)]
    seen: set[str] = set()
    for r in records:
        if r["id"] in seen:
            raise DataError(f"{path}: duplicate id {r['id']!r}")
        seen.add(r["id"])
    return records


def write_records(records: Iterable[dict[str, Any]], path: str | Path, overwrite: bool = False) -> Path:
    """Write records as JSONL or parquet (by suffix) through a temp file; never clobbers unless asked."""
    path = Path(path)
    if path.suffix not in (".jsonl", ".parquet"):
        raise DataError(f"{path}: write .jsonl or .parquet")
    if path.exists() and not overwrite:
        raise DataError(f"{path}: exists; refusing to overwrite (pass overwrite=True / --force)")
    path.parent.mkdir(parents=True, exist_ok=True)
    records = list(records)
    variants = any(r.get("bytecode_variants") for r in records)
    # negative_labels null = fully assessed; split: one the file fixes; unlabeled: no human labels at all
    optional = [
        k for k in ("negative_labels", "split", "unlabeled") if any(r.get(k) is not None for r in records)
    ]
    keys = (*FIELDS, "group", *optional, *(["bytecode_variants"] * variants))
    rows = [{k: r.get(k) for k in keys} for r in records]
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".parquet":
        import pyarrow as pa  # heavy, and only parquet files need it
        import pyarrow.parquet as pq

        for r in rows:  # maps whose keys differ per record: JSON text, as bytecode_variants() reads back
            for name in ("vulnerable_lines", "bytecode_variants"):
                r[name] = json.dumps(r[name]) if r.get(name) else None
        pq.write_table(pa.Table.from_pylist(rows), tmp)
    else:
        with tmp.open("w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
    tmp.replace(path)
    return path
