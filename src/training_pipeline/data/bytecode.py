"""LightningDataModule over contract runtime bytecode, tokenized into opcode ids."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from training_pipeline.data.contracts import SPLITS, ColumnDataset, ContractDataModule, label_columns
from training_pipeline.data.evm import EvmTokenizer
from training_pipeline.data.featurizers import BytecodeFeaturizer, pad_sequences, truncate
from training_pipeline.errors import ConfigError, DataError
from training_pipeline.utils.checks import config_dataclass

log = logging.getLogger(__name__)

DRAWN_VARIANTS = ("sample", "pair")  # train_variants that keep one row per contract and draw at each access


@dataclass(frozen=True)
class TokenizerConfig:
    """``data.tokenizer.*``: opcode tokenizer options."""

    push_buckets: int | None = None
    strip_metadata: bool = True


@dataclass(frozen=True)
class SpliceConfig:
    """``data.splice``: train on flawed code inside real code, the way SolidiFI builds its contracts.

    Generated contracts are short and whole; a real flaw sits in a long contract among code that has none
    (SolidiFI injects its bugs into real token contracts: a median of 5,428 opcodes, and 76% of them exceed
    the detector's 4,096). Enabled, each access to a training row of a ``guests`` source is, with probability
    ``rate``, the row's opcodes inserted at a random point of a window of a random ``hosts`` training
    contract (audited code: no known flaw), the window as long as ``max_length`` leaves room for. The row
    keeps its own labels and mask, flawed or safe alike, so length alone says nothing about the label.
    """

    enabled: bool = False
    rate: float = 0.5
    guests: tuple[str, ...] = ("corpus",)
    hosts: tuple[str, ...] = ("real_code",)

    def __post_init__(self) -> None:
        if isinstance(self.rate, bool) or not isinstance(self.rate, int | float) or not 0 <= self.rate <= 1:
            raise ConfigError(f"data.splice.rate={self.rate!r}: expected a number in [0, 1]")
        for key in ("guests", "hosts"):
            value = getattr(self, key)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value) or not value:
                raise ConfigError(f"data.splice.{key}={value!r}: expected a non-empty list of source names")
            object.__setattr__(self, key, tuple(value))


def splice(guest: np.ndarray, host: np.ndarray, max_length: int, start: float, cut: float) -> np.ndarray:
    """``guest`` inserted into a window of ``host``: the whole host when both fit in ``max_length``, else a
    window of the room the guest leaves. ``start`` and ``cut`` (in [0, 1)) place the window in the host and
    the guest in the window, as fractions, so one draw places a contract's compile variants alike. A guest
    that fills the budget (or an empty host) comes back unchanged."""
    room = min(len(host), max_length - len(guest))
    if room <= 0:
        return guest
    first = int(start * (len(host) - room + 1))
    window = host[first : first + room]
    at = int(cut * (room + 1))
    return np.concatenate([window[:at], guest, window[at:]])


class TokenizedContracts(ColumnDataset):
    """Per contract: opcode ids (``input_ids``), multi-hot labels, their assessed mask and loss weights,
    family index and record index."""

    def lengths(self) -> list[int]:
        """Opcode count per contract (for length-bucketed batches)."""
        return [len(x) for x in self.columns["input_ids"]]


class SampledVariants(TokenizedContracts):
    """Training contracts whose ``input_ids`` entry is a list of their compile variants' opcode ids: each
    access draws one (``train_variants: sample``), so an epoch sees every contract once, under a random
    compile setting. ``pair=True`` (``train_variants: pair``) draws two different variants where a contract
    has them (``input_ids`` and ``pair_ids``; the same one twice where it has one), for a consistency loss
    between compile settings. Lengths (for buckets) are the first variant's."""

    def __init__(self, seed: int = 0, pair: bool = False, **columns: Any) -> None:
        super().__init__(**columns)
        self.rng, self.pair = random.Random(seed), pair

    def lengths(self) -> list[int]:
        return [len(x[0]) for x in self.columns["input_ids"]]

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = super().__getitem__(i)
        variants = item["input_ids"]
        if not self.pair:
            item["input_ids"] = self.rng.choice(variants)
        elif len(variants) == 1:
            item["input_ids"] = item["pair_ids"] = variants[0]
        else:
            item["input_ids"], item["pair_ids"] = self.rng.sample(variants, 2)
        return item


class SplicedContracts(Dataset):
    """A training dataset whose ``guest`` rows are, at each access with probability ``rate``, spliced into a
    random host's opcodes (``splice``; ``SpliceConfig``). ``hosts`` holds each host's compile variants; a
    variant pair (``pair_ids``) is spliced into the same host at the same relative point."""

    def __init__(
        self,
        base: TokenizedContracts,
        guest: np.ndarray,
        hosts: list[list[np.ndarray]],
        rate: float,
        max_length: int,
        seed: int = 0,
    ) -> None:
        self.base, self.guest, self.hosts = base, guest, hosts
        self.rate, self.max_length, self.rng = rate, max_length, random.Random(seed)
        self.columns = base.columns

    @property
    def index(self) -> Any:
        return self.base.index

    def lengths(self) -> list[int]:
        return self.base.lengths()

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.base[i]
        if not self.guest[i] or self.rng.random() >= self.rate:
            return item
        host = self.rng.choice(self.hosts)
        start, cut = self.rng.random(), self.rng.random()
        # a variant pair: two of the host's compile settings where it has them, both at the same place
        first, second = self.rng.sample(host, 2) if len(host) > 1 else (host[0], host[0])
        item["input_ids"] = splice(item["input_ids"], first, self.max_length, start, cut)
        if "pair_ids" in item:
            item["pair_ids"] = splice(item["pair_ids"], second, self.max_length, start, cut)
        return item


def collate(batch: list[dict[str, Any]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence of the batch (not to max_length: most contracts are far shorter); a
    batch of variant pairs also gets ``pair_input_ids`` (the second variant of each contract)."""
    ids = [b["input_ids"] for b in batch]
    out = {
        "input_ids": pad_sequences(ids, pad_id),
        "lengths": torch.tensor([len(x) for x in ids]),
        **label_columns(batch),
    }
    if "pair_ids" in batch[0]:
        out["pair_input_ids"] = pad_sequences([b["pair_ids"] for b in batch], pad_id)
    return out


class ContractBytecodeDataModule(ContractDataModule):
    """Contracts' runtime bytecode → opcode ids, from any contract source (generated corpus by default).

    Records, sources and grouped splits come from ``ContractDataModule``. The tokenizer is fixed (no
    fitting), so nothing leaks from val/test into the features.

    Compile variants (records with a ``bytecode_variants`` map, e.g. the corpus built with several
    ``data.corpus.compile_variants``): ``variant`` picks the bytecode that val, test, predict and "all" see
    (None: ``bytecode``; a record lacking the variant keeps ``bytecode``); ``train_variants: true`` adds each
    training record's other variants as extra training rows (id ``<id>~<variant>``, same group), while
    ``sample`` keeps one row per training record and draws one of its variants at every access (an epoch
    costs the same; the compile setting is augmentation), and ``pair`` draws two different variants of it
    (``pair_input_ids`` in the batch: the model's loss on both and ``model.variant_consistency``, a penalty
    on their predictions disagreeing). Otherwise training rows use ``bytecode``.
    ``val_variants: true`` puts each validation contract in once per distinct compile variant it has, so
    checkpoints are selected and thresholds (and their false-alarm budget) tuned over every compile setting
    a scan may meet, not over one of them.

    Lengths: training rows are cut to ``max_length`` opcodes (the cost of a step); validation, test,
    predict and every scan of the trained model read up to ``eval_max_length`` (None: ``max_length``), so
    a long contract's middle, which ``head_tail`` cuts away, is still scored where it counts.
    """

    needs = "bytecode"
    collate_fn = staticmethod(collate)

    def __init__(
        self,
        *args: Any,
        tokenizer: dict | None = None,
        max_length: int = 8192,
        eval_max_length: int | None = None,
        truncation: str = "head_tail",
        length_buckets: bool = True,
        variant: str | None = None,
        train_variants: bool | str = False,
        val_variants: bool = False,
        splice: dict | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if variant is not None and (not isinstance(variant, str) or not variant):
            raise ConfigError(
                f"data.variant={variant!r}: expected a compile variant key such as o1-r200, or null"
            )
        if not isinstance(train_variants, bool) and train_variants not in DRAWN_VARIANTS:
            raise ConfigError(f"data.train_variants={train_variants!r}: expected true, false, sample or pair")
        if not isinstance(val_variants, bool):
            raise ConfigError(f"data.val_variants={val_variants!r}: expected true or false")
        self.variant, self.train_variants, self.val_variants = variant, train_variants, val_variants
        for key, value in (("max_length", max_length), ("eval_max_length", eval_max_length)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"data.{key}={value!r}: expected a positive number of opcodes")
        if eval_max_length is not None and eval_max_length < max_length:
            raise ConfigError(
                f"data.eval_max_length={eval_max_length}: shorter than data.max_length={max_length} "
                "(evaluation would see less of a contract than training)"
            )
        self.max_length = max_length  # training rows; the featurizer's length is evaluation's
        self.tokenizer_cfg = config_dataclass(TokenizerConfig, tokenizer, "data.tokenizer")
        self.featurizer = BytecodeFeaturizer(
            EvmTokenizer(**vars(self.tokenizer_cfg)), eval_max_length or max_length, truncation
        )
        self.length_buckets = length_buckets
        self.splice_cfg = config_dataclass(SpliceConfig, splice, "data.splice")

    @property
    def tokenizer(self) -> EvmTokenizer:
        return self.featurizer.tokenizer

    def use_tokenizer_state(self, state: dict[str, Any]) -> None:
        """Featurize with a trained model's tokenizer settings (eval and predict)."""
        f = self.featurizer
        self.featurizer = BytecodeFeaturizer(EvmTokenizer.from_state_dict(state), f.max_length, f.truncation)

    # -- compile variants ----------------------------------------------------------------------------
    def load_records(self) -> tuple[list[dict[str, Any]], list[str]]:
        """The records and splits of ``ContractDataModule``; with ``variant`` set, at least one record must
        have it (else a DataError naming the variants there are)."""
        records, names = super().load_records()
        if self.variant is not None:
            lacking = sum(1 for r in records if not record_variants(r).get(self.variant))
            if lacking == len(records):
                have = sorted({k for r in records for k in record_variants(r)})
                raise DataError(
                    f"data.variant={self.variant!r}: no record has this compile variant; available: "
                    + (", ".join(have) or "none (build the corpus with several data.corpus.compile_variants)")
                )
            if lacking:
                log.info(
                    "data.variant=%s: %d of %d records lack it and keep their bytecode",
                    self.variant,
                    lacking,
                    len(records),
                )
        return records, names

    def extra_train_records(self, records: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
        """With ``train_variants``: each training record's other compile variants (distinct bytecode only) as
        rows of the same group, id ``<id>~<variant>``; never in val/test."""
        if self.train_variants is not True:
            return []
        extra, n_train = [], 0
        for r, split in zip(records, names, strict=True):
            if split != "train" or r.get("augmented_from"):
                continue
            n_train += 1
            seen = {r["bytecode"]}
            for key, code in record_variants(r).items():
                if code not in seen:
                    seen.add(code)
                    extra.append(
                        {
                            **r,
                            "id": f"{r['id']}~{key}",
                            "bytecode": code,
                            "augmented_from": r["id"],
                            "compile_variant": key,
                        }
                    )
        if extra:
            log.info(
                "Compile variants: %d extra training rows from %d training contracts", len(extra), n_train
            )
        else:
            log.warning("data.train_variants: no training record has another compile variant; nothing added")
        return extra

    def eval_bytecode(self, record: dict[str, Any]) -> str:
        """The bytecode val/test/predict see: ``variant`` where the record has it, else ``bytecode``."""
        if self.variant is None:
            return record["bytecode"]
        return record_variants(record).get(self.variant) or record["bytecode"]

    def prediction_fields(self, index: int) -> dict[str, str]:
        """What a prediction row of record ``index`` (val/test/predict) says about its input: the compile
        ``variant`` it was built with, where the record has it (absent: its ``bytecode``)."""
        if self.variant is not None and record_variants(self.records[index]).get(self.variant):
            return {"compile_variant": self.variant}
        return {}

    def _train_cut(self, ids: np.ndarray) -> np.ndarray:
        """A training row's ids from evaluation-length ids: cut to ``max_length`` (the same cut as encoding
        at ``max_length``: head_tail's head and tail are parts of the longer cut's)."""
        return truncate(ids, self.max_length, self.featurizer.truncation)

    def featurize(self, records: list[dict[str, Any]]) -> None:
        """Opcode ids of every record, split into the datasets of ``self.splits`` (train: ``bytecode`` cut to
        ``max_length``; the other splits: ``eval_bytecode`` up to ``eval_max_length``)."""
        full = [self.featurizer.encode(r["bytecode"], source=f"record {r['id']!r}") for r in records]
        ids = [self._train_cut(x) for x in full]
        eval_ids: dict[int, np.ndarray] = {}

        def view(split: str, i: int) -> np.ndarray:
            if split == "train":
                return ids[i]
            if self.variant is None:
                return full[i]
            if i not in eval_ids:
                code = self.eval_bytecode(records[i])
                same = code == records[i]["bytecode"]
                eval_ids[i] = (
                    full[i] if same else self.featurizer.encode(code, source=f"record {records[i]['id']!r}")
                )
            return eval_ids[i]

        for split in (*SPLITS, "all"):
            columns = self.split_labels(split)
            if split == "train" and self.train_variants in DRAWN_VARIANTS:
                input_ids = [self._all_variants(records[i], ids[i], train=True) for i in columns["index"]]
                self.splits[split] = SampledVariants(
                    seed=self.split_cfg.seed,
                    pair=self.train_variants == "pair",
                    input_ids=input_ids,
                    **columns,
                )
            elif split == "val" and self.val_variants:
                per = [self._all_variants(records[i], full[i]) for i in columns["index"]]
                counts = np.array([len(v) for v in per], dtype=np.int64)
                rows = {k: np.repeat(np.asarray(v), counts, axis=0) for k, v in columns.items()}
                self.splits[split] = TokenizedContracts(input_ids=[x for v in per for x in v], **rows)
                log.info(
                    "Compile variants: %d validation rows for %d contracts (every compile variant)",
                    int(counts.sum()),
                    len(per),
                )
            else:
                input_ids = [view(split, i) for i in columns["index"]]
                self.splits[split] = TokenizedContracts(input_ids=input_ids, **columns)
        if self.train_variants in DRAWN_VARIANTS:
            n = sum(len(x) > 1 for x in self.splits["train"].columns["input_ids"])
            log.info(
                "Compile variants: %d of %d training contracts drawn from several",
                n,
                len(self.splits["train"]),
            )
        if self.splice_cfg.enabled:
            self.splits["train"] = self._spliced(self.splits["train"], records, ids)

    def _spliced(
        self, train: TokenizedContracts, records: list[dict[str, Any]], ids: list[np.ndarray]
    ) -> SplicedContracts:
        """The training split with ``data.splice``: its guest rows spliced into its host contracts."""
        cfg, origins = self.splice_cfg, [records[i]["origin"] for i in train.columns["index"]]
        guest = np.array([o in cfg.guests for o in origins], dtype=bool)
        hosts = [
            self._all_variants(records[i], ids[i], train=True)
            for i, o in zip(train.columns["index"], origins, strict=True)
            if o in cfg.hosts
        ]
        for key, found in (("guests", int(guest.sum())), ("hosts", len(hosts))):
            if not found:
                raise ConfigError(
                    f"data.splice.{key}={list(getattr(cfg, key))}: no training contract of these sources "
                    f"(data.sources: {list(self.sources)})"
                )
        log.info(
            "Splice: %d training rows of %s spliced into one of %d %s contracts with probability %g",
            int(guest.sum()),
            list(cfg.guests),
            len(hosts),
            list(cfg.hosts),
            cfg.rate,
        )
        return SplicedContracts(train, guest, hosts, cfg.rate, self.max_length, self.split_cfg.seed)

    def _all_variants(self, record: dict[str, Any], ids: np.ndarray, train: bool = False) -> list[np.ndarray]:
        """``ids`` (its ``bytecode``) and the opcode ids of each other distinct compile variant (cut to
        ``max_length`` for ``train``, else up to ``eval_max_length``)."""
        out, seen = [ids], {record["bytecode"]}
        for code in record_variants(record).values():
            if code not in seen:
                seen.add(code)
                x = self.featurizer.encode(code, source=f"record {record['id']!r}")
                out.append(self._train_cut(x) if train else x)
        return out

    # -- what the model needs to know -----------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.featurizer.vocab_size

    def model_kwargs(self) -> dict[str, Any]:
        """Dimensions and label maps the model is built with (saved in its checkpoint)."""
        return {
            **self.label_kwargs(),
            "vocab_size": self.vocab_size,
            "tokenizer_state": self.tokenizer.state_dict(),
        }


def record_variants(record: dict[str, Any]) -> dict[str, str]:
    """The record's compiled variants (key -> runtime bytecode), failed or empty ones left out."""
    return {k: v for k, v in (record.get("bytecode_variants") or {}).items() if v}
