"""CGT (Consolidated Ground Truth) → contract records: partial labels kept, compiled with bundled solc-js.

Input (``data.cgt.path``): the folder holding ``contracts.jsonl`` (or that file), already in the interchange
format plus ``negative_labels`` (classes assessed absent). Most CGT source sets assess a few classes only,
so a record's classes in neither ``labels`` nor ``negative_labels`` are *unassessed*: the datamodule masks
them in losses and metrics (``data.contracts.label_mask``). What the importer does to each record:

- **Labels** are checked against the taxonomy (an unknown one, or a class both positive and negative, is a
  one-line DataError naming the record); ``negative_labels`` are kept as they are.
- **Comments** carrying a label, a vulnerability name or a tool annotation are blanked (lines kept).
- **Groups**: records identical once pragmas, comments, whitespace and identifier names are normalized
  share a group (CGT has three such pairs that differ only in the pragma line).
- **Compile** (the bytecode view) with the oldest bundled solc-js release the pragma allows, the next one
  when that fails. The compiled text differs from the stored one only where old syntax needs it: an exact
  pragma (``pragma solidity 0.4.19;``) is relaxed to a caret of the same minor (``^0.4.19``, so the bundled
  0.4.26 builds it); pragma-less code and pre-0.4 pragmas (``^0.3.5``) compile with ``fallback_compiler``
  (their pragma becomes ``^0.4.0``); version numbers spelled with spaces (``^ 0.4 .6``) are closed up and
  ``solidity^0.4.24`` gets its space; a pre-0.4 modifier's bare placeholder ``_`` becomes ``_;`` (same
  code, 0.4 syntax). The contract compiled is the one the id names, else solc's default; calls into
  external libraries are linked to the zero address (solc leaves a 40-character ``__Name__`` placeholder
  where the library's address goes, which is not hex). A record that
  does not compile keeps its source with bytecode null; the manifest counts compiled and failed records
  per compiler.
- **Compile variants** (``compile_variants``, the corpus's format and keys: ``o0``, ``o1-r200``, ...): the
  first one picks the compiler as above and is ``bytecode``; with several, each record that compiled is
  compiled again under every other one with the same text, release and contract, and ``bytecode_variants``
  maps each variant's key to its bytecode (a variant that fails is left out of the map and counted). One
  record holds them all, so a contract's variants share its group and split.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training_pipeline import taxonomy
from training_pipeline.corpus.solc import CompileJob, SolcPool, compatible_compilers
from training_pipeline.data.clean import blank_label_comments, normalized_source_hash
from training_pipeline.data.contracts import LoadedSource
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
from training_pipeline.data.records import read_rows
from training_pipeline.errors import ConfigError, DataError
from training_pipeline.utils.checks import config_dataclass
from training_pipeline.utils.files import file_sha256
from training_pipeline.utils.solidity import code_only
from training_pipeline.utils.splits import assign_folds

log = logging.getLogger(__name__)

IMPORTER_VERSION = 4  # bump when the records it produces change for the same input
FILE_NAME = "contracts.jsonl"
PRE_04_PRAGMA = "^0.4.0"  # what a pre-0.4 pragma becomes in the compiled text
_PRAGMA = re.compile(r"\bpragma\s+solidity\b([^;]*);")
_EXACT = re.compile(r"^\s*=?\s*(\d+\.\d+\.\d+)\s*$")
_MINOR = re.compile(r"(\d+)\.(\d+)")
_SPACED_VERSION = re.compile(r"(\d)\s*\.\s*(?=\d)")
_BARE_PLACEHOLDER = re.compile(r"(?<![\w$.])_(?![\w$])(?=[ \t]*(?:\}|\n|$))")


@dataclass(frozen=True)
class CgtConfig:
    """``data.cgt``: where CGT is and how its contracts compile."""

    path: str
    compile: bool = True  # false: source only (bytecode null), e.g. for the code analyzer alone
    relax_exact_pragmas: bool = True  # `pragma solidity 0.4.19;` compiles as ^0.4.19 (a bundled release)
    fallback_compiler: str = "0.4.26"  # pragma-less and pre-0.4 code
    n_workers: int = 2  # solc-js processes; does not change the content
    n_folds: int = 5  # grouped folds (data.split.n_folds)
    seed: int = 0
    compile_variants: Sequence[Mapping] | None = None  # None: optimizer off only (corpus.build rules)

    def __post_init__(self) -> None:
        variants = import_variants(self.compile_variants, "data.cgt.compile_variants")
        object.__setattr__(self, "compile_variants", variants)
        if self.fallback_compiler not in taxonomy.COMPILER_VERSIONS.values():
            raise ConfigError(
                f"data.cgt.fallback_compiler={self.fallback_compiler!r}: expected one of "
                f"{sorted(taxonomy.COMPILER_VERSIONS.values())}"
            )

    def content_fields(self) -> dict[str, Any]:
        return {
            "compile": self.compile,
            "relax_exact_pragmas": self.relax_exact_pragmas,
            "fallback_compiler": self.fallback_compiler,
            **variants_content(self.compile_variants),
        }


def find_file(cfg: CgtConfig) -> Path:
    """The CGT records file; a one-line DataError naming the path when it is missing."""
    path = Path(cfg.path)
    file = path / FILE_NAME if path.is_dir() else path
    if not file.is_file():
        raise DataError(f"{file}: no such CGT file (data.cgt.path: the folder holding {FILE_NAME})")
    return file


# -- pragmas ------------------------------------------------------------------------------------------------
def _pragma_spans(source: str) -> list[tuple[int, int, str]]:
    """(start, end, constraint) of every ``pragma solidity ...;`` outside comments and strings."""
    code = code_only(source)
    return [(m.start(1), m.end(1), source[m.start(1) : m.end(1)]) for m in _PRAGMA.finditer(code)]


def _is_pre_04(constraint: str) -> bool:
    m = _MINOR.search(constraint)
    return m is not None and int(m.group(1)) == 0 and int(m.group(2)) < 4


def close_placeholders(source: str) -> tuple[str, int]:
    """``_`` → ``_;`` where a pre-0.4 modifier's placeholder ends its line or block; (text, how many)."""
    code = code_only(source)
    hits = [m.end() for m in _BARE_PLACEHOLDER.finditer(code)]
    for end in reversed(hits):
        source = source[:end] + ";" + source[end:]
    return source, len(hits)


def compile_plan(source: str, cfg: CgtConfig) -> tuple[str, list[str], str]:
    """(text to compile, bundled compilers to try in order, how the pragma was treated).

    The treatment is one of ``as_is``, ``relaxed`` (exact pragma → caret), ``pre_0.4`` and ``no_pragma``.
    """
    source = close_placeholders(source)[0]
    spans = _pragma_spans(source)
    for start, end, constraint in reversed(spans):
        closed = " " + _SPACED_VERSION.sub(r"\1.", constraint).lstrip()  # `solidity^0.4.24` too
        if closed != constraint:
            source = source[:start] + closed + source[end:]
    spans = _pragma_spans(source)
    if not spans:
        return source, [cfg.fallback_compiler], "no_pragma"
    treatment = "as_is"
    text = source
    if any(_is_pre_04(c) for _, _, c in spans):
        new, treatment = f" {PRE_04_PRAGMA}", "pre_0.4"
        for start, end, _ in reversed(spans):
            text = text[:start] + new + text[end:]
        return text, [cfg.fallback_compiler], treatment
    if cfg.relax_exact_pragmas:
        for start, end, constraint in reversed(spans):
            m = _EXACT.match(constraint)
            if m:
                text, treatment = text[:start] + f" ^{m.group(1)}" + text[end:], "relaxed"
    return text, compatible_compilers(text), treatment


def pragma_free_hash(source: str) -> str:
    """The clone hash of a source with its pragma statements dropped (near-duplicates up to the pragma)."""
    for start, end, _ in reversed(_pragma_spans(source)):
        source = source[:start] + source[end:]
    return normalized_source_hash(source)


# -- records ------------------------------------------------------------------------------------------------
def to_record(row: dict[str, Any], where: str) -> dict[str, Any]:
    """One CGT row as a stored record (labels checked, label comments blanked, pragma-free group)."""
    rid = row.get("id")
    if not isinstance(rid, str) or not rid:
        raise DataError(f"{where}: missing or empty 'id'")
    where = f"{where} (id {rid!r})"
    source = row.get("source_code")
    if not isinstance(source, str) or not source.strip():
        raise DataError(f"{where}: no source_code")
    labels = sorted(set(row.get("labels") or []))
    negatives = row.get("negative_labels")
    taxonomy.validate_labels(labels, where=f"{where} labels")
    if negatives is not None:
        negatives = sorted(set(negatives))
        taxonomy.validate_labels(negatives, where=f"{where} negative_labels")
        both = sorted(set(labels) & set(negatives))
        if both:
            raise DataError(f"{where}: {both} are in both labels and negative_labels")
    cleaned, n_blanked = blank_label_comments(source)
    name = rid.rsplit(":", 1)[1] if ":" in rid else None
    return {
        "id": "cgt/" + rid.removeprefix("source/"),
        "group": "cgt_" + pragma_free_hash(cleaned)[:16],
        "family": None,
        "compiler_version": row.get("compiler_version"),
        "contract_name": name,
        "source_code": cleaned,
        "bytecode": None,
        "labels": labels,
        "negative_labels": negatives,
        "vulnerable_lines": row.get("vulnerable_lines") or None,
        "_blanked": n_blanked,
    }


def import_cgt(
    cfg: CgtConfig, data_dir: str | Path, cache_dir: str | Path | None = None, force: bool = False
) -> Path:
    """Import (once per config and input) into ``data/imported/cgt/<key>/``; return that dir."""
    file = find_file(cfg)
    key = import_key(
        {
            "config": cfg.content_fields(),
            "files": {file.name: file_sha256(file)},
            "importer": IMPORTER_VERSION,
        }
    )
    out = Path(data_dir) / "imported" / "cgt" / key
    cache = Path(cache_dir) if cache_dir is not None else Path(data_dir) / "solc_cache"
    return build_once(out, lambda: _build(cfg, file, cache), force=force)


def _compile(
    records: list[dict[str, Any]], cfg: CgtConfig, cache_dir: Path
) -> tuple[dict[str, Any], list[str]]:
    """Fill ``bytecode`` and ``compiler_version`` of every record that compiles under the first compile
    variant, and ``bytecode_variants`` when there are several; (stats, failures)."""
    first, *others = cfg.compile_variants
    plans = [compile_plan(r["source_code"], cfg) for r in records]
    pending = {i: 0 for i, (_, versions, _) in enumerate(plans) if versions}
    last_error = {i: "no bundled solc release satisfies its pragma" for i in range(len(records))}
    per_compiler: dict[str, Counter] = {}
    linked = 0
    with SolcPool(n_workers=cfg.n_workers, cache_dir=cache_dir) as pool:
        while pending:
            order = sorted(pending)
            jobs = [
                CompileJob(plans[i][0], plans[i][1][pending[i]], records[i]["contract_name"], **first)
                for i in order
            ]
            results = pool.compile(jobs)
            retry = [
                i for i, res in zip(order, results, strict=True) if not res.ok and _wrong_contract(res.error)
            ]
            if retry:  # the named contract is missing or abstract: solc's default contract instead
                again = pool.compile(
                    [CompileJob(plans[i][0], plans[i][1][pending[i]], **first) for i in retry]
                )
                by_index = dict(zip(order, results, strict=True)) | dict(zip(retry, again, strict=True))
                results = [by_index[i] for i in order]
            for i, res in zip(order, results, strict=True):
                version = plans[i][1][pending[i]]
                if res.ok:
                    code, n_links = link_zero(res.bytecode)
                    linked += n_links > 0
                    records[i]["bytecode"], records[i]["compiler_version"] = code, version
                    records[i]["contract_name"] = res.contract
                    per_compiler.setdefault(version, Counter())["compiled"] += 1
                    del pending[i]
                    continue
                last_error[i] = f"solc {version}: {res.error}"
                if pending[i] + 1 < len(plans[i][1]):
                    pending[i] += 1  # try the next release the pragma allows
                else:
                    per_compiler.setdefault(version, Counter())["failed"] += 1
                    del pending[i]
        texts = [p[0] for p in plans]
        variant_failures = compile_variants(records, texts, first, others, pool, "CGT", link_zero)
        pool_stats = dict(pool.stats)
    failures = [f"{r['id']}: {last_error[i]}" for i, r in enumerate(records) if r["bytecode"] is None]
    no_compiler = sum(1 for _, versions, _ in plans if not versions)
    stats = {
        "compiled": sum(1 for r in records if r["bytecode"]),
        "failed": len(failures),
        "no_compatible_compiler": no_compiler,
        "linked_to_zero_address": linked,  # records calling external libraries
        "per_compiler": {v: dict(c) for v, c in sorted(per_compiler.items())},
        "pragma": dict(sorted(Counter(p[2] for p in plans).items())),
        "variants": variant_counts(records, cfg.compile_variants),
        "variant_failed": len(variant_failures),
        "variant_failed_examples": variant_failures[:20],
        "solc": pool_stats,
    }
    return stats, failures


def link_zero(bytecode: str) -> tuple[str, int]:
    """Library placeholders (``__Name___…``, 40 characters; never hex) → the zero address; (code, count)."""
    n = 0
    while (i := bytecode.find("__")) >= 0:
        bytecode, n = bytecode[:i] + "0" * 40 + bytecode[i + 40 :], n + 1
    return bytecode, n


def _wrong_contract(error: str | None) -> bool:
    """The named contract is missing or has no runtime code (abstract, interface, library)."""
    return "not found; available" in str(error) or "no deployed bytecode" in str(error)


def _build(cfg: CgtConfig, file: Path, cache_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    start = time.perf_counter()
    rows = read_rows(file)
    if not rows:
        raise DataError(f"{file}: no records")
    records = [to_record(row, f"{file} record {n}") for n, row in enumerate(rows, start=1)]
    ids = Counter(r["id"] for r in records)
    dup = next((i for i, c in ids.items() if c > 1), None)
    if dup is not None:
        raise DataError(f"{file}: duplicate id {dup!r}")
    blanked = sum(r.pop("_blanked") for r in records)
    compile_stats: dict[str, Any] = {"skipped": True}
    failures: list[str] = []
    if cfg.compile:
        log.info("Compiling %d CGT contracts with bundled solc-js (%d workers)", len(records), cfg.n_workers)
        compile_stats, failures = _compile(records, cfg, cache_dir)
        if failures:
            log.warning("%d CGT contracts did not compile (kept with source only)", len(failures))
    manifest = {
        "source": "cgt",
        "importer_version": IMPORTER_VERSION,
        "path": str(file.resolve()),
        "config": cfg.content_fields(),
        "pragma_policy": (
            "exact pragmas relaxed to a caret of the same minor (pragma solidity 0.4.19 -> ^0.4.19); "
            f"pragma-less and pre-0.4 code compiled with {cfg.fallback_compiler} "
            f"(pragma -> {PRE_04_PRAGMA}); "
            "oldest bundled release the pragma allows first, the next on failure"
            if cfg.relax_exact_pragmas
            else f"pragmas as written; pragma-less and pre-0.4 code compiled with {cfg.fallback_compiler}"
        ),
        "n_records": len(records),
        "n_groups": len({r["group"] for r in records}),
        "per_label": label_counts(records),
        "per_class": class_counts(records),
        "blanked_comments": blanked,
        "compile": {**compile_stats, "failed_examples": failures[:20]},
        "seconds": round(time.perf_counter() - start, 2),
    }
    return records, manifest


def class_counts(records: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per class: records positive, assessed negative and unassessed (masked)."""
    out = {}
    for c in taxonomy.VULNERABILITY_CLASSES:
        pos = sum(1 for r in records if c in r["labels"])
        neg = sum(
            1
            for r in records
            if c not in r["labels"] and (r.get("negative_labels") is None or c in r["negative_labels"])
        )
        out[c] = {"positive": pos, "negative": neg, "masked": len(records) - pos - neg}
    return out


def load_cgt(cfg: dict, data_dir: Path) -> LoadedSource:
    """The ``cgt`` source of ``ContractDataModule``: imported once, folds dealt by clone group."""
    config = config_dataclass(CgtConfig, plain(cfg), "data.cgt")
    path = import_cgt(config, data_dir)
    records, manifest = load_stored(path)
    folds = assign_folds([r["group"] for r in records], [None] * len(records), config.n_folds, config.seed)
    for r in records:
        r["fold"] = folds[r["group"]]
    return LoadedSource(records, "sha256:" + manifest["content_hash"])
