"""Contract records from every source (generated corpus, files, importers), merged and split by group.

``ContractDataModule`` is the shared half of the contract datamodules: it loads the configured sources, puts
clones and template siblings in one group, assigns grouped train/val/test splits, and (optionally) augments
the training split. Subclasses only turn records into tensors (``ContractBytecodeDataModule`` bytecode →
opcode ids, ``ContractSourceDataModule`` source → BPE windows).

A source is a function ``load(cfg: dict, data_dir: Path) -> LoadedSource`` registered in ``SOURCES``; every
record it returns has the interchange fields plus ``group`` and ``origin`` (the source's name).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from training_pipeline import taxonomy
from training_pipeline.corpus.augment import AugmentConfig, augment_records
from training_pipeline.corpus.build import CorpusConfig, build_corpus, load_corpus, load_manifest
from training_pipeline.data.clean import normalized_source_hash
from training_pipeline.data.inject import InjectConfig, inject_records
from training_pipeline.data.records import read_records
from training_pipeline.data.weak_labels.cache import FindingsCache, cached_record_predictions
from training_pipeline.data.weak_labels.mapping import DetectorMapping, load_config
from training_pipeline.errors import ConfigError, DataError
from training_pipeline.utils.checks import config_dataclass
from training_pipeline.utils.solidity import code_only
from training_pipeline.utils.splits import SplitConfig, split_names, stable_fold

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
_PRAGMA_SOLIDITY = re.compile(r"\bpragma\s+solidity\b[^;]*;")
EVAL_SPLITS = ("test", "val", "train", "all")


@dataclass
class LoadedSource:
    """What a source yields: normalized records and a version string (a content hash)."""

    records: list[dict[str, Any]]
    version: str


# name -> "module:function"; imported lazily so a run pays only for the sources it uses.
SOURCES: dict[str, str] = {
    "corpus": "training_pipeline.data.contracts:load_generated_corpus",
    "file": "training_pipeline.data.contracts:load_contract_file",
    "solidifi": "training_pipeline.data.importers.solidifi:load_solidifi",
    "slither_audited": "training_pipeline.data.importers.slither_audited:load_slither_audited",
    "cgt": "training_pipeline.data.importers.cgt:load_cgt",
    "real_code": "training_pipeline.data.importers.real_code:load_real_code",
}


# name -> "module:Class" of its config block, checked when the datamodule is built (a typo fails at start-up).
SOURCE_CONFIGS: dict[str, str] = {
    "corpus": "training_pipeline.corpus.build:CorpusConfig",
    "solidifi": "training_pipeline.data.importers.solidifi:SolidifiConfig",
    "slither_audited": "training_pipeline.data.importers.slither_audited:SlitherAuditedConfig",
    "cgt": "training_pipeline.data.importers.cgt:CgtConfig",
    "real_code": "training_pipeline.data.importers.real_code:RealCodeConfig",
}


def check_source_config(name: str, cfg: dict | None) -> None:
    """Build the source's config dataclass once, so a misspelled key is an error before any data loads."""
    if name in SOURCE_CONFIGS:
        from training_pipeline.data.importers.store import plain  # imports datasets (heavy): only when needed

        module, cls = SOURCE_CONFIGS[name].split(":")
        config_dataclass(getattr(importlib.import_module(module), cls), plain(cfg), f"data.{name}")


def source_fingerprint(data_cfg: Any) -> dict[str, Any]:
    """What a config hash misses about ``data.sources``: per source whose module defines it
    (``resolved_config``), the config block its loader fills in at load time (real_code's packaged package
    list, not in the stage's config). ``{}`` for the others, so a pipeline stage reruns when that block
    changes and keeps its hash otherwise."""
    from training_pipeline.data.importers.store import plain

    data = plain(data_cfg) or {}
    out: dict[str, Any] = {}
    for name in data.get("sources") or []:
        if name not in SOURCES:
            continue
        module = importlib.import_module(SOURCES[name].split(":")[0])
        if hasattr(module, "resolved_config"):
            out[name] = module.resolved_config(data.get(name))
    return out


def source_loader(name: str) -> Callable[[dict, Path], LoadedSource]:
    """The loader function of a registered source (imported on first use)."""
    module, func = SOURCES[name].split(":")
    return getattr(importlib.import_module(module), func)


def load_generated_corpus(cfg: dict, data_dir: Path) -> LoadedSource:
    """The generated, solc-compiled corpus (built once per config, then reused from ``data/corpus/``)."""
    path = build_corpus(config_dataclass(CorpusConfig, cfg, "data.corpus"), data_dir)
    records = load_corpus(path).to_list()
    for r in records:
        r["vulnerable_lines"] = json.loads(r["vulnerable_lines"])
    return LoadedSource(records, "sha256:" + load_manifest(path)["content_hash"])


def load_contract_file(cfg: dict, data_dir: Path) -> LoadedSource:
    """An interchange file (JSONL/parquet); ``cfg`` holds its ``path``."""
    path = cfg.get("path")
    if not path:
        raise ConfigError("data.path: the 'file' source needs a contract file (data.path=...)")
    if not Path(path).exists():
        raise DataError(f"{path}: no such data file (data.path)")
    records = read_records(path)
    return LoadedSource(records, "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest())


def clone_keys(record: dict[str, Any]) -> list[str]:
    """What makes two records clones: the same normalized source, also once pragmas are dropped (copies
    that differ only in the compiler they ask for); lacking source, the same bytecode."""
    source = record.get("source_code")
    if not source:
        return ["bin:" + hashlib.sha256(str(record.get("bytecode")).encode()).hexdigest()]
    keys = ["src:" + normalized_source_hash(source)]
    spans = [(p.start(), p.end()) for p in _PRAGMA_SOLIDITY.finditer(code_only(source))]
    if spans:
        for start, end in reversed(spans):
            source = source[:start] + source[end:]
        keys.append("nopragma:" + normalized_source_hash(source))
    return keys


def group_clones(records: list[dict[str, Any]]) -> int:
    """Merge the groups of records that are clones (``clone_keys``), across every source.

    Clones then share one group, so they never straddle splits. Returns how many groups were merged away.
    """
    parent: dict[str, str] = {}

    def find(g: str) -> str:
        while parent.setdefault(g, g) != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    first_of: dict[str, str] = {}
    for r in records:
        for key in clone_keys(r):
            group = find(r["group"])
            if key in first_of:
                other = find(first_of[key])
                if other != group:
                    parent[max(group, other)] = min(group, other)
            else:
                first_of[key] = r["group"]
    before = len({r["group"] for r in records})
    for r in records:
        r["group"] = find(r["group"])
    return before - len({r["group"] for r in records})


class ColumnDataset(Dataset):
    """Parallel columns, one entry per sample (``index``: the record each came from); an item is the dict of
    every column's entry."""

    def __init__(self, **columns: Sequence[Any]) -> None:
        self.columns = columns

    @property
    def index(self) -> Sequence[Any]:
        return self.columns["index"]

    def __len__(self) -> int:
        return len(self.columns["index"])

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {name: column[i] for name, column in self.columns.items()}


def label_mask(record: dict[str, Any]) -> list[float]:
    """Per class 1.0 where the record's label is known (assessed), 0.0 where it is not (masked).

    A record with ``negative_labels`` assessed ``labels`` ∪ ``negative_labels`` only; one without the field
    (the generated corpus, SolidiFI, most files) is fully assessed; an ``unlabeled`` one (real code from npm
    packages, no human labels) assesses nothing, so it adds nothing to the supervised loss or metrics.
    """
    if record.get("unlabeled"):
        return [0.0] * len(taxonomy.VULNERABILITY_CLASSES)
    negatives = record.get("negative_labels")
    if negatives is None:
        return [1.0] * len(taxonomy.VULNERABILITY_CLASSES)
    taxonomy.validate_labels(list(negatives), where=f"record {record.get('id')!r} negative_labels")
    assessed = set(record["labels"]) | set(negatives)
    return [1.0 if c in assessed else 0.0 for c in taxonomy.VULNERABILITY_CLASSES]


def label_columns(batch: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Multi-hot labels, their assessed mask and per-entry loss weights (same shape; the weights default to
    the mask), family index, record index and (when the rows carry it) compiler era code, as tensors."""
    labels = torch.from_numpy(np.stack([b["labels"] for b in batch]))
    mask = (
        torch.from_numpy(np.stack([b["label_mask"] for b in batch]))
        if "label_mask" in batch[0]
        else torch.ones_like(labels)
    )
    weight = (
        torch.from_numpy(np.stack([b["loss_weight"] for b in batch])) if "loss_weight" in batch[0] else mask
    )
    return {
        "labels": labels,
        "label_mask": mask,
        "loss_weight": weight,
        "family": torch.tensor([b["family"] for b in batch], dtype=torch.long),
        "index": torch.tensor([b["index"] for b in batch], dtype=torch.long),
    } | ({"era": torch.tensor([b["era"] for b in batch], dtype=torch.long)} if "era" in batch[0] else {})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def config_records(block: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The records and split names a resolved contract data config block loads (its datamodule's
    ``load_records``), with weak-label targets off: listing records does not need Slither's cache."""
    from hydra.utils import instantiate  # noqa: PLC0415 - only the callers that list a run's records need it

    block = {**block, "weak_labels": {**(block.get("weak_labels") or {}), "enabled": False}}
    return instantiate(block, _convert_="all").load_records()


AUDITED_SOURCES = frozenset({"real_code"})
"""Sources of audited code: no labels, but no known vulnerability either (``audited_negative_weight``)."""


def check_audited_negative_weight(weight: Any, sources: Sequence[str] | None = None) -> float | None:
    """``data.audited_negative_weight``: None (audited code stays unlabeled) or a loss weight >= 0 for its
    training records as negatives on every class; a ConfigError when no audited source is in ``sources``
    (None: not checked, e.g. the aggregator's stacked rows, which carry no source)."""
    if weight is None:
        return None
    if not _is_number(weight) or weight < 0:
        raise ConfigError(f"data.audited_negative_weight={weight!r}: expected null or a number >= 0")
    if sources is not None and not AUDITED_SOURCES & set(sources):
        raise ConfigError(
            f"data.audited_negative_weight={weight}: no audited source ({sorted(AUDITED_SOURCES)}) among "
            f"data.sources={list(sources)}"
        )
    return float(weight)


@dataclass
class EraBalanceConfig:
    """``data.era_balance``: reweight training entries so that no compiler era predicts a class.

    Real labels and eras are entangled: CGT's vulnerable contracts are 0.4 code, the audited npm code that
    trains as negatives is mostly 0.5-0.8, and the bytecode (and a source's pragma) tells a model the era
    at a glance. Trained on that, a detector scores code by its age: in a ``make train`` run (optimizer on)
    the held-out audited 0.8 code had a median top probability of 0.11 and its 0.4 code 0.81, and SolidiFI's
    flawed 0.5 contracts 0.46, ranked *below* the audited set (docs/results.md). Enabled, each class's
    positive and negative entries of each era are scaled so that the era's positive rate (after
    ``source_weights``) becomes the class's overall one; a class's total weight in an era is unchanged.
    Rates are smoothed towards the overall one with ``pseudo_count`` entries of weight, and factors clipped
    to [1/max_factor, max_factor].
    """

    enabled: bool = False
    pseudo_count: float = 20.0
    max_factor: float = 4.0

    def __post_init__(self) -> None:
        if not _is_number(self.pseudo_count) or self.pseudo_count < 0:
            raise ConfigError(f"data.era_balance.pseudo_count={self.pseudo_count!r}: expected a number >= 0")
        if not _is_number(self.max_factor) or self.max_factor < 1:
            raise ConfigError(f"data.era_balance.max_factor={self.max_factor!r}: expected a number >= 1")


def compiler_era(record: Mapping[str, Any]) -> str:
    """``0.5`` for a record compiled by a 0.5.x release; pre-0.4 code counts as ``0.4`` (it compiles with a
    0.4 release: ``data.cgt.fallback_compiler``); ``unknown`` without a version."""
    parts = str(record.get("compiler_version") or "").lstrip("v").split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        return "unknown"
    major, minor = int(parts[0]), int(parts[1])
    return "0.4" if (major, minor) < (0, 4) else f"{major}.{minor}"


def era_code(era: str) -> int:
    """A compiler era (``compiler_era``'s ``0.5``, or a config's ``"0.5"``) as a number that sorts as the
    eras do (0.5 → 5, 1.2 → 102); ``unknown`` (or anything else) → -1."""
    major, _, minor = str(era).partition(".")
    return 100 * int(major) + int(minor) if major.isdigit() and minor.isdigit() else -1


def era_balance_factors(
    labels: np.ndarray, weight: np.ndarray, eras: Sequence[str], cfg: EraBalanceConfig
) -> np.ndarray:
    """Per-entry factors (N, classes) that make each era's weighted positive rate of a class its overall
    rate (``EraBalanceConfig``). Only weighted entries count in the rates; a class without a weighted positive
    or negative keeps factor 1."""
    factors = np.ones_like(weight, dtype=np.float32)
    era_arr = np.asarray(list(eras))
    for c in range(labels.shape[1]):
        w, y = weight[:, c].astype(np.float64), labels[:, c] > 0.5
        total = w.sum()
        if total <= 0:
            continue
        p = float(w[y].sum() / total)
        if not 0 < p < 1:
            continue
        for era in np.unique(era_arr):
            rows = era_arr == era
            p_era = (w[rows & y].sum() + cfg.pseudo_count * p) / (w[rows].sum() + cfg.pseudo_count)
            lo, hi = 1 / cfg.max_factor, cfg.max_factor
            if p_era > 0:  # else the era has no positive to scale (and no rate to divide by)
                factors[rows & y, c] = np.clip(p / p_era, lo, hi)
            if p_era < 1:
                factors[rows & ~y, c] = np.clip((1 - p) / (1 - p_era), lo, hi)
    return factors


def check_source_weights(weights: Mapping[str, Any] | None) -> dict[str, float]:
    """``data.source_weights`` (source → loss weight, default 1) as floats; an unknown source or a weight that
    is not a number >= 0 is a one-line ConfigError."""
    weights = dict(weights or {})
    if unknown := sorted(set(weights) - set(SOURCES)):
        raise ConfigError(
            f"data.source_weights: unknown source(s) {unknown}; expected some of {list(SOURCES)}"
        )
    if bad := {k: v for k, v in weights.items() if not _is_number(v) or v < 0}:
        raise ConfigError(f"data.source_weights: {bad}: expected a number >= 0 per source")
    return {k: float(v) for k, v in weights.items()}


@dataclass(frozen=True)
class WeakLabelConfig:
    """``data.weak_labels``: Slither's cached contract-level predictions as extra training targets.

    Training records of ``sources`` take Slither's label for each class some check maps to
    (``exclude_classes`` aside) where no human label is; such an entry weighs ``weight`` in the loss, a human
    label 1. Val and test never see them: metrics stay on human labels.
    """

    enabled: bool = False
    sources: Sequence[str] = ("real_code",)
    weight: float = 0.3
    config: str | None = None  # weak-label config (mapping, thresholds); None = conf/weak_labels/slither.yaml
    cache_dir: str | None = None  # None = that config's cache_dir
    slither_version: str | None = None  # the cache's; None = the installed slither-analyzer's
    exclude_classes: Sequence[str] = ("arithmetic",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "exclude_classes", tuple(self.exclude_classes))
        if unknown := [s for s in self.sources if s not in SOURCES]:
            raise ConfigError(
                f"data.weak_labels.sources: unknown source(s) {unknown}; expected some of {list(SOURCES)}"
            )
        if unknown := sorted(set(self.exclude_classes) - set(taxonomy.VULNERABILITY_CLASSES)):
            raise ConfigError(
                f"data.weak_labels.exclude_classes: unknown class(es) {unknown}; "
                f"expected some of {list(taxonomy.VULNERABILITY_CLASSES)}"
            )
        if not _is_number(self.weight) or not 0 < self.weight <= 1:
            raise ConfigError(
                f"data.weak_labels.weight={self.weight!r}: expected a number in (0, 1] (human labels weigh 1)"
            )


class SlitherTargets:
    """Weak targets from the Slither findings cache (``data/weak_labels``); never runs Slither.

    Building one checks that the cache exists: a missing one is a one-line DataError naming the command that
    fills it.
    """

    def __init__(self, cfg: WeakLabelConfig) -> None:
        settings = load_config(cfg.config)
        self.mapping = DetectorMapping.from_config(settings)
        self.cache = FindingsCache(cfg.cache_dir or settings.get("cache_dir"), cfg.slither_version)
        if not self.cache.dir.is_dir():
            fill = "; ".join(f"python scripts/weak_label.py --source {s}" for s in cfg.sources)
            raise DataError(
                f"data.weak_labels: no Slither findings at {self.cache.dir}; fill the cache: {fill}"
            )
        self.classes = [c for c in self.mapping.detected_classes if c not in cfg.exclude_classes]

    def __call__(self, records: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """(targets, assessed) per record, (N, classes) each: Slither's labels, assessed for ``classes`` where
        the record's analysis is cached and succeeded, nowhere for the others."""
        scope = np.array([c in self.classes for c in taxonomy.VULNERABILITY_CLASSES], dtype=np.float32)
        predictions = cached_record_predictions(records, self.cache, self.mapping)
        found = np.array([p is not None for p in predictions], dtype=np.float32)
        targets = np.array([taxonomy.multi_hot(p.labels if p else []) for p in predictions], dtype=np.float32)
        assessed = found[:, None] * scope
        return targets.reshape(assessed.shape) * assessed, assessed


class LengthBucketSampler(Sampler[list[int]]):
    """Shuffled batches of similar length: sorts within random pools of 50 batches, then shuffles batches."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, pool: int = 50) -> None:
        self.lengths, self.batch_size, self.seed, self.pool, self.epoch = (
            list(lengths),
            batch_size,
            seed,
            pool,
            0,
        )

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        self.epoch += 1
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        span = self.batch_size * self.pool
        batches = []
        for start in range(0, len(order), span):
            chunk = sorted(order[start : start + span], key=self.lengths.__getitem__)
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        return iter(batches)

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size


class SortedBatchSampler(Sampler[list[int]]):
    """Evaluation batches of similar length, shortest first: every row once, in the same order each time.
    Only for models whose rows score the same alone or in any batch (padding masked): it changes the padding
    computed, not a probability. Whole contracts of 200 to 24,576 opcodes in dataset order pad most batches
    to their longest member."""

    def __init__(self, lengths: Sequence[int], batch_size: int) -> None:
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        self.batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def make_loader(
    data: Dataset,
    batch_size: int,
    collate_fn: Callable,
    num_workers: int,
    pin_memory: bool,
    train: bool = False,
    length_buckets: bool = False,
    distributed: bool = False,
    sort_eval: bool = False,
) -> DataLoader:
    """A loader; training batches group similar lengths (``data.lengths()``) unless running distributed, and
    with ``sort_eval`` so do evaluation batches (``SortedBatchSampler``)."""
    common = {
        "collate_fn": collate_fn,
        "num_workers": num_workers,
        "pin_memory": pin_memory,
        "persistent_workers": num_workers > 0,
    }
    if train and length_buckets and not distributed:
        return DataLoader(data, batch_sampler=LengthBucketSampler(data.lengths(), batch_size), **common)
    if not train and sort_eval and not distributed:
        return DataLoader(data, batch_sampler=SortedBatchSampler(data.lengths(), batch_size), **common)
    return DataLoader(data, batch_size=batch_size, shuffle=train, **common)


class SplitDataModule(LightningDataModule):
    """Loaders over ``self.splits``: train (shuffled), val, and ``eval_split`` for test and predict.
    Subclasses build the splits and say how one split becomes a loader (``_loader``)."""

    eval_split: str = "test"

    def _loader(self, split: str, train: bool = False) -> DataLoader:
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.eval_split)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.eval_split)


class ContractDataModule(SplitDataModule):
    """Records from ``sources``, grouped splits, optional train-split augmentation; subclasses featurize.

    ``eval_sources`` restricts the test split to some sources (train on corpus + SolidiFI, test on SolidiFI
    only); the other sources' test folds are then left out entirely. ``val_sources`` restricts the validation
    split (checkpoint selection, threshold tuning) to some sources, e.g. real contracts only; the other
    sources' validation folds join training (by group: a clone group with a record of those sources stays).

    Training rows carry ``loss_weight`` beside ``label_mask``: the mask times ``source_weights`` (source →
    weight, default 1), plus Slither's weak targets at ``weak_labels.weight`` where enabled
    (``WeakLabelConfig``), and audited code as negatives at ``audited_negative_weight`` where set. The other
    splits' loss weights are their masks: metrics use human labels only.
    """

    needs: str = "bytecode"  # the record field a subclass cannot do without
    needs_labels: bool = True  # False for label-free stages (pretraining): unlabeled sources alone will do
    collate_fn: Callable = staticmethod(default_collate)

    def __init__(
        self,
        data_dir: str,
        sources: Sequence[str] = ("corpus",),
        eval_sources: Sequence[str] | None = None,
        val_sources: Sequence[str] | None = None,
        path: str | None = None,
        corpus: dict | None = None,
        solidifi: dict | None = None,
        slither_audited: dict | None = None,
        cgt: dict | None = None,
        real_code: dict | None = None,
        split: dict | None = None,
        fold: int = 0,
        augment: dict | None = None,
        inject: dict | None = None,
        source_weights: dict | None = None,
        weak_labels: dict | None = None,
        audited_negative_weight: float | None = None,
        era_balance: dict | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool = False,
        eval_split: str = "test",
    ) -> None:
        super().__init__()
        sources = list(sources)
        if path is not None and sources == ["corpus"]:
            sources = ["file"]  # `data.path=...` alone means "this file instead of the corpus"
        unknown = [n for n in [*sources, *(eval_sources or []), *(val_sources or [])] if n not in SOURCES]
        if unknown:
            raise ConfigError(f"data.sources: unknown source(s) {unknown}; expected some of {list(SOURCES)}")
        for key, chosen in (("eval_sources", eval_sources), ("val_sources", val_sources)):
            missing = sorted(set(chosen or []) - set(sources))
            if missing:
                raise ConfigError(f"data.{key}: {missing} are not among data.sources={sources}")
        self.source_cfgs = {
            "corpus": corpus,
            "file": {"path": path},
            "solidifi": solidifi,
            "slither_audited": slither_audited,
            "cgt": cgt,
            "real_code": real_code or {},  # empty: the package list of conf/data/real_code.yaml
        }
        for name in sources:
            if self.source_cfgs.get(name, {}) is None:
                raise ConfigError(f"data.{name}: the {name!r} source has no config block")
            check_source_config(name, self.source_cfgs[name])
        self.split_cfg = config_dataclass(SplitConfig, split, "data.split")
        self.augment_cfg = config_dataclass(AugmentConfig, augment, "data.augment")
        self.inject_cfg = config_dataclass(InjectConfig, inject, "data.inject")
        if self.inject_cfg.enabled:
            for key in ("guests", "hosts"):
                missing = sorted(set(getattr(self.inject_cfg, key)) - set(sources))
                if missing:
                    raise ConfigError(f"data.inject.{key}: {missing} are not among data.sources={sources}")
        self.source_weights = check_source_weights(source_weights)
        self.weak_cfg = config_dataclass(WeakLabelConfig, weak_labels, "data.weak_labels")
        self.weak_targets: SlitherTargets | None = None
        if self.weak_cfg.enabled:
            if not set(self.weak_cfg.sources) & set(sources):
                raise ConfigError(
                    f"data.weak_labels.sources={list(self.weak_cfg.sources)}: "
                    f"none is among data.sources={sources}"
                )
            self.weak_targets = SlitherTargets(self.weak_cfg)
        self.audited_negative_weight = check_audited_negative_weight(audited_negative_weight, sources)
        self.era_cfg = config_dataclass(EraBalanceConfig, era_balance, "data.era_balance")
        if eval_split not in EVAL_SPLITS:
            raise ConfigError(f"eval split {eval_split!r}: expected one of {', '.join(EVAL_SPLITS)}")
        self.data_dir, self.sources, self.eval_sources = Path(data_dir), sources, eval_sources
        self.val_sources = list(val_sources) if val_sources else None
        self.fold = fold
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.eval_split = eval_split
        self.class_names = list(taxonomy.VULNERABILITY_CLASSES)
        self.family_names = list(taxonomy.FAMILIES)
        self.records: list[dict[str, Any]] = []
        self.split_of: list[str] = []
        self.data_version: str | None = None
        self._loaded: dict[str, LoadedSource] = {}
        self.splits: dict[str, Dataset] = {}
        self.train_targets: tuple[np.ndarray, np.ndarray] | None = None  # (labels, loss weights) of train
        self.length_buckets = False

    # -- records --------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        for name in self.sources:
            self.loaded_source(name)

    def loaded_source(self, name: str) -> LoadedSource:
        """The records of source ``name`` as loaded (once per datamodule), before grouping and splitting."""
        if name not in self._loaded:
            self._loaded[name] = source_loader(name)(self.source_cfgs.get(name) or {}, self.data_dir)
        return self._loaded[name]

    def load_records(self) -> tuple[list[dict[str, Any]], list[str]]:
        """Every usable record of every source, and its split name (before augmentation)."""
        records: list[dict[str, Any]] = []
        versions = []
        for name in self.sources:
            loaded = self.loaded_source(name)
            versions.append(f"{name}={loaded.version}")
            for r in loaded.records:
                records.append({**r, "origin": name, "group": f"{name}:{r.get('group') or r['id']}"})
        ids = [r["id"] for r in records]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise DataError(f"data.sources {self.sources}: record id {dup!r} occurs in more than one source")
        self.data_version = (
            versions[0].split("=", 1)[1]
            if len(versions) == 1
            else "sha256:" + hashlib.sha256("\n".join(versions).encode()).hexdigest()
        )
        usable = [r for r in records if r.get(self.needs)]
        if len(usable) < len(records):
            skipped = len(records) - len(usable)
            log.warning("Skipping %d of %d records without %s", skipped, len(records), self.needs)
        if not usable:
            raise DataError(f"data.sources {self.sources}: no record has {self.needs}")
        merged = group_clones(usable)
        if merged:
            log.info("Grouped clones: %d groups merged into others (they share a split)", merged)
        self._assign_folds(usable)
        return usable, self._split_names(usable)

    def _assign_folds(self, records: list[dict[str, Any]]) -> None:
        """Keep a source's own folds where it has them; a merged group takes its smallest member fold."""
        n, seed = self.split_cfg.n_folds, self.split_cfg.seed
        group_fold: dict[str, int] = {}
        for r in records:
            fold = int(r["fold"]) if r.get("fold") is not None else stable_fold(r["group"], n, seed)
            group_fold[r["group"]] = min(fold % n, group_fold.get(r["group"], n))
        for r in records:
            r["fold"] = group_fold[r["group"]]

    def _split_names(self, records: list[dict[str, Any]]) -> list[str]:
        fams = [r.get("family") for r in records]
        if self.split_cfg.strategy == "leave_families_out":
            missing = set(self.split_cfg.holdout_families) - set(fams)
            if missing:
                raise ConfigError(f"data.split.holdout_families: {sorted(missing)} not in the data")
        names = split_names([r["fold"] for r in records], fams, self.split_cfg, self.fold)
        # A source whose every record carries a split (a file that fixes its own, a benchmark's official
        # split) keeps it; a clone group that also holds other records follows its most held-out fixed
        # split (test, then val), so clones never straddle splits.
        fixed = {r["origin"] for r in records} - {r["origin"] for r in records if not r.get("split")}
        group_split: dict[str, str] = {}
        for r in records:
            if r["origin"] in fixed:
                if r["split"] not in SPLITS:
                    raise DataError(f"record {r['id']!r}: split {r['split']!r}; expected one of {SPLITS}")
                old = group_split.get(r["group"], "train")
                group_split[r["group"]] = min(old, r["split"], key=("test", "val", "train").index)
        names = [group_split.get(r["group"], s) for s, r in zip(names, records, strict=True)]
        if self.eval_sources:
            keep = set(self.eval_sources)
            names = [
                "unused" if s == "test" and r["origin"] not in keep else s
                for s, r in zip(names, records, strict=True)
            ]
        if self.val_sources:
            keep = set(self.val_sources)
            stay = {
                r["group"] for s, r in zip(names, records, strict=True) if s == "val" and r["origin"] in keep
            }
            names = [
                "train" if s == "val" and r["group"] not in stay else s
                for s, r in zip(names, records, strict=True)
            ]
        return names

    def setup(self, stage: str | None = None) -> None:
        if self.split_of:
            return
        records, names = self.load_records()
        if self.augment_cfg.enabled:
            train = [r for r, s in zip(records, names, strict=True) if s == "train"]
            extra = augment_records(train, self.augment_cfg, self.data_dir)
            records, names = records + extra, names + ["train"] * len(extra)
            log.info("Augmentation: %d variants of %d training contracts", len(extra), len(train))
        if self.inject_cfg.enabled:
            extra = self._injected([r for r, s in zip(records, names, strict=True) if s == "train"])
            records, names = records + extra, names + ["train"] * len(extra)
        extra = self.extra_train_records(records, names)
        if extra:
            records, names = records + extra, names + ["train"] * len(extra)
        self.records, self.split_of = records, names
        self.train_targets = self.training_targets()
        self.featurize(records)
        sizes = {s: names.count(s) for s in SPLITS}
        log.info(
            "Data %s: %s (fold %d, %s split, sources %s)",
            self.data_version,
            sizes,
            self.fold,
            self.split_cfg.strategy,
            self.sources,
        )
        needed = list(SPLITS) if self.eval_split != "all" else []
        empty = [s for s in needed if sizes[s] == 0]
        if empty:
            raise DataError(f"split(s) {empty} are empty: use more contracts or another split/fold")
        assessed = {n for r, n in zip(records, names, strict=True) if any(label_mask(r))}
        if self.needs_labels and (unassessed := [s for s in needed if s not in assessed]):
            raise DataError(
                f"split(s) {unassessed} have no assessed label (data.sources={list(self.sources)}): "
                "unlabeled sources such as real_code need a labelled source beside them to train or test"
            )

    def _injected(self, train: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``data.inject``: guests compiled into hosts (``data/inject.py``), under the compile settings of the
        first host source (its ``compile_variants``; none: optimizer off)."""
        cfg = self.inject_cfg
        host = cfg.hosts[0]
        block = self.source_cfgs.get(host) or {}
        npm_root = None
        if "real_code" in cfg.hosts:
            from training_pipeline.data.importers.real_code import RealCodeConfig, with_default_packages

            resolved = with_default_packages(self.source_cfgs["real_code"])
            npm_root = config_dataclass(RealCodeConfig, resolved, "data.real_code").npm_root(self.data_dir)
            block = resolved if host == "real_code" else block
        variants = list(block.get("compile_variants") or [{"optimize": False}])
        return inject_records(train, cfg, self.data_dir, variants, npm_root=npm_root)

    def extra_train_records(self, records: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
        """More training rows a subclass derives from the split records (none here); each keeps its
        original's group and carries ``augmented_from``, so it stays out of ``indices("all")``."""
        return []

    def indices(self, split: str) -> np.ndarray:
        """Record indices of a split ('all' = every record, augmented variants excluded)."""
        if split == "all":
            return np.array([i for i, r in enumerate(self.records) if not r.get("augmented_from")], dtype=int)
        return np.flatnonzero(np.array(self.split_of) == split)

    def featurize(self, records: list[dict[str, Any]]) -> None:
        """Turn ``records`` into the subclass's datasets (``self.splits[split]``)."""
        raise NotImplementedError

    # -- what every contract model needs to know -------------------------------------------------------
    def label_matrix(self, split: str) -> np.ndarray:
        """Multi-hot labels of a split's records, (N, classes)."""
        return np.array(
            [taxonomy.multi_hot(self.records[i]["labels"]) for i in self.indices(split)], dtype=np.float32
        ).reshape(-1, len(self.class_names))

    def mask_matrix(self, split: str | None = None) -> np.ndarray:
        """Assessed mask (``label_mask``) of a split's records, or of every record, (N, classes)."""
        records = self.records if split is None else [self.records[i] for i in self.indices(split)]
        return np.array([label_mask(r) for r in records], dtype=np.float32).reshape(-1, len(self.class_names))

    def training_targets(self) -> tuple[np.ndarray, np.ndarray]:
        """Targets and per-entry loss weights of the training split, (N, classes) each.

        Human labels weigh 1 where assessed. With ``weak_labels`` enabled, Slither's label fills each class
        it assesses and no human did, at ``weak_labels.weight`` (a variant takes its original's). With
        ``audited_negative_weight``, audited code's classes still unassessed become negatives at that weight.
        Each row is
        then scaled by its source's weight; the share of the total weight each source ends up with is logged.
        """
        records = [self.records[i] for i in self.indices("train")]
        labels, weight = self.label_matrix("train"), self.mask_matrix("train")
        if self.weak_targets is not None:
            rows = [k for k, r in enumerate(records) if r["origin"] in self.weak_cfg.sources]
            originals = {r["id"]: r for r in self.records if not r.get("augmented_from")}
            targets, assessed = self.weak_targets(
                [originals.get(records[k].get("augmented_from"), records[k]) for k in rows]
            )
            fill = assessed * (weight[rows] == 0)
            labels[rows] = np.where(fill > 0, targets, labels[rows])
            weight[rows] += fill * self.weak_cfg.weight
            found = int(assessed.any(1).sum())
            log.info(
                "Weak labels (Slither, weight %g): %d of %d training records of %s have cached findings "
                "(%d without stay masked); %d weak entries (%d positive) over %s",
                self.weak_cfg.weight,
                found,
                len(rows),
                list(self.weak_cfg.sources),
                len(rows) - found,
                int(fill.sum()),
                int((fill * targets).sum()),
                ", ".join(self.weak_targets.classes),
            )
        if self.audited_negative_weight:
            rows = [k for k, r in enumerate(records) if r["origin"] in AUDITED_SOURCES]
            free = (weight[rows] == 0).astype(np.float32)  # labels there are 0: no known vulnerability
            weight[rows] += free * self.audited_negative_weight
            log.info(
                "Audited negatives (weight %g): %d training records of %s, %d negative entries",
                self.audited_negative_weight,
                len(rows),
                sorted(AUDITED_SOURCES),
                int(free.sum()),
            )
        weight *= np.array([[self.source_weights.get(r["origin"], 1.0)] for r in records], dtype=np.float32)
        if self.era_cfg.enabled:
            eras = [compiler_era(r) for r in records]
            factors = era_balance_factors(labels, weight, eras, self.era_cfg)
            weight *= factors
            log.info(
                "Era balance: %d training records over eras %s; positive entries' factors %.2f-%.2f",
                len(records),
                dict(sorted(Counter(eras).items())),
                float(factors[labels > 0.5].min(initial=1.0)),
                float(factors[labels > 0.5].max(initial=1.0)),
            )
        totals = dict.fromkeys(self.sources, 0.0)
        counts = dict.fromkeys(self.sources, 0)
        for r, w in zip(records, weight.sum(1), strict=True):
            totals[r["origin"]] += float(w)
            counts[r["origin"]] += 1
        total = sum(totals.values()) or 1.0
        log.info(
            "Loss weight share by source (train): %s",
            ", ".join(
                f"{name} {100 * totals[name] / total:.1f}% ({counts[name]} records, "
                f"source weight {self.source_weights.get(name, 1.0):g})"
                for name in self.sources
            ),
        )
        return labels, weight

    def split_labels(self, split: str) -> dict[str, np.ndarray]:
        """A split's label columns: ``labels`` and ``loss_weight`` (train: ``training_targets``; elsewhere
        the human labels and their mask), ``label_mask`` (human labels: what metrics use), ``family``,
        ``index``, ``era`` (``era_code`` of the record's compiler: era-group thresholds read it)."""
        idx = self.indices(split)
        mask = self.mask_matrix(split)
        labels, weight = self.train_targets if split == "train" else (self.label_matrix(split), mask)
        return {
            "labels": labels,
            "label_mask": mask,
            "loss_weight": weight,
            "family": self.family_index()[idx],
            "index": idx,
            "era": np.array([era_code(compiler_era(self.records[i])) for i in idx], dtype=np.int64),
        }

    def family_index(self) -> np.ndarray:
        """Family index per record (-100 where unknown: ignored by the loss)."""
        index = {f: i for i, f in enumerate(self.family_names)}
        return np.array([index.get(r.get("family"), -100) for r in self.records], dtype=np.int64)

    def pos_weight(self) -> list[float]:
        """neg/pos per class over the training split's assessed entries, clipped to [1, 50] (1 for classes
        never seen); with every entry assessed, neg = records - pos as before."""
        y = self.label_matrix("train")
        pos = y.sum(0)  # positives are always assessed
        assessed = self.mask_matrix("train").sum(0)
        weight = np.where(pos > 0, (assessed - pos) / np.maximum(pos, 1), 1.0)
        return np.clip(weight, 1.0, 50.0).round(3).tolist()

    def label_kwargs(self) -> dict[str, Any]:
        """Label maps and imbalance weights every contract classifier is built with."""
        self.setup()
        present = self.label_matrix("train").sum(0) > 0
        return {
            "class_names": self.class_names,
            "family_names": self.family_names,
            "pos_weight": self.pos_weight(),
            "metric_classes": [c for c, p in zip(self.class_names, present, strict=True) if p],
        }

    # -- loaders ----------------------------------------------------------------------------------------
    def _loader(self, split: str, train: bool = False) -> DataLoader:
        return make_loader(
            self.splits[split],
            self.batch_size,
            self.collate_fn,
            self.num_workers,
            self.pin_memory,
            train=train,
            length_buckets=self.length_buckets,
            distributed=self.trainer is not None and self.trainer.world_size > 1,
            sort_eval=self.length_buckets,  # the bytecode detector: a contract scores the same in any batch
        )
