"""Run one base model on the inputs it reads: featurize in memory with the model's featurizer, call the model
on batches, and return per input its class probabilities, predicted classes and what explains them (the code
analyzer's ranked source lines, the behavior model's flagged transactions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.nn import functional as F

from training_pipeline.data.contracts import SortedBatchSampler, compiler_era, era_code
from training_pipeline.data.evm import metadata_solc_version, parse_hex
from training_pipeline.data.featurizers import BytecodeFeaturizer, SourceFeaturizer, TransactionFeaturizer
from training_pipeline.data.source import WindowBudgetSampler
from training_pipeline.data.tx_csv import import_history
from training_pipeline.scan.inputs import ScanInput

Output = dict[str, Any]


def _probs(names: Sequence[str], probs: torch.Tensor) -> dict[str, float]:
    return {c: float(p) for c, p in zip(names, probs.tolist(), strict=True)}


def _chunks(n: int, size: int) -> list[list[int]]:
    return [list(range(start, min(start + size, n))) for start in range(0, n, size)]


def item_eras(model: Any, items: Sequence[ScanInput]) -> torch.Tensor | None:
    """Each input's ``era_code`` where the model has era groups (``model.threshold_eras``), else None: the
    release it was compiled with, else the one in its bytecode's metadata; neither known (solc before 0.5.9,
    stripped metadata) → -1, which keeps the model's main thresholds."""
    if getattr(model, "era_bounds", None) is None:
        return None
    return torch.tensor([era_code(compiler_era({"compiler_version": _compiler_of(it)})) for it in items])


def batch_thresholds(
    model: Any, eras: torch.Tensor | None, rows: Sequence[int], probs: torch.Tensor
) -> torch.Tensor:
    """(len(rows), C): the class thresholds of a batch's inputs (``rows`` of ``item_eras``), each at its era
    group's and under the model's cap on flags per contract of those eras (``model.era_max_flags``)."""
    return model.thresholds_for(None if eras is None else eras[list(rows)], len(rows), probs)


def _compiler_of(item: ScanInput) -> str | None:
    if item.compiler or not item.bytecode:
        return item.compiler
    return metadata_solc_version(parse_hex(item.bytecode, item.name))


def predict_bytecode(
    model: Any, featurizer: BytecodeFeaturizer, items: Sequence[ScanInput], batch_size: int
) -> list[Output]:
    """The bytecode detector's multi-label probabilities and predicted classes per contract, in the order of
    ``items``; batched by length (a contract scores the same in any batch, the padding computed shrinks)."""
    ids = [featurizer.encode(it.bytecode, source=it.name) for it in items]
    names, out = list(model.class_names), [{} for _ in ids]
    eras = item_eras(model, items)
    for rows in SortedBatchSampler([len(x) for x in ids], batch_size):
        with torch.no_grad():
            probs = model.predict_proba(featurizer.batch([ids[i] for i in rows])["input_ids"])
        thresholds = batch_thresholds(model, eras, rows, probs)
        for i, p, t in zip(rows, probs, thresholds, strict=True):
            out[i] = {
                "probs": _probs(names, p),
                "predicted": [c for c, q, u in zip(names, p, t, strict=True) if q >= u],
                "top_lines": None,
            }
    return out


def predict_source(
    model: Any,
    featurizer: SourceFeaturizer,
    items: Sequence[ScanInput],
    batch_size: int,
) -> list[Output]:
    """The code analyzer's probabilities per contract and, by gradient x input, its best-ranked source lines
    for each predicted class (and the likeliest one)."""
    ids, lines = featurizer.tokenize([it.source_code for it in items])
    windows = [featurizer.windows(i, ln) for i, ln in zip(ids, lines, strict=True)]
    names, eras = list(model.class_names), item_eras(model, items)
    sampler = WindowBudgetSampler(
        [len(w) for w, _ in windows], batch_size, featurizer.window.max_batch_windows, shuffle=False
    )
    out: dict[int, Output] = {}
    for rows in sampler:
        batch = featurizer.batch([windows[i][0] for i in rows], [windows[i][1] for i in rows])
        with torch.inference_mode(False), torch.enable_grad():
            embeds = model.embed(batch["input_ids"]).detach().requires_grad_(True)
            logits = model(
                batch["input_ids"], batch["attention_mask"], batch["window_owner"], len(rows), embeds
            )[0]
            probs = torch.sigmoid(logits.detach())
            batch["labels"] = F.one_hot(probs.argmax(1), len(names)).float()  # also rank the likeliest class
            located = model.locate(batch, embeds, logits)
        thresholds = batch_thresholds(model, eras, rows, probs)
        for row, i in enumerate(rows):
            out[i] = {
                "probs": _probs(names, probs[row]),
                "predicted": [
                    c for c, p, t in zip(names, probs[row], thresholds[row], strict=True) if p >= t
                ],
                "top_lines": located[row],
            }
    return [out[i] for i in range(len(items))]


def predict_behavior(
    model: Any, featurizer: TransactionFeaturizer, items: Sequence[ScanInput], batch_size: int
) -> list[Output]:
    """The behavior model's anomaly-type probabilities per history, its decision and the flagged
    transactions (hashes). One history per forward pass (``batch_size`` is not used): padding a history to
    another's length moves its scores in the last float digits, and a score should not depend on what else
    is scanned."""
    histories = [import_history(it.tx_path, it.address) for it in items]
    encoded = [featurizer.encode(h) for h in histories]
    names, out = list(model.class_names), []
    for rows in _chunks(len(encoded), 1):
        batch = featurizer.batch([encoded[i] for i in rows])
        with torch.no_grad():
            logits, tx_logits = model(batch)
            probs = torch.softmax(logits, 1)
            decided = model.decide(probs)
            tx_probs = torch.sigmoid(tx_logits)
        for row, i in enumerate(rows):
            tx = tx_probs[row][batch["mask"][row]]
            refs = [histories[i]["hash"][k] for k in encoded[i]["positions"]]
            out.append(
                {
                    "probs": _probs(names, probs[row]),
                    "predicted": names[int(decided[row])],
                    "flagged_tx": [refs[k] for k in range(len(tx)) if tx[k] >= model.tx_threshold],
                    "transactions": int(batch["lengths"][row]),
                }
            )
    return out
