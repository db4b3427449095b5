"""The code analyzer: multi-label vulnerability classes from Solidity source, and the lines responsible.

A transformer encoder reads a contract's overlapping BPE windows; window vectors are pooled into one vector
per contract (max or attention over windows); two heads follow: vulnerability logits (sigmoid), family.
At test time, gradient × input on the token embeddings, summed per source line, ranks the lines behind each
predicted (and each true) class; ``test/loc_top1`` and ``test/loc_top3`` score that ranking.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from training_pipeline.data.bpe import SourceTokenizer
from training_pipeline.errors import ConfigError
from training_pipeline.metrics.classification import FlagBudget, check_threshold_beta
from training_pipeline.metrics.localization import TOP_KS, hit_rates, line_scores, rank_lines
from training_pipeline.models.base import OPTIM_KEYS, BaseModule
from training_pipeline.models.contract_classifier import ContractClassifier
from training_pipeline.models.nets.transformer import (
    TOKEN_POOLINGS,
    WindowPooling,
    build_encoder,
    encoder_config_of,
    load_encoder_artifact,
    load_pretrained_encoder,
    pool_tokens,
    small_encoder_config,
)

TOKENIZER_KEYS = ["tokenizer_json"]  # kept in the checkpoint by TokenizerCarrier, not in the hparams


def make_encoder(
    vocab_size: int,
    pad_token_id: int,
    window_size: int,
    encoder_config: dict | None,
    encoder_ckpt: str | None,
    pretrained: str | None,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    intermediate_size: int | None,
    max_positions: int | None,
    dropout: float,
) -> nn.Module:
    """The encoder: rebuilt from ``encoder_config`` (a reloaded checkpoint: weights follow), loaded from an
    MLM checkpoint or a pretrained model, or new from the size options."""
    if encoder_config:
        encoder = build_encoder(encoder_config)
    elif encoder_ckpt:
        encoder = load_encoder_artifact(encoder_ckpt)
    elif pretrained:
        encoder = load_pretrained_encoder(pretrained)
    else:
        encoder = build_encoder(
            small_encoder_config(
                vocab_size,
                pad_token_id,
                hidden_size,
                num_layers,
                num_heads,
                intermediate_size,
                max_positions or window_size,
                dropout,
            )
        )
    encoder.train()  # from_pretrained returns eval mode; Lightning switches modes per stage
    cfg = encoder.config
    if cfg.vocab_size < vocab_size:
        raise ConfigError(
            f"encoder vocab {cfg.vocab_size} < tokenizer vocab {vocab_size}: not the encoder's tokenizer"
        )
    limit = cfg.max_position_embeddings - (pad_token_id + 1 if cfg.model_type == "roberta" else 0)
    if window_size > limit:
        raise ConfigError(f"data.window.size={window_size} exceeds the encoder's {limit} positions")
    return encoder


class TokenizerCarrier(BaseModule):
    """A module around a transformer encoder and its tokenizer: builds the encoder from the hparams, keeps the
    trained BPE (``tokenizer_json``) in the checkpoint, not in the (logged) hparams, and exports both.

    On load the BPE is put back into ``hparams.tokenizer_state['json']``, which eval hands the datamodule.
    """

    tokenizer_json: str | None
    encoder: nn.Module

    def build_encoder(self) -> int:
        """``self.encoder`` from the hparams (see ``make_encoder``); returns its hidden size."""
        h = self.hparams
        self.encoder = make_encoder(
            h.vocab_size,
            h.pad_token_id,
            h.window_size,
            h.encoder_config,
            h.get("encoder_ckpt"),
            h.pretrained_model_name_or_path,
            h.hidden_size,
            h.num_layers,
            h.num_heads,
            h.intermediate_size,
            h.max_positions,
            h.dropout,
        )
        self.hparams.encoder_config = encoder_config_of(self.encoder)
        return self.encoder.config.hidden_size

    def optimizer_params(self) -> list[dict[str, Any]]:
        """No weight decay on biases, norms and embeddings (the rest takes the optimizer's weight_decay)."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim < 2 or "embeddings" in name or "norm" in name.lower() else decay).append(p)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tokenizer_json"] = self.tokenizer_json
        state = checkpoint.get("hyper_parameters", {}).get("tokenizer_state")
        if isinstance(state, dict) and "json" in state:
            checkpoint["hyper_parameters"]["tokenizer_state"] = {
                k: v for k, v in state.items() if k != "json"
            }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.tokenizer_json = checkpoint.get("tokenizer_json")
        state = self.hparams.get("tokenizer_state")
        if self.tokenizer_json and isinstance(state, dict):
            self.hparams.tokenizer_state = {**state, "json": self.tokenizer_json}

    def source_tokenizer(self) -> SourceTokenizer:
        """The tokenizer the encoder was trained with."""
        state = dict(self.hparams.get("tokenizer_state") or {})
        if self.tokenizer_json:
            state["json"] = self.tokenizer_json
        return SourceTokenizer.from_state_dict(state)

    def save_encoder(self, directory: str | Path) -> Path:
        """The encoder (safetensors + config) and its tokenizer: a directory ``pretrained_model_name_or_path``
        and ``encoder_ckpt`` accept."""
        directory = Path(directory)
        self.encoder.save_pretrained(str(directory))
        self.source_tokenizer().save(directory)
        return directory

    def on_fit_start(self) -> None:
        """The tokenizer is saved with the run (``<run>/tokenizer/``)."""
        root = Path(self.trainer.default_root_dir)
        if self.trainer.is_global_zero and self.hparams.get("tokenizer_state"):
            try:
                self.source_tokenizer().save(root / "tokenizer")
            except Exception as exc:  # a pretrained tokenizer whose files are gone: the run still trains
                self.print(f"tokenizer not saved with the run: {exc}")


class CodeAnalyzer(TokenizerCarrier, ContractClassifier):
    """Transformer over source windows → vulnerability logits and family logits, plus line attributions.

    Everything needed to predict (encoder config, label maps, tokenizer, tuned per-class thresholds) is in the
    checkpoint, so ``CodeAnalyzer.load_from_checkpoint(path)`` needs no config and no network.
    """

    def __init__(
        self,
        vocab_size: int,
        class_names: list[str],
        family_names: list[str],
        pos_weight: list[float] | None = None,
        metric_classes: list[str] | None = None,
        pad_token_id: int = 1,
        window_size: int = 256,
        tokenizer_state: dict[str, Any] | None = None,
        tokenizer_json: str | None = None,
        pretrained_model_name_or_path: str | None = None,
        encoder_ckpt: str | None = None,
        encoder_config: dict[str, Any] | None = None,
        hidden_size: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        intermediate_size: int | None = None,
        max_positions: int | None = None,
        dropout: float = 0.1,
        token_pooling: str = "mean",
        window_pooling: str = "max",
        eval_chunk: int = 64,
        warmup_ratio: float = 0.06,
        loss: str = "bce",
        focal_gamma: float = 2.0,
        family_loss_weight: float = 0.1,
        max_audited_flag_rate: FlagBudget = None,
        max_audited_flagged_share: float | None = None,
        threshold_beta: float = 1.0,
        threshold_eras: list[str] | None = None,
        era_max_flags: int | None = None,
        localize: bool = True,
        localization_top_k: int = 5,
        line_reduce: str = "sum",
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler)
        check_threshold_beta(threshold_beta)
        if token_pooling not in TOKEN_POOLINGS:
            raise ConfigError(f"model.token_pooling={token_pooling!r}: expected one of {TOKEN_POOLINGS}")
        if line_reduce not in ("sum", "max"):
            raise ConfigError(f"model.line_reduce={line_reduce!r}: expected 'sum' or 'max'")
        self.save_hyperparameters(ignore=TOKENIZER_KEYS + OPTIM_KEYS)
        self.tokenizer_json = tokenizer_json
        hidden = self.build_encoder()
        self.pool = WindowPooling(hidden, window_pooling)
        self.dropout = nn.Dropout(dropout)
        self.vuln_head = nn.Linear(hidden, len(class_names))
        self.family_head = nn.Linear(hidden, len(family_names))
        self.init_labels(class_names, family_names, pos_weight, metric_classes)
        self._located: list[tuple[dict, dict]] = []

    # -- names the module logs (checked against optimized_metric before training) ---------------------
    @classmethod
    def logged_metric_names(cls) -> set[str]:
        return ContractClassifier.logged_metric_names() | {f"test/loc_top{k}" for k in TOP_KS}

    # -- forward ------------------------------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings (the input of line attributions)."""
        return self.encoder.get_input_embeddings()(input_ids)

    def encode_windows(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One vector per window; without gradients, in chunks of ``eval_chunk`` windows (bounded memory)."""
        chunk = self.hparams.eval_chunk
        if torch.is_grad_enabled() or len(embeds) <= chunk:
            h = self.encoder(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
            return pool_tokens(h, attention_mask, self.hparams.token_pooling)
        return torch.cat(
            [
                self.encode_windows(embeds[i : i + chunk], attention_mask[i : i + chunk])
                for i in range(0, len(embeds), chunk)
            ]
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        window_owner: torch.Tensor,
        n_contracts: int | None = None,
        embeds: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(vulnerability logits, family logits), one row per contract."""
        n = int(window_owner.max()) + 1 if n_contracts is None else n_contracts
        if embeds is None:
            embeds = self.embed(input_ids)
        h = self.dropout(self.pool(self.encode_windows(embeds, attention_mask), window_owner, n))
        return self.vuln_head(h), self.family_head(h)

    def _logits(self, batch: dict[str, Any], embeds: torch.Tensor | None = None):
        return self(
            batch["input_ids"], batch["attention_mask"], batch["window_owner"], len(batch["labels"]), embeds
        )

    def eval_step(
        self, stage: str, batch: dict[str, Any], batch_idx: int, logits: tuple | None = None
    ) -> dict[str, torch.Tensor]:
        """As the classifier's; at test time also ranks the lines behind each predicted and true class."""
        if stage != "test" or not self.hparams.localize:
            return super().eval_step(stage, batch, batch_idx, logits)
        batch, logits, located = self._localized(batch)
        self._located += list(zip(located, batch["vulnerable_lines"], strict=True))
        return super().eval_step(stage, batch, batch_idx, logits)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """The classifier's predictions, with the ranked lines per class (``top_lines``) when localizing."""
        if not self.hparams.localize:
            return super().predict_step(batch, batch_idx)
        batch, logits, located = self._localized(batch)
        return self.predict_outputs(batch, torch.sigmoid(logits[0])) | {"top_lines": located}

    def _localized(self, batch: dict[str, Any]) -> tuple[dict[str, Any], tuple, list[dict]]:
        """(batch, detached logits, ranked lines per contract); gradients on even in inference mode."""
        with torch.inference_mode(False), torch.enable_grad():
            batch = {k: v.clone() if torch.is_tensor(v) else v for k, v in batch.items()}
            embeds = self.embed(batch["input_ids"]).detach().requires_grad_(True)
            logits = self._logits(batch, embeds)
            located = self.locate(batch, embeds, logits[0])
        return batch, tuple(t.detach() for t in logits), located

    # -- localization -------------------------------------------------------------------------------------
    def locate(self, batch: dict[str, Any], embeds: torch.Tensor, logits: torch.Tensor) -> list[dict]:
        """Per contract, ``{class: [[line, score], ...]}`` for its predicted and true classes.

        Contracts of a batch are independent, so one backward pass attributes a different class for each
        contract: the passes needed are the most classes any one contract needs, not the batch's union.
        """
        probs = torch.sigmoid(logits.detach())
        needed = [
            sorted(
                set(torch.nonzero(p >= self.thresholds).flatten().tolist())
                | set(torch.nonzero(y > 0.5).flatten().tolist())
            )
            for p, y in zip(probs, batch["labels"], strict=True)
        ]
        out: list[dict] = [{} for _ in needed]
        rounds = max((len(n) for n in needed), default=0)
        owner, lines = batch["window_owner"], batch["token_lines"]
        for r in range(rounds):
            picks = [(b, n[r]) for b, n in enumerate(needed) if len(n) > r]
            target = logits[[b for b, _ in picks], [c for _, c in picks]].sum()
            (grad,) = torch.autograd.grad(target, embeds, retain_graph=r < rounds - 1)
            token_scores = (grad * embeds).sum(-1).detach()
            for b, c in picks:
                rows = owner == b
                scores = line_scores(token_scores[rows], lines[rows], self.hparams.line_reduce)
                out[b][self.class_names[c]] = rank_lines(scores, self.hparams.localization_top_k)
        return out

    # -- epoch ends ---------------------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        self._located = []

    def on_test_epoch_end(self) -> None:
        values = self.test_epoch_values()
        n_rows = len(self.test_predictions.get("probs", []))
        if self._located and len(self._located) == n_rows:  # one process: ranks align with the rows
            ranked = [r for r, _ in self._located]
            values.update(hit_rates(ranked, [t for _, t in self._located], self.class_names, "test"))
            self.test_predictions["top_lines"] = ranked
        self._located = []
        self.log_dict(values)

    # -- predictions file -------------------------------------------------------------------------------
    def prediction_rows(self, outputs: dict[str, Any], datamodule: Any) -> Iterator[dict[str, Any]]:
        """The classifier's records plus ranked lines per class (``top_lines``: ``{class: [[line, score],
        ...]}``, for predicted and true classes) and the labelled ``vulnerable_lines`` where known."""
        ranked = outputs.get("top_lines")
        for row, rec in enumerate(super().prediction_rows(outputs, datamodule)):
            if ranked:
                rec["top_lines"] = ranked[row]
            lines = datamodule.records[int(outputs["index"][row])].get("vulnerable_lines")
            if lines:
                rec["vulnerable_lines"] = lines
            yield rec

    # -- export -------------------------------------------------------------------------------------------
    def export(self, directory: str | Path) -> Path:
        """Encoder + tokenizer (``encoder/``, a pretrained-style dir), heads, thresholds and label map."""
        directory = Path(directory)
        self.save_encoder(directory / "encoder")
        heads = {
            k: v.detach().cpu().contiguous()
            for k, v in self.state_dict().items()
            if not k.startswith("encoder.")
        }
        save_file(heads, str(directory / "heads.safetensors"))
        meta = {k: v for k, v in self.hparams.items() if k not in ("tokenizer_state",)}
        (directory / "code_analyzer.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        return directory
