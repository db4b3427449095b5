"""Reference profiles: what a model's inputs and outputs looked like on its own data, for drift monitoring.

Input features are cheap and need no model: bytecode length (solc metadata stripped), the share of each opcode
group over the ``EvmTokenizer`` vocabulary, the share of post-Shanghai opcodes (PUSH0, and the Cancun TLOAD,
TSTORE, MCOPY, BLOBHASH, BLOBBASEFEE), source lines, the compiler era (``major.minor`` of the compiler, else
of the pragma) and, for a transaction history, its length, mean log value, mean log gas and failed share
(the behavior model's own ``featurize`` columns). A view the input lacks gives no value (None), never zero.

A profile (``reference_profile.json`` in a model package) holds, per feature, a histogram with stated bins
(continuous: quantile cut points of the reference, bins ``(-inf, e1], (e1, e2], ..., (ek, inf)``, plus a
random sample of up to ``sample_size`` raw values for a KS test; categorical: category counts), per-class
score histograms on the validation split, the risk histogram, the predicted-class shares (the top class of
each prediction) and the validation metrics. ``monitoring.drift`` compares an inference log against it.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training_pipeline.data.evm import EvmTokenizer, parse_hex, strip_metadata
from training_pipeline.data.featurizers import NUMERIC_FEATURES, featurize
from training_pipeline.risk import RiskTarget, view_risk

log = logging.getLogger(__name__)

PROFILE_FILE = "reference_profile.json"
PROFILE_VERSION = 1

POST_SHANGHAI = ("PUSH0", "TLOAD", "TSTORE", "MCOPY", "BLOBHASH", "BLOBBASEFEE")
"""Opcodes a pre-Shanghai compiler never emits (those the tokenizer knows)."""

_TOKENIZER = EvmTokenizer()
_GROUP_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (group, re.compile(pattern))
    for group, pattern in (
        ("push", r"PUSH\d+"),
        ("dup", r"DUP\d+"),
        ("swap", r"SWAP\d+"),
        ("log", r"LOG\d"),
        ("arithmetic", r"(ADD|MUL|SUB|DIV|SDIV|MOD|SMOD|ADDMOD|MULMOD|EXP|SIGNEXTEND)"),
        ("compare_bitwise", r"(LT|GT|SLT|SGT|EQ|ISZERO|AND|OR|XOR|NOT|BYTE|SHL|SHR|SAR|SHA3)"),
        ("flow", r"(STOP|JUMP|JUMPI|JUMPDEST|GETPC|RETURN|REVERT|INVALID)"),
        ("memory_storage", r"(POP|MLOAD|MSTORE|MSTORE8|SLOAD|SSTORE|MSIZE|TLOAD|TSTORE|MCOPY)"),
        ("call_create", r"(CREATE|CALL|CALLCODE|DELEGATECALL|CREATE2|STATICCALL|SELFDESTRUCT)"),
        (
            "block",
            r"(BLOCKHASH|COINBASE|TIMESTAMP|NUMBER|DIFFICULTY|GASLIMIT|CHAINID|BLOBHASH|BLOBBASEFEE|GAS)",
        ),
        ("environment", r".*"),  # the 0x30 range: ADDRESS .. EXTCODEHASH, SELFBALANCE, BASEFEE
    )
)


def _group_of(name: str) -> str:
    return next(group for group, rule in _GROUP_RULES if rule.fullmatch(name))


OPCODE_GROUPS: tuple[str, ...] = tuple(group for group, _ in _GROUP_RULES)
"""Every opcode of the tokenizer's vocabulary falls in one group: a contract's opcode-frequency profile."""
_OPCODE_NAMES = _TOKENIZER.vocab[2:]  # after <pad>, <unk>
_GROUP_INDEX = np.array(
    [0, 0] + [OPCODE_GROUPS.index(_group_of(n)) for n in _OPCODE_NAMES], dtype=np.intp
)  # token id -> group; the two special ids never occur in an encoding
_POST_SHANGHAI_IDS = np.array([_TOKENIZER.vocab.index(n) for n in POST_SHANGHAI if n in _TOKENIZER.vocab])

CATEGORICAL_FEATURES: tuple[str, ...] = ("compiler_era",)
CONTINUOUS_FEATURES: tuple[str, ...] = (
    "bytecode_length",
    *(f"opcode_share/{g}" for g in OPCODE_GROUPS),
    "post_shanghai_share",
    "source_lines",
    "tx_count",
    "tx_mean_log_value",
    "tx_mean_log_gas",
    "tx_failed_share",
)
FEATURES: tuple[str, ...] = (*CONTINUOUS_FEATURES, *CATEGORICAL_FEATURES)
_PRAGMA = re.compile(r"pragma\s+solidity\s+([^;]+);")
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.\d+)?")


# -- features ------------------------------------------------------------------------------------------------
def bytecode_features(bytecode: str | bytes) -> dict[str, float]:
    """Length in bytes (metadata stripped), opcode-group shares and post-Shanghai share of one contract."""
    code = strip_metadata(parse_hex(bytecode))
    ids = _TOKENIZER.encode(code)
    n = max(int(ids.size), 1)
    groups = np.bincount(_GROUP_INDEX[ids], minlength=len(OPCODE_GROUPS)) / n
    out = {"bytecode_length": float(len(code))}
    out |= {f"opcode_share/{g}": round(float(s), 6) for g, s in zip(OPCODE_GROUPS, groups, strict=True)}
    out["post_shanghai_share"] = round(float(np.isin(ids, _POST_SHANGHAI_IDS).sum()) / n, 6)
    return out


def compiler_era(compiler: str | None = None, source: str | None = None) -> str | None:
    """``0.8`` for compiler ``0.8.26`` / ``v0.8.26+commit...``, else the lowest version the source's first
    pragma names (``^0.7.0`` → ``0.7``); None when neither says."""
    for text in (compiler, *(m.group(1) for m in _PRAGMA.finditer(source or ""))):
        match = _VERSION.search(str(text or ""))
        if match:
            return f"{match.group(1)}.{match.group(2)}"
    return None


def source_features(source: str) -> dict[str, float]:
    return {"source_lines": float(source.count("\n") + 1)}


_COL = {name: i for i, name in enumerate(NUMERIC_FEATURES)}


def history_features(history: Mapping[str, Any]) -> dict[str, float]:
    """Length, mean log value, mean log gas and failed share of a transaction history (simulator layout)."""
    numeric, _, _ = featurize(history)
    if not len(numeric):
        return {"tx_count": 0.0}
    return {
        "tx_count": float(len(numeric)),
        "tx_mean_log_value": round(float(numeric[:, _COL["log_value"]].mean()), 6),
        "tx_mean_log_gas": round(float(numeric[:, _COL["log_gas_used"]].mean()), 6),
        "tx_failed_share": round(float(1.0 - numeric[:, _COL["success"]].mean()), 6),
    }


def record_features(record: Mapping[str, Any]) -> dict[str, Any]:
    """Features of a contract record (``bytecode``, ``source_code``, ``compiler_version``) or of a transaction
    history (``timestamp``, ``value``, ...); views a record lacks are left out."""
    out: dict[str, Any] = {}
    if "timestamp" in record and "method" in record:
        out |= history_features(record)
    if record.get("bytecode"):
        out |= bytecode_features(record["bytecode"])
    source = record.get("source_code")
    if source:
        out |= source_features(source)
    era = compiler_era(record.get("compiler_version") or record.get("compiler"), source)
    if era is not None:
        out["compiler_era"] = era
    return out


# -- histograms ----------------------------------------------------------------------------------------------
def bin_index(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Bin of each value: 0 for ``x <= edges[0]``, ..., ``len(edges)`` for ``x > edges[-1]``."""
    return np.searchsorted(np.asarray(edges, dtype=float), values, side="left")


def continuous_histogram(
    values: Iterable[float], bins: int = 10, sample_size: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Quantile cut points (duplicates merged), counts per bin, summary and a random sample of raw values."""
    v = np.asarray([float(x) for x in values if x is not None and np.isfinite(float(x))], dtype=float)
    if not v.size:
        return {"kind": "continuous", "binning": "quantile", "bins": bins, "n": 0, "edges": [], "counts": [0]}
    edges = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1])) if bins > 1 else np.array([])
    if not edges.size:
        edges = np.array([v[0]])
    counts = np.bincount(bin_index(v, edges), minlength=edges.size + 1)
    rng = np.random.default_rng(seed)
    sample = rng.choice(v, size=sample_size, replace=False) if v.size > sample_size else v
    return {
        "kind": "continuous",
        "binning": "quantile",
        "bins": bins,
        "n": int(v.size),
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "max": float(v.max()),
        "sample": [round(float(x), 6) for x in sample],
    }


def categorical_histogram(values: Iterable[Any]) -> dict[str, Any]:
    counts = Counter(str(x) for x in values if x is not None)
    return {"kind": "categorical", "n": int(sum(counts.values())), "counts": dict(sorted(counts.items()))}


def top_class(probs: Mapping[str, float]) -> str | None:
    """The predicted class of one prediction for the share statistics: its most probable class."""
    return max(probs, key=lambda c: float(probs[c])) if probs else None


# -- profiles ------------------------------------------------------------------------------------------------
def build_profile(
    features: Sequence[Mapping[str, Any]],
    predictions: Sequence[Mapping[str, Any]] = (),
    *,
    metrics: Mapping[str, Any] | None = None,
    risk_source: str | None = None,
    score_source: str = "probabilities",
    bins: int = 10,
    sample_size: int = 2000,
    seed: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The profile of ``features`` (one dict per reference record, train and validation) and ``predictions``
    (one ``{"probs": {class: p}, "risk": float}`` per validation record)."""
    names = [n for n in FEATURES if any(f.get(n) is not None for f in features)]
    feats = {}
    for name in names:
        values = [f.get(name) for f in features]
        feats[name] = (
            categorical_histogram(values)
            if name in CATEGORICAL_FEATURES
            else continuous_histogram(values, bins, sample_size, seed)
        )
    classes = list(dict.fromkeys(c for p in predictions for c in p.get("probs") or {}))
    scores = {
        c: continuous_histogram([(p.get("probs") or {}).get(c) for p in predictions], bins, sample_size, seed)
        for c in classes
    }
    flagged = [p.get("flagged") for p in predictions]
    if predictions and all(isinstance(f, list) for f in flagged):  # multi-label: at the tuned thresholds
        shares = {c: sum(c in f for f in flagged) / len(flagged) for c in classes}
        share_kind = "flagged"
    else:  # one class per prediction (histories), or no thresholds known
        tops = [top_class(p.get("probs") or {}) for p in predictions]
        shares = {c: sum(t == c for t in tops) / len(tops) for c in classes} if tops else {}
        share_kind = "top"
    risks = [p.get("risk") for p in predictions if p.get("risk") is not None]
    return {
        "version": PROFILE_VERSION,
        "n_reference": len(features),
        "n_predictions": len(predictions),
        "features": feats,
        "scores": scores,
        "score_source": score_source,
        "predicted_share": shares,
        "predicted_share_kind": share_kind,
        "predicted_class": (
            "the classes flagged at the model's tuned thresholds"
            if share_kind == "flagged"
            else "the most probable class of each prediction"
        ),
        "risk": continuous_histogram(risks, bins, sample_size, seed) if risks else None,
        "risk_source": risk_source,
        "metrics": dict(metrics or {}),
        **dict(extra or {}),
    }


# -- from a run: the datamodule of its resolved config and the model on the validation split -----------------
def datamodule_of(run_config: str | Path, module: Any = None, **overrides: Any) -> Any:
    """The datamodule of a run's ``config_resolved.yaml``, set up and featurizing as ``module`` was trained
    (its tokenizer or normalizer state)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(run_config)
    dm = instantiate(cfg.data, _convert_="all", **overrides)
    hparams = getattr(module, "hparams", {}) if module is not None else {}
    if "tokenizer_state" in hparams and hasattr(dm, "use_tokenizer_state"):
        dm.use_tokenizer_state(hparams["tokenizer_state"])
    if "normalizer_state" in hparams and hasattr(dm, "use_normalizer_state"):
        dm.use_normalizer_state(hparams["normalizer_state"])
    dm.prepare_data()
    dm.setup("test")
    return dm


def reference_records(dm: Any, splits: Sequence[str] = ("train", "val")) -> list[dict[str, Any]]:
    """The records of ``splits`` of a set-up datamodule (augmented training variants left out)."""
    if getattr(dm, "split_of", None):
        return [
            r
            for r, s in zip(dm.records, dm.split_of, strict=True)
            if s in splits and not r.get("augmented_from")
        ]
    out = []
    for split in splits:
        part = (getattr(dm, "splits", {}) or {}).get(split)
        out += [dm.records[int(i)] for i in getattr(part, "index", [])]
    return out


def predict_split(module: Any, dm: Any, split: str = "val") -> list[dict[str, Any]]:
    """``module.prediction_rows`` of one split, run on the CPU without loggers or checkpoints."""
    from lightning.pytorch import Trainer

    from training_pipeline.evaluation.predictions import concat_outputs

    loader = {"val": dm.val_dataloader, "train": dm.train_dataloader}.get(split, dm.test_dataloader)()
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    batches = trainer.predict(module, dataloaders=loader) or []
    return list(module.prediction_rows(concat_outputs(batches), dm)) if batches else []


def view_kind(module: Any) -> str:
    """How a base model's probabilities become a risk (``risk.view_risk``)."""
    from training_pipeline.models.behavior_model import BehaviorModel

    return "anomaly_classes" if isinstance(module, BehaviorModel) else "contract_classes"


def model_run_profile(
    run_config: str | Path, module: Any, metrics: Mapping[str, Any] | None = None, **settings: Any
) -> dict[str, Any]:
    """The profile of one trained base model: features of its run's train and validation records, and its own
    predictions on the validation split (risk: ``risk.view_risk`` of its probabilities with the default
    ``RiskTarget``, as ``scan`` computes a single model's risk)."""
    dm = datamodule_of(run_config, module, num_workers=0)
    feats = [record_features(r) for r in reference_records(dm)]
    kind = view_kind(module)
    target = RiskTarget()
    preds = [
        {"probs": row["probs"], "risk": view_risk(target, kind, row["probs"])}
        | ({"flagged": list(row["predicted"])} if isinstance(row.get("predicted"), list) else {})
        for row in predict_split(module, dm, "val")
        if row.get("probs")
    ]
    return build_profile(
        feats,
        preds,
        metrics=metrics,
        risk_source=f"risk.view_risk({kind}) of the model's validation probabilities (default RiskTarget)",
        score_source="probabilities" if kind == "contract_classes" else "view_probabilities/behavior",
        extra={"data_version": getattr(dm, "data_version", None), "kind": "model"},
        **settings,
    )


def pipeline_profile(
    aggregator: Any,
    aggregator_config: str | Path,
    view_configs: Mapping[str, str | Path],
    metrics: Mapping[str, Any] | None = None,
    view_modules: Mapping[str, Any] | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """The profile of a fused pipeline: features of every view's train and validation records (merged by
    contract id), and the aggregator's calibrated risk and class probabilities on the stacked validation rows
    (its stage's ``config_resolved.yaml``)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    by_id: dict[str, dict[str, Any]] = {}
    for config in view_configs.values():
        dm = instantiate(OmegaConf.load(config).data, _convert_="all", num_workers=0)
        if hasattr(dm, "load_records"):  # contracts: the records and their splits, nothing featurized
            records, names = dm.load_records()
            chosen = [r for r, s in zip(records, names, strict=True) if s in ("train", "val")]
        else:
            dm.prepare_data()
            dm.setup("test")
            chosen = reference_records(dm)
        for r in chosen:
            key = str(r.get("id") or r.get("contract_id"))
            by_id.setdefault(key, {}).update(record_features(r))
    stacked = datamodule_of(aggregator_config, None, num_workers=0)
    thresholds = dict(zip(aggregator.class_names, aggregator.thresholds.tolist(), strict=True))
    preds = [
        {
            "probs": row["probs"],
            "risk": row["risk"],
            "flagged": [c for c, p in row["probs"].items() if p >= thresholds.get(c, 0.5)],
        }
        for row in predict_split(aggregator, stacked, "val")
    ]
    return build_profile(
        list(by_id.values()),
        preds,
        metrics=metrics,
        risk_source="the aggregator's calibrated risk on the stacked validation rows (every view present)",
        score_source="probabilities",
        extra={
            "data_version": stacked.data_version,
            "kind": "pipeline",
            "views": list(aggregator.view_names),
            "view_scores": view_scores(
                view_modules or {}, view_configs, settings.get("bins", 10), settings.get("seed", 0)
            ),
        },
        **settings,
    )


def view_scores(
    modules: Mapping[str, Any], configs: Mapping[str, str | Path], bins: int = 10, seed: int = 0
) -> dict[str, Any]:
    """Per base view, per class: the histogram of the packaged (full) base model's probabilities on its
    validation split, as ``model_run_profile`` computes them. A scan service sees whichever views a request
    brings (bytecode alone, mostly), so the fused scores are only comparable on requests with every view;
    each base model's own scores always are. (The stacked rows would not do: they hold the cross-fitted
    models' scores, not the full model's the scanner runs.)"""
    out: dict[str, Any] = {}
    for view, module in modules.items():
        dm = datamodule_of(configs[view], module, num_workers=0)
        probs = [row["probs"] for row in predict_split(module, dm, "val") if row.get("probs")]
        classes = list(dict.fromkeys(c for p in probs for c in p))
        if classes:
            out[view] = {c: continuous_histogram([p.get(c) for p in probs], bins, seed=seed) for c in classes}
    return out


def profile_settings() -> dict[str, Any]:
    """``bins``, ``sample_size`` and ``seed`` of ``conf/monitoring/default.yaml``, and whether packaging
    writes a profile at all (``enabled``)."""
    from omegaconf import OmegaConf

    from training_pipeline.config import CONF_DIR

    cfg = OmegaConf.load(Path(CONF_DIR) / "monitoring" / "default.yaml")
    return {
        "bins": int(cfg.psi.bins),
        "sample_size": int(cfg.profile.sample_size),
        "seed": int(cfg.profile.seed),
        "enabled": bool(cfg.profile.enabled),
    }
