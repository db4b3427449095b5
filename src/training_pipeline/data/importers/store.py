"""Where imported datasets live: ``data/imported/<source>/<key>/`` (HF datasets + manifest.json), built once.

The key hashes the importer's config, the hashes of the source files and the importer version, so an
unchanged input reuses the stored import and any change builds a new one beside it. A FileLock makes
parallel jobs wait for one build instead of racing; the manifest is written last, so a directory without
one is never reused. Records compiled under several settings keep them in ``bytecode_variants`` (variant key
→ runtime bytecode, stored as JSON); stores written before that column existed read the same as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
from filelock import FileLock
from omegaconf import DictConfig, ListConfig, OmegaConf

from training_pipeline.corpus.build import DEFAULT_VARIANTS, normalize_variants, variant_key
from training_pipeline.corpus.solc import CompileJob, SolcPool
from training_pipeline.errors import ConfigError
from training_pipeline.utils.run import write_json

log = logging.getLogger(__name__)

STORE_FORMAT = 2  # bump when the stored columns change (2: negative_labels); an optional column that older
# stores lack and readers treat as null (bytecode_variants) needs no bump: their keys and content stay valid


def plain(cfg: Any) -> Any:
    """A config block as plain Python (DictConfig/ListConfig resolved), anything else unchanged."""
    if isinstance(cfg, DictConfig | ListConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def import_variants(variants: Sequence[Mapping] | None, where: str) -> tuple[dict, ...]:
    """An importer's ``compile_variants`` under the corpus's rules (``corpus.build.normalize_variants``: None
    is optimizer off only), errors naming the importer's key ``where`` (``data.cgt.compile_variants``)."""
    try:
        return normalize_variants(variants)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("data.corpus.compile_variants", where)) from None


def compile_variants(
    records: list[dict[str, Any]],
    texts: Sequence[str],
    first: Mapping[str, Any],
    others: Sequence[Mapping[str, Any]],
    pool: SolcPool,
    what: str,
    link: Callable[[str], tuple[str, int]] | None = None,
) -> list[str]:
    """Compile every compiled record (``bytecode`` set, from ``texts[i]``) again under each of ``others``
    (same text, release and contract) into ``bytecode_variants``, beside ``first``'s bytecode; ``link``
    fills library placeholders. Returns one line per variant that failed (left out of the map)."""
    if not others:
        return []
    done = [(i, r) for i, r in enumerate(records) if r["bytecode"]]
    for _, r in done:
        r["bytecode_variants"] = {variant_key(first): r["bytecode"]}
    failures = []
    for v in others:
        key = variant_key(v)
        log.info("Compiling %d %s contracts as %s", len(done), what, key)
        jobs = [CompileJob(texts[i], r["compiler_version"], r["contract_name"], **v) for i, r in done]
        for (_, r), res in zip(done, pool.compile(jobs), strict=True):
            if res.ok:
                r["bytecode_variants"][key] = link(res.bytecode)[0] if link else res.bytecode
            else:
                failures.append(f"{r['id']} ({key}): solc {r['compiler_version']}: {res.error}")
    return failures


def variants_content(variants: Sequence[Mapping]) -> dict[str, Any]:
    """The store-key fields of compile variants: none for the default (optimizer off only), so imports
    stored before importers had variants keep their keys."""
    return {} if tuple(variants) == DEFAULT_VARIANTS else {"compile_variants": [dict(v) for v in variants]}


def variant_counts(records: Iterable[Mapping[str, Any]], variants: Sequence[Mapping]) -> dict[str, Any]:
    """Per compile variant (by key): its settings and how many records have its bytecode, for manifests."""
    records = list(records)
    out = {}
    for v in variants:
        key = variant_key(v)
        have = sum(1 for r in records if (r.get("bytecode_variants") or {}).get(key))
        out[key] = {**v, "records": have if len(variants) > 1 else sum(1 for r in records if r["bytecode"])}
    return out


def import_key(payload: Mapping[str, Any]) -> str:
    """16 hex digits of sha256 over a JSON payload (config, source file hashes, importer version)."""
    blob = json.dumps({**payload, "store_format": STORE_FORMAT}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def content_hash(records: Iterable[Mapping[str, Any]]) -> str:
    """Data version: sha256 over (id, bytecode, labels, source hash, negative labels and compile variants
    when given) of every record in order."""
    h = hashlib.sha256()
    for r in records:
        src = hashlib.sha256((r.get("source_code") or "").encode()).hexdigest()
        negatives = r.get("negative_labels")  # partial labels: part of the version when present
        extra = "" if negatives is None else "\t-" + ",".join(negatives)
        h.update(f"{r['id']}\t{r.get('bytecode')}\t{','.join(r['labels'])}\t{src}{extra}\n".encode())
        if r.get("bytecode_variants"):  # several compile settings: each one's bytecode, in key order
            h.update("".join(f"{k}\t{v}\n" for k, v in r["bytecode_variants"].items()).encode())
    return h.hexdigest()


def label_counts(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Records per taxonomy label, and '(none)' for records without one."""
    records = list(records)
    counts = Counter(lbl for r in records for lbl in r["labels"])
    counts["(none)"] = sum(1 for r in records if not r["labels"])
    return dict(sorted(counts.items()))


def _features():
    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "group": datasets.Value("string"),
            "split": datasets.Value("string"),
            "family": datasets.Value("string"),
            "compiler_version": datasets.Value("string"),
            "contract_name": datasets.Value("string"),
            "source_code": datasets.Value("string"),
            "bytecode": datasets.Value("string"),
            "labels": datasets.Sequence(datasets.Value("string")),
            "vulnerable_lines": datasets.Value("string"),  # JSON map label -> 1-based lines, or null
            "negative_labels": datasets.Sequence(
                datasets.Value("string")
            ),  # assessed absent; null = all assessed
            "bytecode_variants": datasets.Value("string"),  # JSON map variant key -> bytecode, or null
        }
    )


def build_once(
    out: Path, build: Callable[[], tuple[list[dict[str, Any]], dict[str, Any]]], force: bool = False
) -> Path:
    """Return ``out``, first running ``build() -> (records, manifest)`` and storing its result if needed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if (out / "manifest.json").exists() and not force:
            log.info("Reusing imported dataset %s", out)
            return out
        records, manifest = build()
        datasets.disable_progress_bars()
        columns = {name: [r.get(name) for r in records] for name in _features()}
        columns["vulnerable_lines"] = [
            json.dumps(v, sort_keys=True) if v is not None else None for v in columns["vulnerable_lines"]
        ]
        # the configured variant order (the first is ``bytecode``)
        columns["bytecode_variants"] = [json.dumps(v) if v else None for v in columns["bytecode_variants"]]
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        datasets.Dataset.from_dict(columns, features=_features()).save_to_disk(str(tmp / "dataset"))
        manifest = {"key": out.name, "content_hash": content_hash(records), **manifest}
        write_json(tmp / "manifest.json", manifest)  # last: a dir without it is never reused
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        log.info("Stored %d imported records in %s", len(records), out)
        return out


def load_stored(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The stored records (interchange fields + group/split/contract_name/bytecode_variants, nulls dropped)
    and manifest."""
    manifest = json.loads((path / "manifest.json").read_text())
    records = []
    for row in datasets.load_from_disk(str(path / "dataset")).to_list():
        for name in ("vulnerable_lines", "bytecode_variants"):
            row[name] = json.loads(row[name]) if row.get(name) else None
        for optional in ("group", "split", "negative_labels", "bytecode_variants"):
            if row.get(optional) is None:
                row.pop(optional, None)
        records.append(row)
    return records, manifest
