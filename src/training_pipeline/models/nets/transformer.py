"""A ``transformers`` encoder over token windows, and pooling of a contract's windows into one vector.

The encoder is RoBERTa-style, built from a small config by default, or loaded from a pretrained model
(hub name when the network allows, or a local directory), or from a code_analyzer_mlm checkpoint. Its
config travels in the classifier's hparams (``encoder_config``), so a checkpoint reloads without the
original pretrained files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel

from training_pipeline.errors import ConfigError
from training_pipeline.utils.checkpoints import read_checkpoint

WINDOW_POOLINGS = ("max", "attention", "mean")
TOKEN_POOLINGS = ("cls", "mean", "max")
# transformers writes these into every config; they are not architecture
_VOLATILE = ("transformers_version", "architectures", "_name_or_path", "torch_dtype", "dtype")


def small_encoder_config(
    vocab_size: int,
    pad_token_id: int,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_positions: int = 256,
    dropout: float = 0.1,
) -> dict[str, Any]:
    """A RoBERTa config as a plain dict; ``max_positions`` counts tokens of a window (offset added here)."""
    if hidden_size % num_heads:
        raise ConfigError(
            f"model.hidden_size={hidden_size} must be a multiple of model.num_heads={num_heads}"
        )
    return {
        "model_type": "roberta",
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "intermediate_size": intermediate_size or 4 * hidden_size,
        "max_position_embeddings": max_positions + pad_token_id + 1,  # RoBERTa positions start after pad
        "hidden_dropout_prob": dropout,
        "attention_probs_dropout_prob": dropout,
        "pad_token_id": pad_token_id,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "type_vocab_size": 1,
        "layer_norm_eps": 1e-5,
    }


def build_encoder(config: dict[str, Any]) -> nn.Module:
    """A randomly initialized encoder (no pooling layer) from a config dict."""
    cfg = {k: v for k, v in config.items() if k not in _VOLATILE}
    hf_config = AutoConfig.for_model(**cfg)
    try:
        return AutoModel.from_config(hf_config, add_pooling_layer=False, attn_implementation="sdpa")
    except (TypeError, ValueError):
        return AutoModel.from_config(hf_config)


def encoder_config_of(encoder: nn.Module) -> dict[str, Any]:
    """The encoder's config as a plain dict that ``build_encoder`` accepts."""
    d = encoder.config.to_dict()
    return {k: v for k, v in d.items() if k not in _VOLATILE and not k.startswith("_")}


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def load_pretrained_encoder(name_or_path: str) -> nn.Module:
    """A pretrained encoder from a local directory, or the hub when the network is allowed."""
    local = Path(name_or_path).is_dir()
    try:
        return AutoModel.from_pretrained(
            name_or_path, local_files_only=local or _offline(), add_pooling_layer=False
        )
    except TypeError:
        return AutoModel.from_pretrained(name_or_path, local_files_only=local or _offline())
    except (OSError, ValueError) as exc:
        hint = " (HF_HUB_OFFLINE=1: only local directories or cached models)" if _offline() else ""
        raise ConfigError(
            f"{name_or_path}: cannot load the encoder{hint}: {str(exc).splitlines()[0]}"
        ) from None


def load_encoder_artifact(path: str | Path) -> nn.Module:
    """The encoder of a code_analyzer_mlm checkpoint (``.ckpt``: its ``encoder.*`` weights) or export."""
    path = Path(path)
    if path.is_dir():
        return load_pretrained_encoder(str(path))
    if not path.is_file():
        raise ConfigError(f"{path}: no such encoder checkpoint or directory (model.encoder_ckpt)")
    ckpt = read_checkpoint(path)
    config = (ckpt.get("hyper_parameters") or {}).get("encoder_config")
    if not config:
        raise ConfigError(f"{path}: no encoder_config in its hparams (not a code model checkpoint?)")
    encoder = build_encoder(config)
    weights = {k[len("encoder.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("encoder.")}
    missing, unexpected = encoder.load_state_dict(weights, strict=False)
    missing = [k for k in missing if "position_ids" not in k]
    if missing or unexpected:
        raise ConfigError(
            f"{path}: encoder weights do not fit (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return encoder


class WindowPooling(nn.Module):
    """Pools the window vectors of each contract: ``max``, ``mean`` or learned ``attention`` over windows."""

    def __init__(self, hidden: int, mode: str = "max") -> None:
        super().__init__()
        if mode not in WINDOW_POOLINGS:
            raise ConfigError(f"model.window_pooling={mode!r}: expected one of {WINDOW_POOLINGS}")
        self.mode = mode
        if mode == "attention":
            self.score = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, h: torch.Tensor, owner: torch.Tensor, n_contracts: int) -> torch.Tensor:
        """``h`` (windows, hidden), ``owner`` (windows,) contract index → (contracts, hidden)."""
        counts = torch.bincount(owner, minlength=n_contracts)
        slot = torch.arange(len(owner), device=h.device) - (torch.cumsum(counts, 0) - counts)[owner]
        width = int(counts.max())
        padded = h.new_zeros(n_contracts, width, h.shape[-1])
        padded[owner, slot] = h
        mask = torch.zeros(n_contracts, width, dtype=torch.bool, device=h.device)
        mask[owner, slot] = True
        if self.mode == "max":
            return padded.masked_fill(~mask.unsqueeze(-1), torch.finfo(h.dtype).min).amax(1)
        if self.mode == "mean":
            return padded.sum(1) / counts.clamp(min=1).unsqueeze(-1).to(h.dtype)
        scores = self.score(padded).squeeze(-1).float()  # bf16 autocast: softmax in float32
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        return (torch.softmax(scores, dim=1).to(padded.dtype).unsqueeze(-1) * padded).sum(1)


def pool_tokens(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """One vector per window: the ``<s>`` token's, or the mean or max over its real tokens (max keeps a
    one-line signal that a mean over hundreds of tokens would dilute)."""
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return hidden.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(hidden.dtype).min).amax(1)
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)
