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


def _load_sections(json_path: Path) -> dict[str, Any]:
    try:
        return json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _save(sections: Mapping[str, Any], report_dir: Path) -> tuple[Path, Path]:
    """Write ``agreement.json`` and rewrite ``agreement.md`` from every section (agreement or flag rates)."""
    json_path, md_path = report_dir / "agreement.json", report_dir / "agreement.md"
    json_path.write_text(json.dumps(sections, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    parts = ["# Slither weak labels: agreement with reference labels", ""]
    for name, sec in sorted(sections.items()):
        meta = sec["meta"]
        parts += [f"## {name}", ""]
        if meta.get("command"):
            parts += [f"`{meta['command']}`", ""]
        if sec.get("kind") == "flag_rates":
            rates = sec["flag_rates"]
            parts += [
                flag_rate_summary(rates)
                + " "
                + " ".join(f"{k}: {v}." for k, v in meta.items() if k != "command"),
                "",
                flag_rate_markdown(rates),
                "",
            ]
            continue
        restored = {
            c: ClassAgreement(d["tp"], d["fp"], d["fn"], d["tn"]) for c, d in sec["per_class"].items()
        }
        cov = sec["coverage"]
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


def write_report(section: str, result: Mapping[str, Any], report_dir: str | Path) -> tuple[Path, Path]:
    """Add (or replace) one source's section in ``agreement.json`` and rewrite ``agreement.md`` from all.

    ``result`` holds ``per_class`` (class → ClassAgreement), ``coverage`` and free-form ``meta`` (command,
    sample, seconds, thresholds).
    """
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    sections = _load_sections(report_dir / "agreement.json")
    per_class = result["per_class"]
    sections[section] = {
        "meta": dict(result.get("meta") or {}),
        "coverage": dict(result["coverage"]),
        "per_class": {c: a.to_dict() for c, a in per_class.items()},
        "micro": micro(per_class).to_dict(),
    }
    return _save(sections, report_dir)


# --- unlabeled code: how often Slither flags it ----------------------------------------------------------

SCOPES = {
    "entry": "findings in the contract's own file",
    "closure": "findings anywhere in its import closure",
}


def flag_rates(
    records: Sequence[Mapping[str, Any]],
    results: Sequence[Mapping[str, Any] | None],
    mapping: Any,
    impacts: Sequence[str] = ("Medium",),
) -> dict[str, Any]:
    """Contract-level flag rates of Slither on unlabeled (audited) code: per mapped class, the share of
    analysed contracts where it is present, and the share flagged at all; at the mapping's thresholds and at
    each of ``impacts`` as the lowest impact, for the entry file's findings and the whole import closure's.

    ``results`` are the cache records of ``records`` (same order); contracts whose analysis failed are counted
    apart with their reasons.
    """
    from collections import Counter

    from training_pipeline.data.weak_labels.mapping import DetectorMapping, record_predictions

    ok = [res for res in results if res and res.get("status") == "ok"]
    statuses = Counter((res or {}).get("status", "missing") for res in results)
    failures = [
        {
            "id": str(r.get("id")),
            "status": (res or {}).get("status", "missing"),
            "reason": (res or {}).get("reason", ""),
        }
        for r, res in zip(records, results, strict=True)
        if not res or res.get("status") != "ok"
    ]
    thresholds = [mapping.min_impact, *(i for i in impacts if i != mapping.min_impact)]
    views = []
    for impact in thresholds:
        m = DetectorMapping(mapping.classes, min_impact=impact, min_confidence=mapping.min_confidence)
        for scope in SCOPES:
            preds = [record_predictions(res, m, entry_only=scope == "entry") for res in ok]
            per_class = {c: sum(c in p.labels for p in preds if p) for c in VULNERABILITY_CLASSES}
            any_flag = sum(bool(p.labels) for p in preds if p)
            views.append(
                {
                    "min_impact": impact,
                    "min_confidence": mapping.min_confidence,
                    "scope": scope,
                    "per_class": {
                        c: {"flagged": n, "rate": n / len(ok) if ok else None} for c, n in per_class.items()
                    },
                    "any": {"flagged": any_flag, "rate": any_flag / len(ok) if ok else None},
                }
            )
    per_family: dict[str, list[int]] = {}
    for r, res in zip(records, results, strict=True):
        if res and res.get("status") == "ok":
            pred = record_predictions(res, mapping)
            fam = per_family.setdefault(str(r.get("family")), [0, 0])
            fam[0] += 1
            fam[1] += bool(pred and pred.labels)
    return {
        "contracts": len(records),
        "analysed": len(ok),
        "failed": len(records) - len(ok),
        "statuses": dict(sorted(statuses.items())),
        "failures": failures,
        "views": views,
        "per_family": {f: {"analysed": a, "flagged": b} for f, (a, b) in sorted(per_family.items())},
    }


def flag_rate_summary(rates: Mapping[str, Any]) -> str:
    """One line: contracts, analysed, failed and why."""
    why = ", ".join(f"{k} {v}" for k, v in rates["statuses"].items() if k != "ok")
    return (
        f"Unlabeled audited contracts {rates['contracts']}, analysed by Slither {rates['analysed']}, failed "
        f"{rates['failed']}{f' ({why})' if why else ''}: rates are shares of the analysed contracts where a "
        "mapped class is present (false alarms, if the audited code is clean). Entry: findings in the "
        "contract's own file; closure: anywhere in the files it imports too."
    )


def flag_rate_markdown(rates: Mapping[str, Any]) -> str:
    """Classes as rows, one column per (min impact, scope) view, the share flagged at all last."""
    views = rates["views"]
    head = [f"impact ≥ {v['min_impact']}, {v['scope']}" for v in views]
    rows = ["| class | " + " | ".join(head) + " |", "|---|" + "---:|" * len(views)]

    def cell(d: Mapping[str, Any]) -> str:
        return "–" if d["rate"] is None else f"{d['rate']:.3f} ({d['flagged']})"

    for c in VULNERABILITY_CLASSES:
        rows.append(f"| {c} | " + " | ".join(cell(v["per_class"][c]) for v in views) + " |")
    rows.append("| **any class** | " + " | ".join(cell(v["any"]) for v in views) + " |")
    fams = rates.get("per_family") or {}
    if fams:
        rows += ["", "| package | analysed | flagged (first view) |", "|---|---:|---:|"]
        rows += [f"| {f} | {d['analysed']} | {d['flagged']} |" for f, d in fams.items()]
    if rates.get("failures"):
        rows += [
            "",
            "Failed: "
            + "; ".join(f"{f['id']}: {f['status']}: {f['reason'][:200]}" for f in rates["failures"]),
        ]
    return "\n".join(rows)


def write_flag_rates(
    section: str, rates: Mapping[str, Any], meta: Mapping[str, Any], report_dir: str | Path
) -> tuple[Path, Path]:
    """Add (or replace) a flag-rate section (kind ``flag_rates``) and rewrite ``agreement.md``."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    sections = _load_sections(report_dir / "agreement.json")
    sections[section] = {"kind": "flag_rates", "meta": dict(meta), "flag_rates": dict(rates)}
    return _save(sections, report_dir)
