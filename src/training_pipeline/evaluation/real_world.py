"""The real-world benchmark's measurements: contract-level metrics of any predictor (a model, the aggregator,
Slither) on real contracts, the false-alarm rate on audited code, and an error analysis.

Everything here works on plain predictions (``Scores``: per contract id its class probabilities and the
classes it flags), so a model, the fused scanner and Slither's cached findings are scored by one code path on
exactly the same contracts. ``scan/benchmark.py`` produces the predictions and writes the report.

Definitions (contract level; a class counts only where the contract's label for it is assessed):
- recall / precision / F1 per class and micro over (contract, class) pairs; macro F1 over classes with a
  positive in the set;
- wrong flags per contract: flagged classes assessed absent, averaged over the set's contracts; flags on
  unassessed classes are counted apart (``unassessed_flags``): they may be right;
- on the audited set (no known vulnerability): the share of contracts with any flag, their mean risk, the
  flag rate per class;
- AUROC vulnerable vs audited: a contract's highest class probability, the set's contracts with a known
  vulnerability against the audited contracts;
- per-class AUROC where the class has assessed positives and negatives.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.classification import binary_auroc

from training_pipeline import taxonomy
from training_pipeline.risk import RiskTarget

CLASSES: tuple[str, ...] = tuple(taxonomy.VULNERABILITY_CLASSES)


@dataclass
class Contract:
    """One contract of a benchmark set: its truth (labels, assessed classes) and what the error analysis
    summarizes (era, size, family)."""

    id: str
    labels: list[str]
    assessed: list[str]
    source_code: str | None = None
    era: str = "unknown"
    lines: int = 0
    family: str = "unknown"

    @property
    def vulnerable(self) -> bool:
        return bool(self.labels)


@dataclass
class BenchSet:
    """Contracts evaluated together; ``audited`` marks the false-alarm set (no label is known)."""

    name: str
    contracts: list[Contract]
    audited: bool = False
    description: str = ""


@dataclass
class Prediction:
    """One predictor's output on one contract."""

    probs: dict[str, float]
    flagged: list[str]
    top_lines: list[dict[str, Any]] = field(default_factory=list)
    risk: float | None = None


Scores = dict[str, Prediction]
"""Contract id → prediction; a contract missing here had no input for the predictor (e.g. no bytecode)."""


def era_of(compiler_version: str | None) -> str:
    """``0.4`` for ``0.4.26`` / ``v0.4.26+commit...``; ``unknown`` without a version."""
    if not compiler_version:
        return "unknown"
    parts = str(compiler_version).lstrip("v").split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else "unknown"


def contract_of(record: Mapping[str, Any], assessed: Sequence[str], family: str | None = None) -> Contract:
    """A benchmark contract from an interchange record and its assessed classes."""
    source = record.get("source_code")
    return Contract(
        id=str(record["id"]),
        labels=[c for c in record.get("labels") or [] if c in CLASSES],
        assessed=list(assessed),
        source_code=source,
        era=era_of(record.get("compiler_version")),
        lines=source.count("\n") + 1 if source else 0,
        family=str(family or record.get("family") or record.get("origin") or "unknown"),
    )


def _ratio(num: float, den: float) -> float | None:
    return float(num) / den if den else None


def _f1(tp: int, fp: int, fn: int) -> float | None:
    """2tp / (2tp + fp + fn); 0 when there are positives and none is found, None with no positive at all."""
    return 2 * tp / (2 * tp + fp + fn) if tp + fn else None


def _auroc(y: Sequence[int], s: Sequence[float]) -> float | None:
    if not 0 < sum(y) < len(y):
        return None
    return float(binary_auroc(torch.tensor(s, dtype=torch.float64), torch.tensor(y)))


def risk_of(pred: Prediction, target: RiskTarget) -> float:
    """The prediction's own risk where it has one (the aggregator), else the severity-weighted noisy-or."""
    return pred.risk if pred.risk is not None else target.vulnerability_risk(pred.probs)


def labelled_metrics(bset: BenchSet, scores: Scores) -> dict[str, Any]:
    """Per-class and overall contract-level metrics on a labelled set (see the module docstring)."""
    scored = [c for c in bset.contracts if c.id in scores]
    per_class: dict[str, dict[str, Any]] = {}
    tp_all = fp_all = fn_all = 0
    for cls in CLASSES:
        rows = [c for c in scored if cls in c.assessed]
        y = [int(cls in c.labels) for c in rows]
        s = [scores[c.id].probs.get(cls, 0.0) for c in rows]
        hit = [cls in scores[c.id].flagged for c in rows]
        tp = sum(1 for t, h in zip(y, hit, strict=True) if t and h)
        fp = sum(1 for t, h in zip(y, hit, strict=True) if not t and h)
        fn = sum(1 for t, h in zip(y, hit, strict=True) if t and not h)
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        per_class[cls] = {
            "assessed": len(rows),
            "positives": sum(y),
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "precision": precision,
            "recall": recall,
            "f1": _f1(tp, fp, fn),
            "auroc": _auroc(y, s),
        }
    precision, recall = _ratio(tp_all, tp_all + fp_all), _ratio(tp_all, tp_all + fn_all)
    f1s = [m["f1"] for m in per_class.values() if m["positives"] and m["f1"] is not None]
    wrong = [sum(1 for f in scores[c.id].flagged if f in c.assessed and f not in c.labels) for c in scored]
    other = [sum(1 for f in scores[c.id].flagged if f not in c.assessed) for c in scored]
    return {
        "contracts": len(bset.contracts),
        "scored": len(scored),
        "vulnerable": sum(c.vulnerable for c in scored),
        "precision": precision,
        "recall": recall,
        "f1": _f1(tp_all, fp_all, fn_all),
        "f1_macro": float(np.mean(f1s)) if f1s else None,
        "wrong_flags_per_contract": float(np.mean(wrong)) if wrong else None,
        "unassessed_flags_per_contract": float(np.mean(other)) if other else None,
        "per_class": per_class,
    }


def audited_metrics(bset: BenchSet, scores: Scores, target: RiskTarget) -> dict[str, Any]:
    """False alarms on the audited set: share flagged, mean risk, per-class flag rates, and the share flagged
    per family (npm package): one code style can hide another's false alarms in the overall share."""
    scored = [c for c in bset.contracts if c.id in scores]
    flagged = [bool(scores[c.id].flagged) for c in scored]
    risks = [risk_of(scores[c.id], target) for c in scored]
    families: dict[str, list[bool]] = {}
    for c, f in zip(scored, flagged, strict=True):
        families.setdefault(c.family, []).append(f)
    return {
        "contracts": len(bset.contracts),
        "scored": len(scored),
        "flagged_share": float(np.mean(flagged)) if scored else None,
        "by_family": {
            fam: {"contracts": len(fs), "flagged_share": float(np.mean(fs))}
            for fam, fs in sorted(families.items())
        },
        "mean_risk": float(np.mean(risks)) if risks else None,
        "flag_rate": {
            cls: float(np.mean([cls in scores[c.id].flagged for c in scored])) if scored else None
            for cls in CLASSES
        },
    }


def by_era(bset: BenchSet, scores: Scores) -> dict[str, dict[str, Any]]:
    """Per compiler era of a set's scored contracts: how many, the share flagged and the median highest class
    probability. A model that reads a contract's age instead of its flaws shows here first: the same
    probability level for a set's flawed and its sound contracts of one era, and far apart across eras."""
    eras: dict[str, list[Prediction]] = {}
    for c in bset.contracts:
        if c.id in scores:
            eras.setdefault(c.era, []).append(scores[c.id])
    return {
        era: {
            "contracts": len(preds),
            "flagged_share": float(np.mean([bool(p.flagged) for p in preds])),
            "median_top_prob": float(np.median([max(p.probs.values()) for p in preds])),
        }
        for era, preds in sorted(eras.items())
    }


def vulnerable_vs_audited_auroc(labelled: BenchSet, audited: BenchSet, scores: Scores) -> float | None:
    """AUROC of the highest class probability: known-vulnerable contracts against audited ones."""
    pos = [max(scores[c.id].probs.values()) for c in labelled.contracts if c.vulnerable and c.id in scores]
    neg = [max(scores[c.id].probs.values()) for c in audited.contracts if c.id in scores]
    return _auroc([1] * len(pos) + [0] * len(neg), pos + neg)


# -- error analysis ----------------------------------------------------------------------------------------
@dataclass
class Error:
    """One false negative (a true class scored low) or false positive (a flag on an assessed negative class
    or on audited code)."""

    set: str
    id: str
    cls: str
    prob: float
    contract: Contract
    top_lines: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        c = self.contract
        return {
            "set": self.set,
            "id": self.id,
            "class": self.cls,
            "prob": round(self.prob, 4),
            "era": c.era,
            "lines": c.lines,
            "family": c.family,
            "top_lines": self.top_lines[:3],
        }


def worst_errors(sets: Sequence[BenchSet], scores: Scores, k: int = 20) -> dict[str, list[Error]]:
    """The ``k`` most confident false negatives (lowest probability of a true class) and false positives
    (highest probability of a flagged class that is assessed absent, or any flag on audited code)."""
    fns: list[Error] = []
    fps: list[Error] = []
    for bset in sets:
        for c in bset.contracts:
            pred = scores.get(c.id)
            if pred is None:
                continue
            for cls in c.labels:
                if cls not in pred.flagged:
                    fns.append(Error(bset.name, c.id, cls, pred.probs.get(cls, 0.0), c, pred.top_lines))
            for cls in pred.flagged:
                if bset.audited or (cls in c.assessed and cls not in c.labels):
                    fps.append(Error(bset.name, c.id, cls, pred.probs.get(cls, 0.0), c, pred.top_lines))
    fns.sort(key=lambda e: (e.prob, e.id))
    fps.sort(key=lambda e: (-e.prob, e.id))
    return {"false_negatives": fns[:k], "false_positives": fps[:k]}


def _size(lines: int) -> str:
    return "<150 lines" if lines < 150 else "150-500 lines" if lines < 500 else ">=500 lines"


def shared_traits(errors: Sequence[Error], population: Sequence[Contract], condition: str) -> list[str]:
    """What the errors share, against the population they were drawn from: each attribute value that at
    least half the errors have and that is over-represented relative to the population (at most four)."""
    if not errors:
        return []
    out: list[tuple[float, str]] = []
    attrs = {
        "era": lambda c: c.era,
        "size": lambda c: _size(c.lines),
        "family": lambda c: c.family,
    }
    for name, get in attrs.items():
        counts = Counter(get(e.contract) for e in errors)
        base = Counter(get(c) for c in population)
        for value, n in counts.most_common(2):
            share, base_share = n / len(errors), base[value] / max(len(population), 1)
            if share >= 0.5 and share > base_share + 0.1:
                out.append(
                    (share - base_share, f"{name} {value}: {share:.0%} of them ({base_share:.0%} overall)")
                )
    classes = Counter(e.cls for e in errors)
    cls, n = classes.most_common(1)[0]
    if n / len(errors) >= 0.4:
        out.append((n / len(errors), f"class {cls}: {n / len(errors):.0%} of them"))
    traits = [t for _, t in sorted(out, reverse=True)[:4]]
    return [*traits, f"compile condition: {condition}"]


# -- report helpers ----------------------------------------------------------------------------------------
def fmt(x: float | None, digits: int = 2) -> str:
    """A table cell: ``—`` for a value that does not exist (no positives, nothing scored)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.{digits}f}"
