"""What the labelling stage reads: CGT, SolidiFI, the generated corpus, npm audited code (real_code), or
Solidity files and folders.

Every loader returns reference records ``{id, source_code, labels[, negative_labels]}``; a path that cannot
work (missing, empty, not Solidity) raises a one-line ``DataError``.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from training_pipeline.errors import DataError
from training_pipeline.utils.solidity import code_only

SOURCES: tuple[str, ...] = ("cgt", "solidifi", "corpus", "real_code", "file")
_DECLARATION = re.compile(r"\b(contract|library|interface)\s+[A-Za-z_$][\w$]*")


def looks_like_solidity(text: str) -> bool:
    """True when the text declares a contract, library or interface outside comments and strings."""
    try:
        return bool(_DECLARATION.search(code_only(text)))
    except Exception:  # the lexer gave up on it: not Solidity we can use
        return False


def read_solidity(path: Path) -> str:
    """A ``.sol`` file's text; a DataError when it is empty, binary or declares no contract."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if not raw.strip():
        raise DataError(f"{path}: empty file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text, so not a Solidity source") from None
    if "\x00" in text or not looks_like_solidity(text):
        raise DataError(f"{path}: not Solidity (no contract, library or interface declared)")
    return text


def _has_source(row: Mapping[str, Any]) -> bool:
    return isinstance(row.get("source_code"), str) and bool(row["source_code"].strip())


def _exists(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{path}: no such {what}")
    return path


def load_files(path: str | Path) -> list[dict[str, Any]]:
    """One ``.sol`` file, or every ``.sol`` under a folder (sorted; unusable ones skipped with a note)."""
    path = _exists(Path(path), "file or folder")
    if path.is_file():
        return [{"id": str(path), "source_code": read_solidity(path), "labels": []}]
    rows, skipped = [], []
    for f in sorted(path.rglob("*.sol")):
        try:
            rows.append({"id": str(f), "source_code": read_solidity(f), "labels": []})
        except DataError as exc:
            skipped.append(str(exc))
    if skipped:
        print(f"skipped {len(skipped)} unusable .sol file(s), e.g. {skipped[0]}", file=sys.stderr)
    if not rows:
        raise DataError(f"{path}: no usable .sol files in this folder")
    return rows


def load_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Interchange records (JSONL) that carry ``source_code``; records without it are skipped."""
    path = _exists(Path(path), "file")
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise DataError(f"{path}:{n}: not a JSON line") from None
            if isinstance(row, dict) and _has_source(row):
                rows.append(row)
    if not rows:
        raise DataError(f"{path}: no records with source_code")
    return rows


def load_cgt(path: str | Path) -> list[dict[str, Any]]:
    """CGT's contracts.jsonl: labels and negative_labels as the dataset gives them."""
    return [
        {
            "id": r["id"],
            "source_code": r["source_code"],
            "labels": list(r.get("labels") or []),
            "negative_labels": list(r.get("negative_labels") or []),
        }
        for r in load_jsonl(path)
    ]


def load_solidifi(path: str | Path, label_map: Mapping[str, str]) -> list[dict[str, Any]]:
    """SolidiFI's buggy_contracts/<BugType>/buggy_N.sol: the folder's label is the only class assessed."""
    root = _exists(Path(path), "folder")
    if (root / "buggy_contracts").is_dir():
        root = root / "buggy_contracts"
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        label = label_map.get(folder.name)
        for f in sorted(folder.glob("*.sol")):
            rows.append(
                {
                    "id": f"{folder.name}/{f.name}",
                    "source_code": read_solidity(f),
                    "labels": [label] if label else [],
                    "negative_labels": [],  # the base contracts are not certified free of other bugs
                }
            )
    if not rows:
        raise DataError(f"{root}: no <BugType>/*.sol files (expected SolidiFI's buggy_contracts/)")
    return rows


def load_corpus(path: str | Path) -> list[dict[str, Any]]:
    """The generated corpus: an exported JSONL (scripts/build_corpus.py --export) or a built corpus folder.

    The generator's labels are complete: every class is assessed (no negative_labels).
    """
    path = _exists(Path(path), "file or folder")
    if path.is_dir():
        from training_pipeline.corpus.build import load_corpus as load_built

        try:
            rows = load_built(path).to_list()
        except Exception as exc:
            raise DataError(f"{path}: not a built corpus folder ({exc})") from None
    else:
        from training_pipeline.data.records import read_records

        rows = read_records(path)
    out = []
    for r in rows:
        if _has_source(r):
            rec = {"id": str(r.get("id")), "source_code": r["source_code"]}
            rec["labels"] = list(r.get("labels") or [])
            if r.get("negative_labels") is not None:
                rec["negative_labels"] = list(r["negative_labels"])
            out.append(rec)
    if not out:
        raise DataError(f"{path}: no corpus records with source_code")
    return out


def load_real_code(data_dir: str | Path) -> list[dict[str, Any]]:
    """The npm audited records of ``data_dir`` (built by scripts/build_real_code.py; never installs here).

    Each record also carries ``path`` (its file inside the installed package tree), ``boundary`` (the npm
    prefix: node_modules above it are not searched) and ``compiler_version``; ``labels`` are [] and
    ``negative_labels`` absent: unlabeled code, every class unassessed.
    """
    from training_pipeline.data.importers.real_code import (
        PackageError,
        RealCodeConfig,
        default_config_block,
        import_real_code,
    )
    from training_pipeline.data.importers.store import load_stored
    from training_pipeline.utils.checks import config_dataclass

    data_dir = _exists(Path(data_dir), "folder")
    block = {**default_config_block(), "install": False}
    cfg = config_dataclass(RealCodeConfig, block, "data.real_code")
    try:
        outcome = import_real_code(cfg, data_dir)
    except PackageError as exc:
        raise DataError(f"real_code: {exc} (build it first: python scripts/build_real_code.py)") from None
    if outcome.failed:
        raise DataError(
            "real_code: package(s) not built: "
            + "; ".join(outcome.failed.values())
            + " (python scripts/build_real_code.py)"
        )
    rows = [r for stored in outcome.stored.values() for r in load_stored(stored)[0]]
    out = [
        {
            "id": r["id"],
            "source_code": r["source_code"],
            "labels": [],
            "family": r.get("family"),
            "compiler_version": r["compiler_version"],
        }
        for r in rows
    ]
    locate_real_code(out, data_dir, cfg)
    if not out:
        raise DataError(f"{data_dir}: no real_code records")
    return out


def locate_real_code(records: list[dict[str, Any]], data_dir: str | Path, cfg: Any = None) -> None:
    """Give each real_code record (id ``npm:<name>@<version>:<file>:<contract>``) the ``path`` of its file in
    the installed package tree and the ``boundary`` (its npm prefix: node_modules above it are not searched),
    in place, so Slither analyses it with its imports. ``cfg``: the RealCodeConfig (default: the packaged)."""
    from training_pipeline.data.importers.real_code import RealCodeConfig, default_config_block, package_dir
    from training_pipeline.utils.checks import config_dataclass

    if cfg is None:
        cfg = config_dataclass(RealCodeConfig, {**default_config_block(), "install": False}, "data.real_code")
    root = cfg.npm_root(data_dir).resolve()
    specs = {s.spec: s for s in cfg.specs}
    for r in records:
        name = str(r["id"])[len("npm:") :]
        spec = next((specs[k] for k in specs if name.startswith(k + ":")), None)
        if spec is None:
            raise DataError(f"record {r['id']!r}: not a record of the configured real_code packages")
        rel = name[len(spec.spec) + 1 :].rsplit(":", 1)[0]
        r["path"] = str(package_dir(spec, root).resolve() / rel)  # the manifest's path may be stale
        r["boundary"] = str(root / spec.slug)


def tree_sources(records: list[dict[str, Any]], resolver: Any = None) -> list[Any]:
    """Each record with a ``path`` as a ``TreeSource`` (analysed in place with its imports, the record's
    ``compiler_version``); one SolcResolver shared."""
    from training_pipeline.corpus.solc_resolver import SolcResolver
    from training_pipeline.data.weak_labels.slither import tree_source

    resolver = resolver or SolcResolver()
    return [
        tree_source(r["path"], r["compiler_version"], resolver, r.get("boundary"), record_id=r["id"])
        for r in records
    ]


def load_source(kind: str, path: str | Path | None, cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Records of one ``--source`` kind; ``path`` defaults to ``cfg['sources'][kind]`` where there is one."""
    if kind not in SOURCES:
        raise DataError(f"unknown source {kind!r}; expected one of {', '.join(SOURCES)}")
    path = path or (cfg.get("sources") or {}).get(kind)
    if not path:
        raise DataError(f"--source {kind} needs a PATH")
    if kind == "cgt":
        return load_cgt(path)
    if kind == "solidifi":
        return load_solidifi(path, cfg.get("solidifi_labels") or {})
    if kind == "corpus":
        return load_corpus(path)
    if kind == "real_code":
        return load_real_code(path)
    return load_files(path)


def select(records: list[dict[str, Any]], limit: int | None = None, sample: int | None = None, seed: int = 0):
    """A seeded random ``sample`` of the records (kept in input order), then the first ``limit`` of them."""
    if sample is not None and sample < len(records):
        keep = set(random.Random(seed).sample(range(len(records)), sample))
        records = [r for i, r in enumerate(records) if i in keep]
    return records[:limit] if limit is not None else records


# -- what Slither analyses for a record, as its user would run it -------------------------------------------
def original_texts(origin: str, data: Mapping[str, Any]) -> dict[str, str]:
    """Record id -> the contract's text as the dataset ships it, for the sources whose importer rewrites it
    (CGT blanks label comments, SolidiFI renames leaky identifiers): what Slither analyses and what its user
    would run it on. Empty for the others (their records keep the original text). ``data``: a contract
    data config block (its ``cgt`` / ``solidifi`` entries)."""
    from training_pipeline.data.importers.cgt import CgtConfig, find_file
    from training_pipeline.data.importers.solidifi import SolidifiConfig, find_files
    from training_pipeline.data.records import read_rows
    from training_pipeline.utils.checks import config_dataclass

    if origin == "cgt":
        file = find_file(config_dataclass(CgtConfig, data["cgt"], "data.cgt"))
        return {"cgt/" + str(r["id"]).removeprefix("source/"): r["source_code"] for r in read_rows(file)}
    if origin == "solidifi":
        _, files = find_files(config_dataclass(SolidifiConfig, data["solidifi"], "data.solidifi"))
        return {
            f"solidifi/{folder}/buggy_{n}": sol.read_text(encoding="utf-8") for folder, n, sol, _ in files
        }
    return {}


def analysis_inputs(records: list[Mapping[str, Any]], data: Mapping[str, Any]) -> dict[str, Any]:
    """Record id -> what Slither analyses for it (a text, or a ``TreeSource``): the dataset's original text
    where an importer rewrote it (``original_texts``), an npm audited contract in place in its package tree
    with its imports (``origin`` real_code), else the record's own ``source_code``; records without any
    are left out. ``data``: the contract data config block the records were loaded with."""
    from training_pipeline.data.importers.real_code import RealCodeConfig, with_default_packages
    from training_pipeline.utils.checks import config_dataclass

    originals: dict[str, dict[str, str]] = {}
    out: dict[str, Any] = {}
    npm: list[dict[str, Any]] = []
    for r in records:
        rid, origin = str(r["id"]), str(r.get("origin") or "")
        if origin == "real_code":
            npm.append(dict(r))
            continue
        if origin not in originals:
            originals[origin] = original_texts(origin, data)
        text = originals[origin].get(rid) or r.get("source_code")
        if text:
            out[rid] = text
    if npm:
        block = {**with_default_packages((data or {}).get("real_code")), "install": False}
        locate_real_code(npm, data["data_dir"], config_dataclass(RealCodeConfig, block, "data.real_code"))
        out.update({r["id"]: tree for r, tree in zip(npm, tree_sources(npm), strict=True)})
    return out
