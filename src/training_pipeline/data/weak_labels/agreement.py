"""How far Slither's contract-level predictions agree with reference labels, per class, where assessed.

A reference record assesses a class when it is in ``labels`` (positive) or in ``negative_labels``
(negative); a record without ``negative_labels`` (the generator's labels) assesses every class. Contracts
Slither could not analyse are left out of the metrics and counted apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from training_pipeline.taxonomy import VULNERABILITY_CLASSES


@dataclass
class ClassAgreement:
    """Confusion counts of Slither against the reference for one class, and the derived scores."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @property
    def assessed(self) -> int:
        """Contracts where the reference assessed this class (and Slither gave an answer)."""
        return self.tp + self.fp + self.fn + self.tn

    @property
    def positives(self) -> int:
        """Reference positives."""
        return self.tp + self.fn

    @property
    def precision(self) -> float | None:
        """tp / predicted positives; None when Slither predicted none."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        """tp / reference positives; None when there are none."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        """Harmonic mean of precision and recall; None when either is undefined, 0 when both are 0."""
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Counts and scores as plain JSON."""
        return {
            **asdict(self),
            "assessed": self.assessed,
            "positives": self.positives,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


def assessed_classes(labels: Sequence[str], negative_labels: Sequence[str] | None) -> dict[str, bool]:
    """class → reference truth, for the classes a record assessed (all of them without negative_labels)."""
    if negative_labels is None:
        return {c: c in labels for c in VULNERABILITY_CLASSES}
    truth = {c: False for c in negative_labels if c in VULNERABILITY_CLASSES}
    truth.update({c: True for c in labels if c in VULNERABILITY_CLASSES})  # a positive wins a contradiction
    return truth


def agreement(
    pairs: Iterable[tuple[Mapping[str, Any], Sequence[str] | None]],
) -> tuple[dict[str, ClassAgreement], dict[str, int]]:
    """Per-class agreement over (reference record, Slither's predicted labels or None if not analysed).

    Returns the per-class counts and {contracts, analysed, not_analysed}.
    """
    per_class = {c: ClassAgreement() for c in VULNERABILITY_CLASSES}
    coverage = {"contracts": 0, "analysed": 0, "not_analysed": 0}
    for ref, predicted in pairs:
        coverage["contracts"] += 1
        if predicted is None:
            coverage["not_analysed"] += 1
            continue
        coverage["analysed"] += 1
        for cls, truth in assessed_classes(ref.get("labels") or [], ref.get("negative_labels")).items():
            hit = cls in predicted
            a = per_class[cls]
            if truth and hit:
                a.tp += 1
            elif truth:
                a.fn += 1
            elif hit:
                a.fp += 1
            else:
                a.tn += 1
    return per_class, coverage


def micro(per_class: Mapping[str, ClassAgreement]) -> ClassAgreement:
    """All classes pooled."""
    total = ClassAgreement()
    for a in per_class.values():
        total.tp += a.tp
        total.fp += a.fp
        total.fn += a.fn
        total.tn += a.tn
    return total


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def markdown_table(per_class: Mapping[str, ClassAgreement]) -> str:
    """A per-class markdown table (n assessed, positives, TP/FP/FN, precision, recall, F1), micro row last."""
    rows = [
        "| class | n assessed | positives | TP | FP | FN | precision | recall | F1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, a in [*per_class.items(), ("micro (all classes)", micro(per_class))]:
        rows.append(
            f"| {name} | {a.assessed} | {a.positives} | {a.tp} | {a.fp} | {a.fn} | "
            f"{_fmt(a.precision)} | {_fmt(a.recall)} | {_fmt(a.f1)} |"
        )
    return "\n".join(rows)


def write_report(section: str, result: Mapping[str, Any], report_dir: str | Path) -> tuple[Path, Path]:
    """Add (or replace) one source's section in ``agreement.json`` and rewrite ``agreement.md`` from all.

    ``result`` holds ``per_class`` (class → ClassAgreement), ``coverage`` and free-form ``meta`` (command,
    sample, seconds, thresholds).
    """
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = report_dir / "agreement.json", report_dir / "agreement.md"
    try:
        sections = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        sections = {}
    per_class = result["per_class"]
    sections[section] = {
        "meta": dict(result.get("meta") or {}),
        "coverage": dict(result["coverage"]),
        "per_class": {c: a.to_dict() for c, a in per_class.items()},
        "micro": micro(per_class).to_dict(),
    }
    json_path.write_text(json.dumps(sections, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    parts = ["# Slither weak labels: agreement with reference labels", ""]
    for name, sec in sorted(sections.items()):
        restored = {
            c: ClassAgreement(d["tp"], d["fp"], d["fn"], d["tn"]) for c, d in sec["per_class"].items()
        }
        meta, cov = sec["meta"], sec["coverage"]
        parts += [f"## {name}", ""]
        if meta.get("command"):
            parts += [f"`{meta['command']}`", ""]
        parts += [
            f"Contracts {cov['contracts']}, analysed by Slither {cov['analysed']}, not analysed "
            f"{cov['not_analysed']} (failed to compile, timed out or crashed: left out of the metrics). "
            + " ".join(f"{k}: {v}." for k, v in meta.items() if k != "command"),
            "",
            markdown_table(restored),
            "",
        ]
    md_path.write_text("\n".join(parts), encoding="utf-8")
    return md_path, json_path
