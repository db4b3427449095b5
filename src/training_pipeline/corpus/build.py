"""Build the labelled contract corpus: generate Solidity, compile it with solc-js, store it with HF datasets.

The corpus lives under ``data/corpus/<key>/`` where the key hashes the generator config and version, so an
unchanged config reuses the stored corpus and any change builds a new one beside it.

Compile settings (``compile_variants``): by default one, no optimizer, as always. With several (for example
optimizer off, on with 200 runs, on with 1000 runs) each contract is compiled once per variant: ``bytecode``
holds the first variant and ``bytecode_variants`` maps every variant's key (``variant_key``: ``o0``,
``o1-r200``, ``o1-r1000``, ``-<evm>`` appended when an EVM target is set) to its runtime bytecode.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from training_pipeline import taxonomy
from training_pipeline.corpus.generator import GENERATOR_VERSION, GeneratedContract, generate_corpus
from training_pipeline.corpus.solc import CompileJob, SolcPool
from training_pipeline.errors import ConfigError
from training_pipeline.utils.run import write_json
from training_pipeline.utils.splits import assign_folds

log = logging.getLogger(__name__)

BUILD_FORMAT = 1  # bump when the stored columns change


def _features(variant_keys: Sequence[str] = ()):
    """Column types of the stored corpus (``datasets`` is imported only where a corpus is built or read);
    ``bytecode_variants`` (a struct, one string per variant key) only when several variants are compiled."""
    import datasets  # heavy (about a second to import): only building or reading a corpus pays for it

    variants = {k: datasets.Value("string") for k in variant_keys} if len(variant_keys) > 1 else None
    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "group": datasets.Value("string"),
            "family": datasets.Value("string"),
            "compiler_version": datasets.Value("string"),
            "contract_name": datasets.Value("string"),
            "source_code": datasets.Value("string"),
            "bytecode": datasets.Value("string"),
            "labels": datasets.Sequence(datasets.Value("string")),
            "vulnerable_lines": datasets.Value("string"),  # JSON map label -> 1-based lines
            "shapes": datasets.Sequence(datasets.Value("string")),
            "fold": datasets.Value("int32"),
            **({"bytecode_variants": variants} if variants else {}),
        }
    )


class CorpusBuildError(RuntimeError):
    """The generator produced a contract the compiler rejects: a generator bug, never silently skipped."""


VARIANT_KEYS = ("optimize", "runs", "evm_version")
DEFAULT_VARIANTS: tuple[dict, ...] = ({"optimize": False, "runs": 200, "evm_version": None},)


def normalize_variants(variants: Sequence[Mapping] | None) -> tuple[dict, ...]:
    """Compile variants with every key filled in (``optimize`` False, ``runs`` 200, ``evm_version`` None)."""
    if not variants:
        return DEFAULT_VARIANTS
    out = []
    for v in variants:
        if not isinstance(v, Mapping) or set(v) - set(VARIANT_KEYS):
            raise ConfigError(
                f"data.corpus.compile_variants: bad entry {v!r}; expected a map with keys "
                f"from {list(VARIANT_KEYS)}"
            )
        runs = v.get("runs", 200)
        if not isinstance(runs, int) or isinstance(runs, bool) or runs < 1:
            raise ConfigError(f"data.corpus.compile_variants: runs={runs!r} must be a positive integer")
        evm = v.get("evm_version")
        out.append(
            {"optimize": bool(v.get("optimize", False)), "runs": runs, "evm_version": evm and str(evm)}
        )
    keys = [variant_key(v) for v in out]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"data.corpus.compile_variants: repeated variants {keys}")
    return tuple(out)


def variant_key(variant: Mapping) -> str:
    """``o0`` (no optimizer), ``o1-r<runs>`` (optimizer), plus ``-<evm_version>`` when a target is set."""
    key = f"o1-r{variant.get('runs', 200)}" if variant.get("optimize") else "o0"
    return f"{key}-{variant['evm_version']}" if variant.get("evm_version") else key


@dataclass(frozen=True)
class CorpusConfig:
    """What the generated corpus holds (``data.corpus.*``); a misspelled key is a TypeError at startup."""

    n_contracts: int = 1500
    seed: int = 0
    compiler_versions: Sequence[str] = ("0.4.26", "0.5.17", "0.6.12", "0.7.6", "0.8.26")
    families: Sequence[str] | None = None
    safe_fraction: float = 0.4
    multi_label_fraction: float = 0.15
    short_fraction: float = 0.0  # share of records that are short single-purpose contracts (0: none)
    legacy_fraction: float = 0.0  # share of 0.4 skeletons with pre-0.4.22 idioms (throw, sha3, var, ...)
    n_folds: int = 5
    n_workers: int = 2  # compiler processes; does not change the content
    compile_variants: Sequence[Mapping] | None = None  # None: no optimizer only (see normalize_variants)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compile_variants", normalize_variants(self.compile_variants))
        if self.n_contracts < 10:
            raise ConfigError(f"data.corpus.n_contracts={self.n_contracts}: need at least 10")
        known = set(taxonomy.COMPILER_VERSIONS.values())
        bad = [v for v in self.compiler_versions if v not in known]
        if bad:
            raise ConfigError(
                f"data.corpus.compiler_versions: unknown {bad}; expected some of {sorted(known)}"
            )
        bad_fam = [f for f in (self.families or ()) if f not in taxonomy.FAMILIES]
        if bad_fam:
            raise ConfigError(
                f"data.corpus.families: unknown {bad_fam}; expected some of {taxonomy.FAMILIES}"
            )

    def content_fields(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("n_workers")
        d["compiler_versions"] = list(self.compiler_versions)
        d["families"] = list(self.families) if self.families else None
        if tuple(self.compile_variants or ()) == DEFAULT_VARIANTS:  # the default keeps keys as they were
            d.pop("compile_variants")
        else:
            d["compile_variants"] = [dict(v) for v in self.compile_variants or ()]
        return d


def corpus_key(cfg: CorpusConfig) -> str:
    """Hash of everything that decides the corpus content."""
    payload = {"config": cfg.content_fields(), "generator": GENERATOR_VERSION, "format": BUILD_FORMAT}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def corpus_dir(cfg: CorpusConfig, data_dir: str | Path) -> Path:
    return Path(data_dir) / "corpus" / corpus_key(cfg)


def content_hash(
    ids: Sequence[str],
    bytecodes: Sequence[str],
    labels: Sequence[Sequence[str]],
    variants: Sequence[Mapping[str, str]] | None = None,
) -> str:
    """Data version: sha256 over (id, bytecode, labels) of every record in order, plus each record's
    variant bytecodes (key order) when several compile variants are stored."""
    h = hashlib.sha256()
    for i, (rid, code, lbls) in enumerate(zip(ids, bytecodes, labels, strict=True)):
        h.update(f"{rid}\t{code}\t{','.join(lbls)}\n".encode())
        if variants is not None:
            h.update("".join(f"{k}\t{v}\n" for k, v in variants[i].items()).encode())
    return h.hexdigest()


def manifest_counts(
    families: Sequence[str | None],
    versions: Sequence[str | None],
    labels: Sequence[Sequence[str]],
    folds: Sequence[int],
) -> dict:
    """Counts per label, family, compiler version and fold, for the manifest."""
    per_label = Counter(lbl for lbls in labels for lbl in lbls)
    per_label["(none)"] = sum(1 for lbls in labels if not lbls)
    return {
        "per_label": dict(sorted(per_label.items())),
        "per_family": dict(sorted(Counter(map(str, families)).items())),
        "per_compiler_version": dict(sorted(Counter(map(str, versions)).items())),
        "per_fold": {str(k): v for k, v in sorted(Counter(folds).items())},
        "multi_label": sum(1 for lbls in labels if len(lbls) > 1),
    }


def build_corpus(cfg: CorpusConfig, data_dir: str | Path, force: bool = False) -> Path:
    """Return the corpus dir for ``cfg``, building it (generate, compile, store) only when missing."""
    out = corpus_dir(cfg, data_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):  # parallel sweep jobs wait for one build instead of racing
        if (out / "manifest.json").exists() and not force:
            log.info("Reusing corpus %s", out)
            return out
        return _build(cfg, Path(data_dir), out)


def generate_with_folds(cfg: CorpusConfig) -> tuple[list[GeneratedContract], dict[str, int]]:
    """The corpus's contracts (not compiled) and the fold of each group: one call for the build and the
    transaction simulator, so their ids and folds always agree."""
    contracts = generate_corpus(
        cfg.n_contracts,
        seed=cfg.seed,
        families=cfg.families,
        compiler_versions=cfg.compiler_versions,
        safe_fraction=cfg.safe_fraction,
        multi_label_fraction=cfg.multi_label_fraction,
        short_fraction=cfg.short_fraction,
        legacy_fraction=cfg.legacy_fraction,
    )
    folds = assign_folds([c.group for c in contracts], [c.family for c in contracts], cfg.n_folds, cfg.seed)
    return contracts, folds


def _build(cfg: CorpusConfig, data_dir: Path, out: Path) -> Path:
    start = time.perf_counter()
    contracts, folds = generate_with_folds(cfg)
    gen_seconds = time.perf_counter() - start
    variants = list(cfg.compile_variants or DEFAULT_VARIANTS)
    keys = [variant_key(v) for v in variants]
    log.info(
        "Compiling %d generated contracts (%s) with %d solc-js workers",
        len(contracts),
        ", ".join(keys),
        cfg.n_workers,
    )
    per_variant: dict[str, list] = {}
    variant_stats: dict[str, dict] = {}
    with SolcPool(n_workers=cfg.n_workers, cache_dir=Path(data_dir) / "solc_cache") as pool:
        for key, v in zip(keys, variants, strict=True):
            jobs = [
                CompileJob(
                    c.source_code,
                    c.compiler_version,
                    c.contract_name,
                    evm_version=v["evm_version"],
                    optimize=v["optimize"],
                    runs=v["runs"],
                )
                for c in contracts
            ]
            before = dict(pool.stats)
            per_variant[key] = pool.compile(jobs, progress=_progress_logger(time.perf_counter()))
            variant_stats[key] = {k: round(pool.stats[k] - before[k], 3) for k in pool.stats}
        compile_stats = dict(pool.stats)
    results = per_variant[keys[0]]
    failures = [(c, r, k) for k in keys for c, r in zip(contracts, per_variant[k], strict=True) if not r.ok]
    if failures:
        first = "; ".join(
            f"{c.id} ({c.family}, {c.compiler_version}, {k}, {c.shapes}): {r.error}"
            for c, r, k in failures[:3]
        )
        raise CorpusBuildError(f"{len(failures)} generated contracts failed to compile, e.g. {first}")
    columns = {
        "id": [c.id for c in contracts],
        "group": [c.group for c in contracts],
        "family": [c.family for c in contracts],
        "compiler_version": [c.compiler_version for c in contracts],
        "contract_name": [c.contract_name for c in contracts],
        "source_code": [c.source_code for c in contracts],
        "bytecode": [r.bytecode for r in results],
        "labels": [list(c.labels) for c in contracts],
        "vulnerable_lines": [json.dumps(c.vulnerable_lines, sort_keys=True) for c in contracts],
        "shapes": [list(c.shapes) for c in contracts],
        "fold": [folds[c.group] for c in contracts],
    }
    if len(keys) > 1:
        columns["bytecode_variants"] = [
            {k: per_variant[k][i].bytecode for k in keys} for i in range(len(contracts))
        ]
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    import datasets  # about a second to import: only building or reading a corpus pays for it

    datasets.disable_progress_bars()
    datasets.Dataset.from_dict(columns, features=_features(keys)).save_to_disk(str(tmp / "dataset"))
    seconds = time.perf_counter() - start
    manifest = {
        "key": out.name,
        "generator_version": GENERATOR_VERSION,
        "config": cfg.content_fields(),
        "n_records": len(contracts),
        "n_groups": len(folds),
        "content_hash": content_hash(
            columns["id"], columns["bytecode"], columns["labels"], columns.get("bytecode_variants")
        ),
        "counts": manifest_counts(
            columns["family"], columns["compiler_version"], columns["labels"], columns["fold"]
        ),
        "build": {
            "seconds": round(seconds, 2),
            "generate_seconds": round(gen_seconds, 3),
            "contracts_per_s": round(len(contracts) / seconds, 2),
            "compile": compile_stats,
        },
    }
    if len(keys) > 1:
        manifest["compile_variants"] = {
            k: {**v, **variant_stats[k]} for k, v in zip(keys, variants, strict=True)
        }
    write_json(tmp / "manifest.json", manifest)  # written last: a dir without it is never reused
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log.info("Built corpus %s: %d contracts in %.1f s", out, len(contracts), seconds)
    return out


def _progress_logger(start: float):
    """Log compile progress every 10% (a cold build of the default corpus takes about a minute)."""
    state = {"next": 0.1}

    def report(done: int, total: int) -> None:
        if total and done / total >= state["next"]:
            state["next"] = done / total + 0.1
            rate = done / max(time.perf_counter() - start, 1e-9)
            log.info("compiled %d/%d contracts (%.1f/s)", done, total, rate)

    return report


def load_manifest(path: str | Path) -> dict:
    return json.loads((Path(path) / "manifest.json").read_text())


def load_corpus(path: str | Path):
    """The stored corpus as a ``datasets.Dataset``."""
    import datasets  # heavy import, only where a corpus is read

    return datasets.load_from_disk(str(Path(path) / "dataset"))
