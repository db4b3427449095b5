"""The risk report of one scanned input: per view what its model said (Slither: its findings), the fused risk
(or, where the run's guard chose it, the best single view's), and the source lines that explain it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from training_pipeline import __version__
from training_pipeline.data.stacked import single_view_risk
from training_pipeline.data.weak_labels.features import STATIC_KIND, static_class_probs
from training_pipeline.models.aggregator import Aggregator
from training_pipeline.risk import RiskTarget, risk_level
from training_pipeline.scan.bytecode import NO_CALLABLE_CODE, has_callable_code
from training_pipeline.scan.fusion import aggregator_input, fuse, single_model_risk
from training_pipeline.scan.inputs import ScanInput
from training_pipeline.scan.models import BaseView, StaticView

SCHEMA_VERSION = "1.1"
"""Of the JSON report (``report_payload``): the minor part grows with added keys, the major one with changed
or removed ones."""
TOOL_NAME = "scathat"


def report_payload(models: Mapping[str, Any], reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The JSON report of a scan: schema version, tool, the models used (package id and version) and one
    report per input."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": TOOL_NAME, "version": __version__},
        "models": dict(models),
        "reports": list(reports),
    }


def view_report(
    view: BaseView | StaticView, out: dict[str, Any] | None, target: RiskTarget
) -> dict[str, Any]:
    """What one base model (or Slither) said about an input (``out`` None: the input lacks the view it
    reads): its own risk, predicted classes and probabilities; with fold models (``crossfit_mean``) also
    ``aggregator_probs``, the mean the aggregator read instead (schema 1.1)."""
    if out is None:
        return {"present": False, "model": view.model_name, "reason": f"no {view.what} given"}
    probs = static_class_probs(out["probs"]) if view.kind == STATIC_KIND else out["probs"]
    report = {
        "present": True,
        "model": view.model_name,
        "risk": round(single_view_risk(target, view.kind, out["probs"]), 4),
        "predicted": out["predicted"],
        "probs": _rounded(probs),
    }
    if out.get("aggregator_probs"):
        report["aggregator_probs"] = _rounded(out["aggregator_probs"])
    if view.kind == "anomaly_classes":
        report["flagged_tx"] = out["flagged_tx"]
        report["transactions"] = out["transactions"]
    if view.kind == STATIC_KIND:
        report["findings"] = out["findings"]
    return report


def _rounded(probs: Mapping[str, float]) -> dict[str, float]:
    """Probabilities to four digits, likeliest first."""
    return {c: round(p, 4) for c, p in sorted(probs.items(), key=lambda kv: -kv[1])}


def build_report(
    item: ScanInput,
    views: Sequence[BaseView | StaticView],
    outs: Mapping[str, dict[str, Any] | None],
    aggregator: Aggregator | None,
    target: RiskTarget,
    levels: Mapping[str, float],
    guard: str | None = None,
) -> dict[str, Any]:
    """One input's report: views, risk and level, vulnerabilities, contributions and top source lines;
    ``guard``: the view whose own risk replaces the aggregator's where the input has it."""
    views_report = {v.view: view_report(v, outs[v.view], target) for v in views}
    present = [v for v in views if outs[v.view] is not None]
    report: dict[str, Any] = {"input": item.name, "views": views_report}
    if item.compiler:
        report["compiler"] = item.compiler
    if item.notes:
        report["notes"] = item.notes
    if not present:
        report.update(
            {"risk": None, "risk_level": None, "error": "no view of this input is read by the models"}
        )
        return report
    if aggregator is not None:
        report.update(fuse(aggregator, outs))
        guarded = next((v for v in present if v.view == guard), None)
        if guarded is not None:  # the risk of what the guard was validated on: the aggregator's input
            risk = round(single_view_risk(target, guarded.kind, aggregator_input(outs[guard])), 4)
            report["guard"] = {"view": guard, "aggregator_risk": report["risk"]}
            report.update({"risk": risk, "risk_level": risk_level(risk, levels), "calibrated": False})
        thresholds = dict(zip(aggregator.class_names, aggregator.thresholds.tolist(), strict=True))
        flagged = [c for c, p in report["vulnerabilities"].items() if p >= thresholds.get(c, 0.5)]
    else:
        v = present[0]
        report.update(single_model_risk(v.view, v.kind, views_report[v.view], levels))
        predicted = views_report[v.view]["predicted"] if "vulnerabilities" in report else []
        flagged = [c for c in report.get("vulnerabilities", {}) if c in predicted]
    if item.bytecode and report.get("risk") is not None and not has_callable_code(item.bytecode):
        flagged = []  # whatever the models make of a stub, nothing in it can be exploited
        report.update({"risk": 0.0, "risk_level": risk_level(0.0, levels)})
        report["notes"] = [*report.get("notes", []), NO_CALLABLE_CODE]
    report["flagged"] = flagged  # the classes at or above their tuned thresholds, likeliest first
    source_view = next(
        (v for v in present if isinstance(v, BaseView) and v.spec.needs == "source_code"), None
    )  # the code analyzer (Slither reads the source too, but ranks no lines)
    if source_view is not None and item.source_code:
        report["top_lines"] = top_lines(outs[source_view.view]["top_lines"], item.source_code, report)
    return report


def top_lines(
    ranked: dict[str, list] | None, source: str, report: Mapping[str, Any], k: int = 5
) -> list[dict[str, Any]]:
    """The code analyzer's best-ranked lines for the likeliest classes, with their text."""
    if not ranked:
        return []
    lines = source.splitlines()
    probs = report.get("vulnerabilities") or {}
    order = sorted(ranked, key=lambda c: -probs.get(c, 0.0))
    out, seen = [], set()
    for cls in order:
        for line, score in ranked[cls]:
            line = int(line)
            if (cls, line) in seen or not 1 <= line <= len(lines):
                continue
            seen.add((cls, line))
            out.append(
                {"class": cls, "line": line, "score": round(float(score), 4), "text": lines[line - 1].strip()}
            )
            if len(out) >= k:
                return out
    return out
