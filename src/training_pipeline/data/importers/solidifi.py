"""SolidiFI benchmark → contract records: label per bug folder, lines from BugLog, leaks removed, compiled.

Layout (``data.solidifi.path``, the dataset folder or its ``buggy_contracts/``): ``<BugFolder>/buggy_<N>.sol``
with ``BugLog_<N>.csv`` (``loc,length,bug type,approach``; ``loc`` is the 1-based first line of an injected
snippet of ``length`` lines). ``buggy_<N>.sol`` is the same base contract in every folder, so the record
group is ``base_<N>``: a base never straddles splits. What the importer does to each file, keeping every
line where it was (edits stay within lines), so ``vulnerable_lines`` stay valid:

- **Label** = ``label_map[folder]`` (each folder holds one injected bug type). The CSV's ``bug type`` is
  decoded (its text was saved as UTF-7: ``Re+AC0-erntrancy`` is ``Re-erntrancy``; the upstream typo is
  accepted as ``Re-entrancy``) and must name the folder's type.
- **Comments**: every comment that starts on an injected line (the snippets' own comments, e.g.
  ``//bug``, ``// Forces one bet per block``) and every label-bearing comment elsewhere is blanked.
- **Identifiers**: the injected names carry the bug type (``bug_unchk_send13``, ``play_TOD13``,
  ``counter_re_ent7``, ``vundflw1``, ...). Every identifier made of ``_``-separated parts (trailing digits
  dropped) that contain a bug marker (``LEAKY_PARTS``, or the parts ``re`` + ``ent``, or a ``vundflw``
  prefix) is renamed to ``sym<k>`` (k = order of first appearance in the file, skipping names the file
  already uses): the same old name gets the same new name throughout the file, comments and strings
  included, and the new names say nothing about the bug type or folder. A scan of all 350 files found 62
  such names (digits dropped), listed in tests/integration/test_solidifi.py. Base-contract names that
  merely mention a vulnerability (``ReentrancyGuard``, ``nonReentrant``) occur in all seven folders and
  are kept. Snippet names without a marker (``_weiToWithdraw``, ``_vtime``) are kept too.
- **Compile** with ``compiler_version`` (0.5.17). Main contract: the non-abstract contract whose
  inheritance closure (itself and its bases, transitively) holds most injected lines, ties → the last
  declared (``solidity.main_contract``); so the bytecode holds the injected code wherever the snippets
  went. If that contract has no bytecode the compiler's default (the last deployable contract) is used.
  With several ``compile_variants`` (the corpus's format: ``o0``, ``o1-r200``, ...) the first is ``bytecode``
  and each compiled record is built again under the others into ``bytecode_variants`` (same record, so the
  same group): evaluation conditions for the real-world benchmark.
"""

from __future__ import annotations

import csv
import logging
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training_pipeline import taxonomy
from training_pipeline.corpus.solc import CompileJob, SolcPool
from training_pipeline.data.clean import IDENTIFIER, blank_label_comments
from training_pipeline.data.contracts import LoadedSource
from training_pipeline.data.importers.solidity import lines_covered, main_contract
from training_pipeline.data.importers.store import (
    build_once,
    compile_variants,
    import_key,
    import_variants,
    label_counts,
    load_stored,
    plain,
    variant_counts,
    variants_content,
)
from training_pipeline.errors import ConfigError, DataError
from training_pipeline.utils.checks import config_dataclass
from training_pipeline.utils.files import file_sha256
from training_pipeline.utils.splits import assign_folds

log = logging.getLogger(__name__)

IMPORTER_VERSION = 1  # bump when the records it produces change for the same input
LEAKY_PARTS = frozenset(
    {"bug", "bugv", "intou", "tod", "tmstmp", "txorigin", "unchk", "uncheck", "undrflow", "ovrflow"}
    | {"unhandledsend", "vundflw"}
)
_BUG_TYPE_ALIASES = {"Re-erntrancy": "Re-entrancy"}  # upstream typo in every Re-entrancy BugLog
_FILE = re.compile(r"buggy_(\d+)\.sol")


@dataclass(frozen=True)
class SolidifiConfig:
    """``data.solidifi``: where the benchmark is, how its folders map to the taxonomy, how to compile."""

    path: str
    label_map: Mapping[str, str] = field(default_factory=dict)
    compiler_version: str = "0.5.17"
    n_workers: int = 2  # solc-js processes; does not change the content
    n_folds: int = 5  # grouped folds over the base contracts (data.split.n_folds)
    seed: int = 0
    compile_variants: Sequence[Mapping] | None = None  # None: optimizer off only (corpus.build rules)

    def __post_init__(self) -> None:
        variants = import_variants(self.compile_variants, "data.solidifi.compile_variants")
        object.__setattr__(self, "compile_variants", variants)
        if not self.label_map:
            raise ConfigError("data.solidifi.label_map: map each bug folder to a taxonomy label")
        try:
            taxonomy.validate_labels(list(self.label_map.values()), where="data.solidifi.label_map")
        except taxonomy.UnknownLabelError as exc:
            raise ConfigError(str(exc)) from None
        if self.compiler_version not in taxonomy.COMPILER_VERSIONS.values():
            raise ConfigError(
                f"data.solidifi.compiler_version={self.compiler_version!r}: expected one of "
                f"{sorted(taxonomy.COMPILER_VERSIONS.values())}"
            )

    def content_fields(self) -> dict[str, Any]:
        return {
            "label_map": dict(sorted(self.label_map.items())),
            "compiler_version": self.compiler_version,
            **variants_content(self.compile_variants),
        }


def is_leaky(name: str) -> bool:
    """True for an identifier that names an injected bug type (see the module docstring)."""
    parts = [re.sub(r"\d+$", "", p).lower() for p in name.split("_")]
    if any(p in LEAKY_PARTS for p in parts) or parts[0].startswith("vundflw"):
        return True
    return any(a == "re" and b == "ent" for a, b in zip(parts, parts[1:], strict=False))


def leaky_identifiers(source: str) -> set[str]:
    """Every leaky identifier anywhere in ``source`` (code, comments and strings alike)."""
    return {name for name in set(IDENTIFIER.findall(source)) if is_leaky(name)}


def neutralize_identifiers(source: str) -> tuple[str, dict[str, int]]:
    """Rename leaky identifiers to ``sym<k>`` consistently within the source.

    Returns the new source and, per renamed identifier, how many times it occurred.
    """
    counts = Counter(IDENTIFIER.findall(source))
    renames: dict[str, str] = {}
    k = 0
    for old in counts:  # first-appearance order
        if is_leaky(old):
            k += 1
            while f"sym{k}" in counts:
                k += 1
            renames[old] = f"sym{k}"
    if renames:
        source = IDENTIFIER.sub(lambda m: renames.get(m.group(), m.group()), source)
    return source, {old: counts[old] for old in renames}


def decode_buglog(raw: bytes) -> str:
    """BugLog text: UTF-7 (as saved upstream: ``+AC0-`` is ``-``), falling back to UTF-8."""
    try:
        return raw.decode("utf-7")
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace")


def read_buglog(path: Path, folder: str, n_lines: int) -> list[int]:
    """Injected lines (1-based, sorted) of one BugLog; a malformed row is a DataError naming file and row."""
    try:
        rows = list(csv.reader(decode_buglog(path.read_bytes()).splitlines()))
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["loc", "length"]:
        raise DataError(f"{path}: expected a 'loc,length,bug type,approach' header")
    lines: set[int] = set()
    for i, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        try:
            loc, length = int(row[0]), int(row[1])
        except (ValueError, IndexError):
            raise DataError(f"{path}:{i}: loc and length must be integers, got {row[:2]}") from None
        bug_type = row[2].strip() if len(row) > 2 else ""
        bug_type = _BUG_TYPE_ALIASES.get(bug_type, bug_type)
        if bug_type != folder:
            raise DataError(f"{path}:{i}: bug type {bug_type!r} does not match its folder {folder!r}")
        if loc < 1 or length < 1 or loc + length - 1 > n_lines:
            raise DataError(
                f"{path}:{i}: lines {loc}..{loc + length - 1} are outside the contract (1..{n_lines})"
            )
        lines.update(range(loc, loc + length))
    if not lines:
        raise DataError(f"{path}: no injected bug listed")
    return sorted(lines)


def find_files(cfg: SolidifiConfig) -> tuple[Path, list[tuple[str, int, Path, Path]]]:
    """(root, [(folder, N, sol, buglog)]) for every bug folder present; DataError naming what is missing."""
    path = Path(cfg.path)
    if not path.is_dir():
        raise DataError(f"{path}: no such SolidiFI folder (data.solidifi.path)")
    root = path / "buggy_contracts" if (path / "buggy_contracts").is_dir() else path
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    unknown = [f for f in folders if f not in cfg.label_map]
    if unknown:
        raise DataError(
            f"{root}: bug folder(s) {unknown} have no taxonomy label in data.solidifi.label_map "
            f"(known: {sorted(cfg.label_map)})"
        )
    files = []
    for folder in folders:
        for sol in sorted((root / folder).glob("buggy_*.sol")):
            m = _FILE.fullmatch(sol.name)
            if m is None:
                continue
            log_path = sol.with_name(f"BugLog_{m.group(1)}.csv")
            if not log_path.is_file():
                raise DataError(f"{sol}: its bug log {log_path.name} is missing")
            files.append((folder, int(m.group(1)), sol, log_path))
    if not files:
        raise DataError(f"{root}: no <BugFolder>/buggy_<N>.sol files (is data.solidifi.path right?)")
    return root, files


def prepare(source: str, injected: list[int]) -> tuple[str, int, dict[str, int]]:
    """Blank the snippets' and label-bearing comments, then rename leaky identifiers (lines kept)."""
    cleaned, n_blanked = blank_label_comments(source, lines=injected)
    cleaned, renames = neutralize_identifiers(cleaned)
    assert cleaned.count("\n") == source.count("\n"), "clean-up must keep every line"
    return cleaned, n_blanked, renames


def import_solidifi(
    cfg: SolidifiConfig, data_dir: str | Path, cache_dir: str | Path | None = None, force: bool = False
) -> Path:
    """Import (once per config and input) into ``data/imported/solidifi/<key>/``; return that dir."""
    root, files = find_files(cfg)
    hashes = {f"{sol.parent.name}/{sol.name}": file_sha256(sol) for _, _, sol, _ in files}
    hashes |= {f"{lg.parent.name}/{lg.name}": file_sha256(lg) for _, _, _, lg in files}
    key = import_key({"config": cfg.content_fields(), "files": hashes, "importer": IMPORTER_VERSION})
    out = Path(data_dir) / "imported" / "solidifi" / key
    cache = Path(cache_dir) if cache_dir is not None else Path(data_dir) / "solc_cache"
    return build_once(out, lambda: _build(cfg, root, files, cache), force=force)


def _build(
    cfg: SolidifiConfig, root: Path, files: list[tuple[str, int, Path, Path]], cache_dir: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    start = time.perf_counter()
    records: list[dict[str, Any]] = []
    renamed = occurrences = blanked = 0
    stems: set[str] = set()
    for folder, n, sol, log_path in files:
        try:
            source = sol.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{sol}: not a readable UTF-8 Solidity file ({exc})") from None
        injected = read_buglog(log_path, folder, source.count("\n") + 1)
        cleaned, n_blanked, renames = prepare(source, injected)
        renamed += len(renames)
        occurrences += sum(renames.values())
        stems.update(re.sub(r"\d+$", "", old) for old in renames)
        blanked += n_blanked
        label = cfg.label_map[folder]
        records.append(
            {
                "id": f"solidifi/{folder}/buggy_{n}",
                "group": f"base_{n}",
                "family": None,
                "compiler_version": cfg.compiler_version,
                "contract_name": main_contract(cleaned, injected),
                "source_code": cleaned,
                "bytecode": None,
                "labels": [label],
                "vulnerable_lines": {label: injected},
                "_injected": injected,
            }
        )
    prep_seconds = time.perf_counter() - start
    log.info("Compiling %d SolidiFI contracts with solc %s", len(records), cfg.compiler_version)
    first, *others = cfg.compile_variants
    failures = []
    with SolcPool(n_workers=cfg.n_workers, cache_dir=cache_dir) as pool:
        version = cfg.compiler_version
        jobs = [CompileJob(r["source_code"], version, r["contract_name"], **first) for r in records]
        results = pool.compile(jobs)
        retry = [
            i for i, res in enumerate(results) if not res.ok and "no deployed bytecode" in str(res.error)
        ]
        if retry:
            again = pool.compile([CompileJob(records[i]["source_code"], version, **first) for i in retry])
            for i, res in zip(retry, again, strict=True):
                results[i] = res
        for r, res in zip(records, results, strict=True):
            r["bytecode"], r["contract_name"] = (
                (res.bytecode, res.contract) if res.ok else (None, r["contract_name"])
            )
            if not res.ok:
                failures.append(f"{r['id']}: {res.error}")
        texts = [r["source_code"] for r in records]
        variant_failures = compile_variants(records, texts, first, others, pool, "SolidiFI")
        compile_stats = dict(pool.stats)
    if failures:
        log.warning("%d SolidiFI contracts failed to compile, e.g. %s", len(failures), failures[0])
    covered = sum(lines_covered(r["source_code"], r["contract_name"], r.pop("_injected")) for r in records)
    seconds = time.perf_counter() - start
    manifest = {
        "source": "solidifi",
        "importer_version": IMPORTER_VERSION,
        "path": str(root.resolve()),
        "config": cfg.content_fields(),
        "n_records": len(records),
        "n_groups": len({r["group"] for r in records}),
        "per_label": label_counts(records),
        "per_folder": {f: sum(1 for r in records if r["id"].split("/")[1] == f) for f in cfg.label_map},
        "injected_lines": sum(len(r["vulnerable_lines"][r["labels"][0]]) for r in records),
        "injected_lines_in_compiled_contract": covered,
        "renamed_identifiers": renamed,
        "renamed_occurrences": occurrences,
        "renamed_stems": sorted(stems),  # the renamed names, trailing digits dropped
        "blanked_comments": blanked,
        "compile": {
            **compile_stats,
            "fallback_to_default_contract": len(retry),
            "variants": variant_counts(records, cfg.compile_variants),
            "variant_failed": variant_failures[:20],
            "failures": len(failures),
            "failed": failures[:20],
        },
        "seconds": {"prepare": round(prep_seconds, 2), "total": round(seconds, 2)},
    }
    return records, manifest


def load_solidifi(cfg: dict, data_dir: Path) -> LoadedSource:
    """The ``solidifi`` source of ``ContractDataModule``: imported once, folds dealt by base contract."""
    config = config_dataclass(SolidifiConfig, plain(cfg), "data.solidifi")
    records, manifest = load_stored(import_solidifi(config, data_dir))
    folds = assign_folds([r["group"] for r in records], [None] * len(records), config.n_folds, config.seed)
    for r in records:
        r["fold"] = folds[r["group"]]
    return LoadedSource(records, "sha256:" + manifest["content_hash"])
