"""What to scan: Solidity files and project folders (compiled with their imports by the solc release their
pragmas ask for, see ``scan.project``), runtime bytecode, a transaction CSV export and contract interchange
files, read into ``ScanInput``s; bad input is a one-line error naming it."""

from __future__ import annotations

import csv
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from training_pipeline.corpus.solc_resolver import SolcResolver
from training_pipeline.data.importers.solidity import declarations, main_contract
from training_pipeline.data.records import SUFFIXES as RECORD_SUFFIXES
from training_pipeline.data.records import read_records
from training_pipeline.errors import DataError, UserError
from training_pipeline.scan.bytecode import runtime_of
from training_pipeline.scan.project import (
    CompiledFile,
    ProjectCompiler,
    compile_text,
    find_solidity,
    link_zero,
)

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
    """(runtime bytecode, compiler version) of one in-memory source's main contract (the last deployable
    one, see ``main_contract``); the release is the newest its pragma allows (found, installed, or the newest
    available offline) unless ``solc`` names one. Imports cannot be resolved here: scan the file instead."""
    if not any(d.kind == "contract" for d in declarations(source)):
        raise DataError(f"{name}: no contract declaration found (not Solidity source?)")
    if solc:
        _check_release(solc)
    contracts, version = compile_text(source, name, solc)
    chosen = main_contract(source)
    if not contracts.get(chosen or ""):
        deployable = [d.name for d in declarations(source) if d.kind == "contract" and contracts.get(d.name)]
        if not deployable:
            raise DataError(f"{name}: no contract with deployed bytecode (only interfaces or abstract ones)")
        chosen = deployable[-1]
    return "0x" + link_zero(contracts[chosen])[0].lower(), version


def _check_release(solc: str, resolver: SolcResolver | None = None) -> None:
    """``--solc``: any known solc-js release (installed on demand), else one error naming what is known."""
    resolver = resolver or SolcResolver()
    if not resolver.is_known(solc):
        raise UserError(f"--solc {solc}: not a solc-js release; {resolver.describe_known()}")


@dataclass
class InputSet:
    """What the positional inputs and flags hold: the contracts to scan, those not scanned (interfaces,
    libraries, abstract and base contracts: ``path:Name (why)``) and one ``<file>: <reason>`` line per
    Solidity file that could not be read or compiled (the other files are still scanned)."""

    items: list[ScanInput] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _solidity_inputs(compiled: CompiledFile, found: InputSet) -> list[ScanInput]:
    """One ScanInput per deployable contract of a compiled file (named ``path:Contract``)."""
    label = str(compiled.path)
    if compiled.error:
        found.errors.append(f"{label}: {compiled.error}")
        return []
    skipped = [f"{name} ({why})" for name, why in compiled.skipped.items()]
    found.skipped += [f"{label}:{s}" for s in skipped]
    items = []
    for name, code in compiled.contracts.items():
        item = ScanInput(
            name=f"{label}:{name}", source_code=compiled.source, bytecode=code, compiler=compiled.version
        )
        item.notes += compiled.notes + compiled.contract_notes.get(name, [])
        if skipped:
            item.notes.append(f"not scanned in {label}: {', '.join(skipped)}")
        items.append(item)
    return items


def read_bytecode(value: str, name: str | None = None) -> ScanInput:
    """Runtime bytecode hex, given inline or as a file (``.hex``/``.bin``/``.txt`` or any existing path)."""
    path = Path(value)
    is_file = len(value) < 4096 and (path.suffix in HEX_SUFFIXES or path.exists())
    text = _read_text(path, "runtime bytecode") if is_file else value
    label = name or (str(path) if is_file else "bytecode")
    item = ScanInput(name=label)
    item.bytecode = parse_bytecode(text, label, item.notes)
    return item


def parse_bytecode(text: str, label: str, notes: list[str] | None = None) -> str:
    """Runtime bytecode (``0x`` lowercase hex) of runtime or creation bytecode hex text, library placeholders
    linked to 0x0 (``scan.bytecode``); what was done is appended to ``notes``. Never read as a path."""
    code, done = runtime_of(text, label)
    if notes is not None:
        notes.extend(done)
    return code


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
        extra.bytecode = parse_bytecode(bytecode, label, extra.notes)
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
            name=f"{path}#{r['id']}",
            source_code=r.get("source_code"),
            bytecode=r.get("bytecode"),
            compiler=r.get("compiler_version"),
        )
        if item.bytecode is None and item.source_code:
            item.bytecode, item.compiler = compile_source(
                item.source_code, item.name, solc or r.get("compiler_version")
            )
        if item.source_code is None and item.bytecode is None:
            raise DataError(f"{item.name}: neither source_code nor bytecode")
        items.append(item)
    return items


def collect_inputs(
    inputs: list[str],
    bytecode: str | None = None,
    transactions: str | None = None,
    address: str | None = None,
    solc: str | None = None,
    *,
    exclude: Sequence[str] = (),
    include_tests: bool = False,
    cache_dir: str | Path | bool | None = None,
    resolver: SolcResolver | None = None,
) -> InputSet:
    """Positional inputs by suffix (.sol, a folder of them, hex file, .csv, contract file), plus the views
    given by flags.

    A ``.sol`` file gives every deployable contract it declares (``path:Contract``), compiled once with all it
    imports; a folder every ``.sol`` file below it (``project.find_solidity``: tests, mocks, ``node_modules``,
    ``script/`` and Foundry's ``lib/`` skipped unless ``include_tests`` / not matched by an ``exclude`` glob).
    A Solidity file that cannot be compiled is an ``errors`` line, not an exception. A single positional
    contract and the flags describe one contract (their views are merged); with several each is scanned on
    its own."""
    resolver = resolver or SolcResolver()
    if solc:
        _check_release(solc, resolver)
    plan: list[tuple[str, list[Path] | list[ScanInput]]] = []  # in positional order
    for value in inputs:
        path = Path(value)
        suffix = path.suffix.lower()
        if path.is_dir():
            files = find_solidity(path, exclude, include_tests)
            if not files:
                raise DataError(
                    f"{value}: no Solidity (.sol) files to scan (tests, mocks, node_modules, script/ and "
                    "lib/ are skipped; see --include-tests and --exclude)"
                )
            plan.append(("sol", files))
        elif suffix == ".sol":
            _read_text(path, "Solidity source")
            plan.append(("sol", [path]))
        elif suffix == ".csv":
            plan.append(("items", [read_transactions(path, address)]))
        elif suffix in RECORD_SUFFIXES:
            plan.append(("items", read_contract_file(path, solc)))
        elif suffix in HEX_SUFFIXES or value.startswith("0x") or not path.exists():
            plan.append(("items", [read_bytecode(value)]))
        else:
            raise UserError(
                f"{value}: unknown input type (expected .sol, a folder, .hex/.bin/.txt, .csv, "
                ".jsonl/.json/.parquet)"
            )
    sol_files = list(dict.fromkeys(p for kind, ps in plan if kind == "sol" for p in ps))
    compiler = ProjectCompiler(solc, resolver, cache_dir)
    compiled = dict(zip(sol_files, compiler.compile(sol_files), strict=True))
    found = InputSet()
    for kind, entries in plan:
        for entry in entries:
            if kind == "sol":
                found.items += _solidity_inputs(compiled[entry], found)  # type: ignore[index]
            else:
                found.items.append(entry)  # type: ignore[arg-type]
    extra = ScanInput(name="")
    if bytecode:
        given = read_bytecode(bytecode)
        extra.bytecode, extra.notes = given.bytecode, given.notes
        extra.name = bytecode if len(bytecode) < 80 else "bytecode"
    if transactions:
        tx = read_transactions(transactions, address)
        extra.tx_path, extra.address = tx.tx_path, tx.address
        extra.name = extra.name or tx.name
    if extra.bytecode or extra.tx_path:
        if len(found.items) > 1:
            raise UserError(
                "--bytecode/--transactions describe one contract: give at most one positional input "
                f"(the inputs hold {len(found.items)} contracts)"
            )
        if found.items:
            _merge(found.items[0], extra)
        elif not found.errors:
            found.items.append(extra)
    if not found.items and not found.errors:
        if found.skipped:
            raise DataError(f"nothing deployable to scan; not scanned: {', '.join(found.skipped)}")
        raise UserError(
            "nothing to scan: give a .sol file or folder, bytecode, a transaction CSV or a contract file"
        )
    return found


def read_inputs(
    inputs: list[str],
    bytecode: str | None = None,
    transactions: str | None = None,
    address: str | None = None,
    solc: str | None = None,
    *,
    exclude: Sequence[str] = (),
    include_tests: bool = False,
    cache_dir: str | Path | bool | None = None,
) -> list[ScanInput]:
    """The contracts ``collect_inputs`` finds; any file it could not read or compile is a DataError (the
    first one, with how many more there are)."""
    found = collect_inputs(
        inputs,
        bytecode,
        transactions,
        address,
        solc,
        exclude=exclude,
        include_tests=include_tests,
        cache_dir=cache_dir,
    )
    if found.errors:
        more = f" (and {len(found.errors) - 1} more)" if len(found.errors) > 1 else ""
        raise DataError(found.errors[0] + more)
    return found.items


def _merge(base: ScanInput, extra: ScanInput) -> None:
    """Add the views given by flags to the one positional contract."""
    if extra.bytecode:
        if base.bytecode and base.compiler:
            base.notes.append("bytecode given: used instead of the compiled one")
        base.bytecode, base.compiler = extra.bytecode, None
        base.notes += extra.notes
    if extra.tx_path:
        base.tx_path, base.address = extra.tx_path, extra.address
