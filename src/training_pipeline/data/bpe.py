"""Solidity source → BPE token ids with a source line per token.

* ``normalize_source`` strips comments (they leak labels in real datasets) and collapses whitespace, but keeps
  every newline, so line *n* of the normalized text is line *n* of the original: token offsets map straight
  back to source lines, which line-level localization needs.
* ``train_bpe`` fits a byte-level BPE (``tokenizers``) on the training split only and wraps it for
  ``transformers``; ``cached_bpe`` trains it once per (data version, training ids, config) under
  ``data/tokenizers/<key>/``.
* ``SourceTokenizer`` pairs a tokenizer (ours or a pretrained one's) with its normalization; its state is what
  a checkpoint carries so evaluation featurizes exactly as training did.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from training_pipeline.errors import ConfigError, DataError
from training_pipeline.utils.solidity import COMMENTS, iter_tokens

log = logging.getLogger(__name__)

# RoBERTa's order, so a model built from our config and a RoBERTa/CodeBERT checkpoint agree on ids 0..4.
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
BPE_FORMAT = 1  # bump when training or normalization changes what a cached tokenizer holds

_HSPACE = re.compile(r"[ \t\f\v\r]+")


@dataclass(frozen=True)
class BpeConfig:
    """``data.tokenizer.*``: BPE training and source normalization (``pretrained``: use that model's)."""

    vocab_size: int = 6000
    min_frequency: int = 2
    strip_comments: bool = True
    pretrained: str | None = None  # hub name or local dir of a model whose tokenizer to use instead
    from_checkpoint: str | None = None  # a code_analyzer_mlm checkpoint (or exported dir): its tokenizer

    def __post_init__(self) -> None:
        if self.vocab_size < len(SPECIAL_TOKENS) + 256:
            raise ConfigError(
                f"data.tokenizer.vocab_size={self.vocab_size}: need at least 261 (bytes + specials)"
            )

    def normalization(self) -> dict[str, Any]:
        return {"strip_comments": self.strip_comments}

    def training(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size, "min_frequency": self.min_frequency, "format": BPE_FORMAT}


def normalize_source(text: str, strip_comments: bool = True) -> str:
    """Blank comments (keeping their newlines), collapse runs of spaces, drop indentation; same line count."""

    text = text.replace("\r\n", "\n")
    if strip_comments:  # the shared lexer: a string literal is kept as is (an URL in a string is no comment)
        text = "".join("\n" * t.text.count("\n") if t.kind in COMMENTS else t.text for t in iter_tokens(text))
    return "\n".join(_HSPACE.sub(" ", line).strip() for line in text.split("\n"))


def _line_starts(text: str) -> list[int]:
    return [0, *(m.end() for m in re.finditer("\n", text))]


def offsets_to_lines(text: str, offsets: Sequence[tuple[int, int]]) -> np.ndarray:
    """1-based source line of each token: the line of its first non-space character."""
    starts = _line_starts(text)
    lines = np.empty(len(offsets), dtype=np.int32)
    for i, (s, e) in enumerate(offsets):
        span = text[s:e]
        pos = s + (len(span) - len(span.lstrip())) if span.strip() else s
        lines[i] = bisect.bisect_right(starts, pos)
    return lines


def train_bpe(texts: Iterable[str], cfg: BpeConfig) -> Any:
    """A byte-level BPE fitted on ``texts`` (already normalized), wrapped as a ``PreTrainedTokenizerFast``."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=False)
    return wrap_tokenizer(tok)


def wrap_tokenizer(tok: Tokenizer) -> Any:
    """``tok`` as a ``transformers`` fast tokenizer (same ids, special tokens in RoBERTa's order)."""
    # transformers costs seconds to import; only the code that builds or loads a tokenizer pays for it.
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )


def tokenizer_key(data_version: str | None, train_ids: Sequence[str], cfg: BpeConfig) -> str:
    """Cache key: data version + hash of the training ids + tokenizer config."""
    ids_hash = hashlib.sha256("\n".join(sorted(train_ids)).encode()).hexdigest()
    blob = json.dumps(
        {"data": data_version, "ids": ids_hash, **cfg.training(), **cfg.normalization()}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class SourceTokenizer:
    """A ``transformers`` fast tokenizer plus the normalization its training used."""

    def __init__(self, tokenizer, strip_comments: bool = True, origin: dict[str, Any] | None = None) -> None:
        self.tokenizer, self.strip_comments = tokenizer, strip_comments
        self.origin = origin or {}
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token

    # -- ids ------------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def special_ids(self) -> dict[str, int]:
        t = self.tokenizer
        cls = t.cls_token_id if t.cls_token_id is not None else t.bos_token_id
        sep = t.sep_token_id if t.sep_token_id is not None else t.eos_token_id
        return {"cls": cls, "sep": sep, "pad": t.pad_token_id, "mask": t.mask_token_id}

    def normalize(self, text: str) -> str:
        return normalize_source(text or "", self.strip_comments)

    def encode_lines(self, texts: Sequence[str]) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids (no special tokens) and the 1-based source line of each token, for a batch of sources."""
        norm = [self.normalize(t) for t in texts]
        enc = self.tokenizer(
            norm, add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False
        )
        lines = [offsets_to_lines(t, o).tolist() for t, o in zip(norm, enc["offset_mapping"], strict=True)]
        return enc["input_ids"], lines

    # -- state ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Small and JSON-able (checkpoint hparams); ``tokenizer_json`` carries the trained vocabulary."""
        return {"strip_comments": self.strip_comments, **self.origin}

    def tokenizer_json(self) -> str | None:
        """The full tokenizer (vocab + merges) as JSON, for our own BPE; None for a pretrained one."""
        if self.origin.get("kind") != "bpe":
            return None
        return self.tokenizer.backend_tokenizer.to_str()

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> SourceTokenizer:
        strip = state.get("strip_comments", True)
        origin = {k: v for k, v in state.items() if k not in ("strip_comments", "json")}
        if state.get("json"):
            return cls(wrap_tokenizer(Tokenizer.from_str(state["json"])), strip, origin)
        if state.get("kind") == "bpe" and state.get("dir") and Path(state["dir"]).is_dir():
            return cls(load_local_tokenizer(state["dir"]), strip, origin)
        if state.get("kind") == "pretrained":
            return cls(load_pretrained_tokenizer(state["name_or_path"]), strip, origin)
        raise DataError(f"tokenizer state {origin}: no tokenizer JSON and no readable tokenizer directory")

    def save(self, directory: str | Path) -> Path:
        """``save_pretrained`` files plus our normalization (``source_tokenizer.json``)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(directory))
        (directory / "source_tokenizer.json").write_text(json.dumps(self.state_dict(), indent=2) + "\n")
        return directory

    def fingerprint(self) -> str:
        blob = self.tokenizer.backend_tokenizer.to_str() + json.dumps(self.strip_comments)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def load_local_tokenizer(directory: str | Path) -> Any:
    """A tokenizer saved with ``save_pretrained`` (never downloads)."""
    from transformers import AutoTokenizer  # heavy import, see ``wrap_tokenizer``

    return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)


def load_pretrained_tokenizer(name_or_path: str) -> Any:
    """A pretrained model's fast tokenizer (a local dir, or a hub name when the network is allowed)."""
    from transformers import AutoTokenizer  # heavy import, see ``wrap_tokenizer``

    local = Path(name_or_path).is_dir()
    try:
        tok = AutoTokenizer.from_pretrained(name_or_path, local_files_only=local or _offline())
    except (OSError, ValueError) as exc:
        hint = " (HF_HUB_OFFLINE=1: only local directories or cached models)" if _offline() else ""
        raise ConfigError(
            f"{name_or_path}: cannot load its tokenizer{hint}: {str(exc).splitlines()[0]}"
        ) from None
    if not getattr(tok, "is_fast", False):
        raise ConfigError(f"{name_or_path}: needs a fast tokenizer (offsets map tokens to source lines)")
    return tok


def cached_bpe(
    train_sources: Sequence[str],
    train_ids: Sequence[str],
    data_version: str | None,
    cfg: BpeConfig,
    cache_dir: Path,
) -> SourceTokenizer:
    """Train (once) a BPE on the training sources; reused from ``cache_dir/<key>/`` afterwards."""
    key = tokenizer_key(data_version, train_ids, cfg)
    path = Path(cache_dir) / key
    origin = {"kind": "bpe", "key": key, "dir": str(path)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if (path / "tokenizer.json").exists():
            log.info("BPE tokenizer %s: reused from %s", key, path)
            tok = SourceTokenizer(load_local_tokenizer(path), cfg.strip_comments, origin)
        else:
            norm = [normalize_source(s, cfg.strip_comments) for s in train_sources]
            tok = SourceTokenizer(train_bpe(norm, cfg), cfg.strip_comments, origin)
            tmp = path.with_name(path.name + ".tmp")
            tok.save(tmp)
            (tmp / "meta.json").write_text(
                json.dumps(
                    {"data_version": data_version, "n_train": len(train_ids), "config": asdict(cfg)}, indent=2
                )
                + "\n"
            )
            tmp.replace(path)
            log.info(
                "BPE tokenizer %s: trained on %d sources (vocab %d)", key, len(train_sources), tok.vocab_size
            )
    return tok
