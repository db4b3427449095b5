"""Scan: contracts per second for a folder of real audited contracts, from source and from bytecode, side by
side with Slither on the same files in the same run.

The folder: OpenZeppelin Contracts 4.9.6 (Solidity 0.8) from the real-code corpus, as the real-code importer
installs it (``data/real_code/npm/...``; installed with npm through ``ensure_package`` when missing):
``token/`` (ERC20/ERC721/ERC1155/ERC777 and their extensions), ``token/ERC20`` in quick mode. The folder is
read as ``scathat scan <folder>`` reads it (``collect_inputs``: every file compiled once with its imports,
one input per deployable contract) and scanned with ``Scanner.scan`` (batched through the models):

- ``source_cold``: an empty compile cache: compile + models (the compiler dominates);
- ``source_warm``: the same folder again with that cache: reading, import closure, cache hits and models
  (``compiled_files`` says how many files the compiler saw: 0 when every hit was cached);
- ``bytecode``: the runtime bytecodes the cold pass compiled, scanned as bytecode inputs (models only);
- ``slither``: the project's Slither runner (``label_sources``, a fresh ``FindingsCache``: nothing cached)
  on the same ``.sol`` files, two ways: ``tree`` (each file analysed in place with its imports through the
  solc-js bridge, as the weak-label stage analyses real code) and ``text`` (each file's text alone, as the
  scanner's ``--static-analysis`` view passes it: a file that imports others cannot compile that way).

The model: ``BENCH_SCAN_MODEL`` (a package path or registry ref) if set, else the default-size untrained
bytecode detector of the serving benchmark (speed depends on the network's size, not its weights). Slither's
contracts/s divides the same deployable contracts by Slither's time on the files that hold them.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from training_pipeline.benchmarks.serving import default_package
from training_pipeline.config import project_root
from training_pipeline.corpus import imports as corpus_imports
from training_pipeline.corpus.solc_resolver import SolcResolver
from training_pipeline.data.importers.real_code import (
    PackageSpec,
    RealCodeConfig,
    ensure_package,
    package_dir,
)
from training_pipeline.scan.inputs import ScanInput, collect_inputs
from training_pipeline.scan.project import ProjectCompiler, find_solidity
from training_pipeline.scan.scanner import Scanner
from training_pipeline.utils.solidity import solidity_pragmas

PACKAGE = PackageSpec("@openzeppelin/contracts", "4.9.6", licence="MIT")
FOLDER, QUICK_FOLDER = "token", "token/ERC20"
SLITHER_WORKERS, SLITHER_TIMEOUT_S = 2, 120.0


def audited_folder(sub: str, data_dir: str | Path | None = None) -> tuple[Path, Path, bool]:
    """(folder ``sub`` of the installed package, its npm prefix, whether npm installed it just now)."""
    root = RealCodeConfig().npm_root(data_dir or project_root() / "data")
    installed_now = not package_dir(PACKAGE, root).is_dir()
    if installed_now:
        print(f"[scan] installing {PACKAGE.spec} into {root} with npm (network)", file=sys.stderr)
    return ensure_package(PACKAGE, root) / sub, root / PACKAGE.slug, installed_now


@contextmanager
def counting_compiles() -> Iterator[list[int]]:
    """Counts the source sets the project compiler sends to solc (``[n]``), cache hits excluded."""
    real = corpus_imports.compile_fresh_source_sets
    count = [0]

    def counted(jobs: Any, *args: Any, **kwargs: Any) -> Any:
        jobs = list(jobs)
        count[0] += len(jobs)
        return real(jobs, *args, **kwargs)

    corpus_imports.compile_fresh_source_sets = counted
    try:
        yield count
    finally:
        corpus_imports.compile_fresh_source_sets = real


def _rates(files: int, contracts: int, seconds: float) -> dict[str, Any]:
    return {
        "files": files,
        "contracts": contracts,
        "seconds": round(seconds, 3),
        "files_per_s": round(files / max(seconds, 1e-9), 2),
        "contracts_per_s": round(contracts / max(seconds, 1e-9), 2),
    }


def source_pass(
    scanner: Scanner, folder: Path, cache_dir: Path, n_files: int
) -> tuple[dict, list[ScanInput]]:
    """Read (compile or cache) and scan ``folder``: rates, compile and model seconds, solc compiles."""
    with counting_compiles() as compiled:
        start = time.perf_counter()
        found = collect_inputs([str(folder)], None, None, None, None, exclude=[], cache_dir=cache_dir)
        read_s = time.perf_counter() - start
        scanner.scan(found.items)
        total = time.perf_counter() - start
    row = _rates(n_files, len(found.items), total) | {
        "read_compile_s": round(read_s, 2),
        "models_s": round(total - read_s, 2),
        "compiled_files": compiled[0],
        "errors": len(found.errors),
        "not_scanned": len(found.skipped),
    }
    return row, found.items


def bytecode_pass(scanner: Scanner, items: list[ScanInput]) -> dict[str, Any]:
    """The compiled runtime bytecodes scanned as bytecode inputs (no source)."""
    byte_items = [ScanInput(it.name, bytecode=it.bytecode) for it in items if it.bytecode]
    start = time.perf_counter()
    scanner.scan(byte_items)
    row = _rates(0, len(byte_items), time.perf_counter() - start)
    del row["files"], row["files_per_s"]
    return row


def slither_pass(files: list[Path], boundary: Path, n_contracts: int, tmp: Path) -> dict[str, Any]:
    """Slither through ``label_sources`` on ``files``, with imports (``tree``) and each text alone
    (``text``), nothing cached; {"slither": None, "reason": ...} where Slither cannot run here."""
    try:
        import slither  # noqa: F401, PLC0415 - optional: only its presence is checked

        from training_pipeline.data.weak_labels.cache import FindingsCache  # noqa: PLC0415
        from training_pipeline.data.weak_labels.runner import label_sources  # noqa: PLC0415
        from training_pipeline.data.weak_labels.slither import tree_source  # noqa: PLC0415
    except ImportError as exc:
        return {"slither": None, "reason": f"Slither is not installed ({exc})"}
    resolver = SolcResolver()
    compiler = ProjectCompiler(resolver=resolver)
    texts = [f.read_text(encoding="utf-8") for f in files]
    out: dict[str, Any] = {"workers": SLITHER_WORKERS, "timeout_s": SLITHER_TIMEOUT_S}
    try:
        start = time.perf_counter()
        trees = [
            tree_source(f, compiler.version_for(solidity_pragmas(t)), resolver, boundary)
            for f, t in zip(files, texts, strict=True)
        ]
        ways = {"tree": (trees, time.perf_counter() - start), "text": (texts, 0.0)}
        for way, (sources, prep_s) in ways.items():
            cache = FindingsCache(tmp / f"slither-{way}")
            start = time.perf_counter()
            records, summary = label_sources(sources, cache, SLITHER_WORKERS, SLITHER_TIMEOUT_S)
            seconds = prep_s + time.perf_counter() - start
            statuses = dict(summary.statuses)
            out[way] = _rates(len(files), n_contracts, seconds) | {
                "analysed_ok": statuses.get("ok", 0),
                "failed": summary.failed,
                "statuses": statuses,
            }
    except RuntimeError as exc:  # a worker that cannot start (no node, a broken install)
        return {"slither": None, "reason": f"Slither could not run: {exc}"}
    out["note"] = (
        "tree: each file with its imports (node_modules), as the weak-label stage analyses real code; "
        "text: each file's text alone, as the scanner's --static-analysis passes it"
    )
    return {"slither": out}


def _ratio(ours: float, theirs: float | None) -> float | None:
    return round(ours / theirs, 2) if theirs else None


def run(
    quick: bool = False,
    folder: str | Path | None = None,
    slither: bool = True,
    model: str | None = None,
) -> dict:
    """The four passes on ``folder`` (default: OpenZeppelin 4.9.6 ``token/``, ``token/ERC20`` when quick)."""
    installed_now, boundary = False, None
    if folder is None:
        folder, boundary, installed_now = audited_folder(QUICK_FOLDER if quick else FOLDER)
    folder = Path(folder)
    files = find_solidity(folder)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        given = model or os.environ.get("BENCH_SCAN_MODEL")
        scanner = Scanner.from_model(given or str(default_package(tmp / "packages")))
        scanner.scan([ScanInput("warm-up", bytecode="0x6080604052600080fd")])  # lazy imports, allocator
        cold, items = source_pass(scanner, folder, tmp / "solc_cold", len(files))
        warm, _ = source_pass(scanner, folder, tmp / "solc_cold", len(files))
        byte = bytecode_pass(scanner, items)
        static = (
            slither_pass(files, boundary or folder, len(items), tmp)
            if slither
            else {"slither": None, "reason": "not run (slither=False)"}
        )
    tree = (static["slither"] or {}).get("tree") or {}
    per_s = tree.get("contracts_per_s")
    return {
        "scan": {
            "folder": str(folder),
            "package": PACKAGE.spec if boundary else None,
            "installed_now": installed_now,
            "model": given or "default-size bytecode detector, untrained weights",
            "source_cold": cold,
            "source_warm": warm,
            "bytecode": byte,
            **static,
            "ours_over_slither": {
                "source_cold": _ratio(cold["contracts_per_s"], per_s),
                "source_warm": _ratio(warm["contracts_per_s"], per_s),
                "bytecode": _ratio(byte["contracts_per_s"], per_s),
                "basis": "contracts/s against Slither with imports (tree) on the same files",
            },
        }
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
