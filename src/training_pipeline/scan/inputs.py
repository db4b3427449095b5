"""What to scan: Solidity source (compiled with the bundled solc its pragma asks for), runtime bytecode, a
transaction CSV export and contract interchange files, read into ``ScanInput``s; bad input is a one-line error
naming it."""

from __future__ import annotations

import csv
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from training_pipeline import taxonomy
from training_pipeline.corpus.solc import CompileError, CompileJob, SolcNotInstalledError, compile_many
from training_pipeline.data.evm import InvalidBytecodeError, parse_hex
from training_pipeline.data.importers.solidity import compatible_compilers, main_contract, pragma_constraints
from training_pipeline.data.records import SUFFIXES as RECORD_SUFFIXES
from training_pipeline.data.records import read_records
from training_pipeline.errors import DataError, UserError

HEX_SUFFIXES = (".hex", ".bin", ".txt", ".evm")


@dataclass
class ScanInput:
    """One contract to scan: any subset of source, runtime bytecode and a transaction history."""

    name: str
    source_code: str | None = None
    bytecode: str | None = None
    tx_path: str | None = None
    address: str | None = None
    compiler: str | None = None
    notes: list[str] = field(default_factory=list)


def _read_text(path: Path, what: str) -> str:
    if not path.exists():
        raise DataError(f"{path}: no such file ({what})")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a {what} file")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise DataError(f"{path}: empty file ({what})")
    return text


def compile_source(source: str, name: str, solc: str | None = None) -> tuple[str, str]:
    """(runtime bytecode, compiler version) of ``source``; the version from its pragma (oldest bundled solc
    that satisfies it and compiles) unless ``solc`` is given."""
    bundled = sorted(taxonomy.COMPILER_VERSIONS.values())
    if solc:
        if solc not in bundled:
            raise UserError(f"--solc {solc}: not a bundled compiler; bundled: {', '.join(bundled)}")
        versions = [solc]
    else:
        constraints = pragma_constraints(source)
        if not constraints:
            raise DataError(
                f"{name}: no 'pragma solidity' line, cannot choose a compiler (give --solc VERSION)"
            )
        versions = compatible_compilers(source)
        if not versions:
            raise DataError(
                f"{name}: pragma solidity {' '.join(constraints)}: no bundled compiler satisfies it "
                f"(bundled: {', '.join(bundled)})"
            )
    contract = main_contract(source)
    if contract is None:
        raise DataError(f"{name}: no contract declaration found (not Solidity source?)")
    try:
        results = compile_many([CompileJob(source, v, contract) for v in versions], n_workers=1)
    except (SolcNotInstalledError, CompileError) as exc:
        raise UserError(f"{name}: cannot compile ({exc})") from None
    for version, result in zip(versions, results, strict=True):
        if result.ok:
            return result.bytecode, version
    first = (results[0].error or "no bytecode").strip().splitlines()[0][:200]
    raise DataError(f"{name}: does not compile with solc {versions[0]}: {first}")


def read_solidity(path: str | Path, solc: str | None = None, compile_bytecode: bool = True) -> ScanInput:
    """A ``.sol`` file, compiled to its runtime bytecode unless ``compile_bytecode`` is False."""
    path = Path(path)
    source = _read_text(path, "Solidity source")
    item = ScanInput(name=str(path), source_code=source)
    if compile_bytecode:
        item.bytecode, item.compiler = compile_source(source, str(path), solc)
    return item


def read_bytecode(value: str, name: str | None = None) -> ScanInput:
    """Runtime bytecode hex, given inline or as a file (``.hex``/``.bin``/``.txt`` or any existing path)."""
    path = Path(value)
    is_file = len(value) < 4096 and (path.suffix in HEX_SUFFIXES or path.exists())
    text = _read_text(path, "runtime bytecode") if is_file else value
    label = name or (str(path) if is_file else "bytecode")
    return ScanInput(name=label, bytecode=parse_bytecode(text, label))


def parse_bytecode(text: str, label: str) -> str:
    """Runtime bytecode hex text as ``0x``-prefixed lowercase hex; never read as a path."""
    try:
        code = parse_hex(text.strip(), source=label)
    except InvalidBytecodeError as exc:
        raise DataError(f"{label}: invalid bytecode hex ({exc})") from None
    if not code:
        raise DataError(f"{label}: empty bytecode")
    return "0x" + code.hex()


def detect_address(path: Path) -> str:
    """The address a transaction export is about: the created contract, else the most frequent receiver."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in reader.fieldnames or []]
        if "to" not in header:
            raise DataError(f"{path}: missing column(s) to; header is {header}")
        counts: Counter = Counter()
        for row in reader:
            row = {(k or "").strip(): (v or "").strip().lower() for k, v in row.items()}
            if row.get("contractAddress"):
                return row["contractAddress"]
            if row.get("to"):
                counts[row["to"]] += 1
    if not counts:
        raise DataError(f"{path}: no transactions")
    return counts.most_common(1)[0][0]


def read_transactions(path: str | Path, address: str | None = None) -> ScanInput:
    """A transaction CSV export (Etherscan layout) of ``address`` (default: the address it is about)."""
    path = Path(path)
    _read_text(path, "transaction CSV")
    address = (address or detect_address(path)).lower()
    return ScanInput(name=str(path), tx_path=str(path), address=address)


def read_texts(
    source: str | None = None,
    bytecode: str | None = None,
    transactions_csv: str | None = None,
    *,
    address: str | None = None,
    name: str | None = None,
    solc: str | None = None,
    workdir: str | Path | None = None,
) -> ScanInput:
    """One contract from in-memory views (the scan service's request), read as the CLI reads its files:
    source compiled as a ``.sol`` file is, bytecode as ``--bytecode`` (replacing the compiled one), the CSV
    written to ``workdir/transactions.csv`` (default: a new temporary folder the caller removes once
    scanned) and read as ``--transactions``. Bad input is the same one-line error, naming ``name``."""
    if source is None and bytecode is None and transactions_csv is None:
        raise UserError("nothing to scan: give source, bytecode or a transaction CSV")
    given = [v for v, text in (("source", source), ("bytecode", bytecode)) if text is not None]
    label = name or (given[0] if given else "transactions")
    item = ScanInput(name=label)
    if source is not None:
        if not source.strip():
            raise DataError(f"{label}: empty Solidity source")
        item.source_code = source
        item.bytecode, item.compiler = compile_source(source, label, solc)
    extra = ScanInput(name=label)
    if bytecode is not None:
        extra.bytecode = parse_bytecode(bytecode, label)
    if transactions_csv is not None:
        folder = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="scan-"))
        path = folder / "transactions.csv"
        path.write_text(transactions_csv, encoding="utf-8")
        try:
            tx = read_transactions(path, address)
        except DataError as exc:
            raise DataError(str(exc).replace(str(path), f"{label} (transactions CSV)")) from None
        extra.tx_path, extra.address = tx.tx_path, tx.address
    _merge(item, extra)
    return item


def read_contract_file(path: str | Path, solc: str | None = None) -> list[ScanInput]:
    """Every record of an interchange file; a record with source but no bytecode is compiled."""
    items = []
    for r in read_records(path):
        item = ScanInput(
            name=f"{path}#{r['id']}", source_code=r.get("source_code"), bytecode=r.get("bytecode")
        )
        if item.bytecode is None and item.source_code:
            item.bytecode, item.compiler = compile_source(
                item.source_code, item.name, solc or r.get("compiler_version")
            )
        if item.source_code is None and item.bytecode is None:
            raise DataError(f"{item.name}: neither source_code nor bytecode")
        items.append(item)
    return items


def read_inputs(
    inputs: list[str],
    bytecode: str | None = None,
    transactions: str | None = None,
    address: str | None = None,
    solc: str | None = None,
) -> list[ScanInput]:
    """Positional inputs by suffix (.sol, hex file, .csv, contract file), plus the views given by flags.

    A single positional contract and the flags describe one contract (their views are merged); with several
    positional inputs each is scanned on its own."""
    items: list[ScanInput] = []
    for value in inputs:
        path = Path(value)
        suffix = path.suffix.lower()
        if suffix == ".sol":
            items.append(read_solidity(path, solc))
        elif suffix == ".csv":
            items.append(read_transactions(path, address))
        elif suffix in RECORD_SUFFIXES:
            items.extend(read_contract_file(path, solc))
        elif suffix in HEX_SUFFIXES or value.startswith("0x") or not path.exists():
            items.append(read_bytecode(value))
        else:
            raise UserError(
                f"{value}: unknown input type (expected .sol, .hex/.bin/.txt, .csv, .jsonl/.json/.parquet)"
            )
    extra = ScanInput(name="")
    if bytecode:
        extra.bytecode = read_bytecode(bytecode).bytecode
        extra.name = bytecode if len(bytecode) < 80 else "bytecode"
    if transactions:
        tx = read_transactions(transactions, address)
        extra.tx_path, extra.address = tx.tx_path, tx.address
        extra.name = extra.name or tx.name
    if extra.bytecode or extra.tx_path:
        if len(items) > 1:
            raise UserError(
                "--bytecode/--transactions describe one contract: give at most one positional input"
            )
        if items:
            _merge(items[0], extra)
        else:
            items.append(extra)
    if not items:
        raise UserError("nothing to scan: give a .sol file, bytecode, a transaction CSV or a contract file")
    return items


def _merge(base: ScanInput, extra: ScanInput) -> None:
    """Add the views given by flags to the one positional contract."""
    if extra.bytecode:
        if base.bytecode and base.compiler:
            base.notes.append("bytecode given: used instead of the compiled one")
        base.bytecode, base.compiler = extra.bytecode, None
    if extra.tx_path:
        base.tx_path, base.address = extra.tx_path, extra.address
