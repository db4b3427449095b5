"""The real-world benchmark: every model, the aggregator and Slither on the same real contracts, scanned as a
user would scan them, under each compile condition; one report (``report.md`` / ``report.json``), and every
row's per-contract probabilities and flags (``scores.jsonl``).

    python src/eval.py experiment=real_world            # the newest run of each model, the newest train-all
    python src/eval.py experiment=real_world real_world.models.bytecode_detector=<run>/checkpoints/best.ckpt
    make eval-real

Sets (``real_world.sets``): ``cgt_test`` (CGT's test groups under the data config's split, human labels,
unassessed classes masked), ``solidifi`` (all 350: for models trained without SolidiFI), ``real_code`` (npm
audited code: the false-alarm set). Conditions (``real_world.conditions``): the bytecode a contract was
compiled to, ``o0`` (optimizer off, ``bytecode``) or a ``bytecode_variants`` key such as ``o1-r200``; source
models see the source once (condition ``source``). Metrics and error analysis: ``evaluation/real_world.py``.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from training_pipeline.config import project_root
from training_pipeline.data.bytecode import ContractBytecodeDataModule
from training_pipeline.data.contracts import config_records, label_mask, source_loader
from training_pipeline.errors import ConfigError, DataError, UserError
from training_pipeline.evaluation.predictions import write_jsonl
from training_pipeline.evaluation.real_world import (
    CLASSES,
    BenchSet,
    Prediction,
    Scores,
    audited_metrics,
    by_era,
    contract_of,
    fmt,
    labelled_metrics,
    shared_traits,
    vulnerable_vs_audited_auroc,
    worst_errors,
)
from training_pipeline.pipeline.run_dirs import latest_pipeline, pipelines_root, read_manifest
from training_pipeline.risk import RiskTarget
from training_pipeline.scan.bytecode import has_callable_code
from training_pipeline.scan.inputs import ScanInput
from training_pipeline.scan.models import BaseView, load_base_model, run_config_of
from training_pipeline.scan.report import top_lines
from training_pipeline.scan.scanner import Scanner
from training_pipeline.utils.checks import config_dataclass
from training_pipeline.utils.run import write_json

log = logging.getLogger(__name__)

SETS: tuple[str, ...] = ("cgt_test", "solidifi", "real_code")
LATEST = "latest"
AUTO = "auto"
PIPELINE = "pipeline"
AGGREGATOR_STATIC = "aggregator + Slither"


@dataclass
class RealWorldConfig:
    """``real_world.*`` of ``conf/experiment/real_world.yaml``."""

    # option -> checkpoint | latest | pipeline (the full model of the train-all run below) | null
    models: dict[str, str | None] = field(default_factory=dict)
    pipeline: str | None = LATEST  # train-all run dir for the aggregator row | latest | null
    sets: Sequence[str] = SETS
    conditions: Sequence[str] = ("o0", "o1-r200")
    slither: bool = True
    # also an "aggregator + Slither" row per condition when the pipeline's aggregator learnt the static view
    # (Slither's findings from the weak-label cache, on what Slither analyses: set_analysis_inputs)
    static_analysis: bool = True
    error_analysis: int = 20  # worst false negatives / positives per row
    max_contracts: int | None = None  # per set, a seeded sample (quick runs); null = all
    seed: int = 0
    split_from: str | None = (
        AUTO  # a training run dir (or checkpoint) whose grouped split picks the held out;
    )
    # auto: the first model's run
    audited_split: str = AUTO  # all | test (only the audited set's held-out groups) | auto: test when the
    # split_from run had real_code among its sources (it trained or validated on some of it), else all

    def __post_init__(self) -> None:
        unknown = sorted(set(self.sets) - set(SETS))
        if unknown:
            raise ConfigError(f"real_world.sets: unknown set(s) {unknown}; expected some of {list(SETS)}")
        if self.audited_split not in ("all", "test", AUTO):
            raise ConfigError(f"real_world.audited_split={self.audited_split!r}: expected all, test or auto")
        if not self.conditions:
            raise ConfigError("real_world.conditions: name at least one compile condition, e.g. [o0]")


# -- which models --------------------------------------------------------------------------------------------
def latest_checkpoint(option: str, root: Path | None = None) -> Path | None:
    """The newest ``outputs/train/runs/*/checkpoints/best.ckpt`` whose run trained the ``option`` model."""
    runs = (root or project_root() / "outputs") / "train" / "runs"
    for ckpt in sorted(runs.glob("*/checkpoints/best.ckpt"), reverse=True):
        config = run_config_of(ckpt)
        if config is None:
            continue
        target = OmegaConf.select(OmegaConf.load(config), "model._target_") or ""
        if target.rsplit(".", 1)[-1].lower() == option.replace("_", ""):
            return ckpt
    return None


def pipeline_checkpoint(cfg: RealWorldConfig, option: str) -> Path:
    """The ``option`` model the aggregator's pipeline trained on its whole training split (its full stage)."""
    pipeline = resolve_pipeline(cfg)
    if pipeline is None:
        raise ConfigError(f"real_world.models.{option}=pipeline: no train-all run (real_world.pipeline)")
    info = read_manifest(pipeline)  # a missing, unfinished or unreadable run: one UserError naming it
    for base in info["artifacts"].get("base_models", {}).values():
        if base.get("model") == option and base.get("checkpoint"):
            return pipeline / base["checkpoint"]
    raise ConfigError(f"real_world.models.{option}=pipeline: {pipeline} trained no {option}")


def resolve_models(cfg: RealWorldConfig) -> dict[str, Path]:
    """Option -> checkpoint; ``latest`` without any run of that model is skipped with a warning, a named
    checkpoint that does not exist is an error; ``pipeline``: the full model of the aggregator's train-all
    run (so every row, and the held-out split, come from that one run)."""
    out: dict[str, Path] = {}
    for option, ckpt in cfg.models.items():
        if ckpt is None:
            continue
        if ckpt == PIPELINE:
            out[option] = pipeline_checkpoint(cfg, option)
        elif ckpt == LATEST:
            found = latest_checkpoint(option)
            if found is None:
                log.warning("No %s run under outputs/train/runs: its rows are left out", option)
                continue
            out[option] = found
        elif not Path(ckpt).is_file():
            raise DataError(f"{ckpt}: no such checkpoint (real_world.models.{option})")
        else:
            out[option] = Path(ckpt)
    return out


def resolve_pipeline(cfg: RealWorldConfig) -> Path | None:
    if cfg.pipeline is None:
        return None
    if cfg.pipeline == LATEST:
        try:
            return latest_pipeline(pipelines_root())[0]
        except UserError:
            log.warning(
                "No completed train-all run under %s: the aggregator row is left out", pipelines_root()
            )
            return None
    return Path(cfg.pipeline)


# -- which contracts -----------------------------------------------------------------------------------------
def _sample(records: list[dict[str, Any]], cfg: RealWorldConfig) -> list[dict[str, Any]]:
    if cfg.max_contracts is None or len(records) <= cfg.max_contracts:
        return records
    keep = set(random.Random(cfg.seed).sample(range(len(records)), cfg.max_contracts))
    return [r for i, r in enumerate(records) if i in keep]


def _assessed(record: Mapping[str, Any]) -> list[str]:
    return [c for c, m in zip(CLASSES, label_mask(record), strict=True) if m]


def split_records(cfg: RealWorldConfig, data: DictConfig) -> tuple[list[dict[str, Any]], list[str]]:
    """Records and split names the held-out sets come from: the grouped split of ``split_from``'s training
    run (its own data config, so exactly its test groups), else CGT alone under ``data``'s split."""
    if cfg.split_from:
        config = run_config_of(Path(cfg.split_from)) or Path(cfg.split_from) / "config_resolved.yaml"
        if not config.is_file():
            raise DataError(f"{cfg.split_from}: not a training run dir or checkpoint (real_world.split_from)")
        return config_records(OmegaConf.to_container(OmegaConf.load(config).data, resolve=True))
    block = OmegaConf.to_container(data, resolve=True)
    dm = ContractBytecodeDataModule(
        block["data_dir"], sources=["cgt"], cgt=block["cgt"], split=block.get("split"), fold=block["fold"]
    )
    return dm.load_records()


def load_sets(cfg: RealWorldConfig, data: DictConfig) -> tuple[list[BenchSet], dict[str, dict[str, Any]]]:
    """The benchmark sets and every contract's record (id -> record: source, bytecode, variants)."""
    data_dir = Path(data.data_dir)
    block = OmegaConf.to_container(data, resolve=True)
    held_out: dict[str, dict[str, Any]] = {}
    audited_held_out: list[dict[str, Any]] = []
    if "cgt_test" in cfg.sets or cfg.audited_split == "test":
        rows, names = split_records(cfg, data)
        held_out = {str(r["id"]): r for r, s in zip(rows, names, strict=True) if s == "test"}
        # "unused": the test fold where the run tested on other sources only (data.eval_sources)
        audited_held_out = [
            r
            for r, s in zip(rows, names, strict=True)
            if r.get("origin") == "real_code" and s in ("test", "unused")
        ]
    sets, records = [], {}
    for name in cfg.sets:
        if name == "cgt_test":
            rows = [r for r in held_out.values() if r.get("origin") == "cgt"]
            desc = "CGT test groups (real contracts, human labels, unassessed classes masked)"
        elif name == "solidifi":
            rows = source_loader("solidifi")(block["solidifi"], data_dir).records
            desc = "SolidiFI, all 350 (bug snippets injected into 50 real contracts)"
        else:
            desc = "npm audited code (no known vulnerability: the false-alarm set)"
            if cfg.audited_split == "test":  # the models trained on some of it: its held-out groups, as the
                rows = audited_held_out  # run loaded them (its packages and compile variants)
                desc += ", its test groups only"
            else:
                rows = source_loader("real_code")(real_code_block(data), data_dir).records
        rows = _sample([r for r in rows if r.get("bytecode")], cfg)
        audited = name == "real_code"
        contracts = [contract_of(r, [] if audited else _assessed(r), r.get("family") or name) for r in rows]
        sets.append(BenchSet(name, contracts, audited, desc))
        records.update({str(r["id"]): r for r in rows})
        log.info("Real-world set %s: %d contracts", name, len(contracts))
    return sets, records


def real_code_block(data: DictConfig) -> dict[str, Any]:
    """The data config's ``real_code`` block (the packaged package list when it names none), never
    installing: the benchmark reads what ``make data-real`` built."""
    from training_pipeline.data.importers.real_code import with_default_packages

    return {
        **with_default_packages(OmegaConf.to_container(data, resolve=True).get("real_code")),
        "install": False,
    }


def bytecode_of(record: Mapping[str, Any], condition: str) -> str | None:
    """The record's runtime bytecode under a compile condition (``o0``: ``bytecode``); None if it lacks it."""
    variants = record.get("bytecode_variants") or {}
    if condition in variants:
        return variants[condition]
    return record.get("bytecode") if condition == "o0" else None


# -- predictions ---------------------------------------------------------------------------------------------
def _inputs(records: Mapping[str, Mapping[str, Any]], condition: str, source: bool) -> list[ScanInput]:
    items = []
    for rid, r in records.items():
        code = bytecode_of(r, condition) if condition != "source" else None
        text = r.get("source_code") if source else None
        items.append(ScanInput(rid, source_code=text, bytecode=code, compiler=r.get("compiler_version")))
    return items


def _model_scores(view: BaseView, items: Sequence[ScanInput]) -> Scores:
    outs = view.predict(items)
    target = RiskTarget()
    scores: Scores = {}
    for item, out in zip(items, outs, strict=True):
        if out is None:
            continue
        probs = {c: float(out["probs"].get(c, 0.0)) for c in CLASSES}
        lines = top_lines(out.get("top_lines"), item.source_code or "", {"vulnerabilities": probs}, k=3)
        if item.bytecode and not has_callable_code(item.bytecode):  # as a scan reports it (scan.report)
            scores[item.name] = Prediction(probs, [], lines, 0.0)
            continue
        scores[item.name] = Prediction(probs, list(out["predicted"]), lines, target.vulnerability_risk(probs))
    return scores


def _aggregator_scores(scanner: Scanner, items: Sequence[ScanInput]) -> Scores:
    reports = scanner.scan(items)
    scores: Scores = {}
    for item, rep in zip(items, reports, strict=True):
        if rep.get("risk") is None:
            continue
        probs = {c: float(rep.get("vulnerabilities", {}).get(c, 0.0)) for c in CLASSES}
        flagged = [c for c in rep.get("flagged", []) if c in probs]  # at the aggregator's tuned thresholds
        lines = (rep.get("top_lines") or [])[:3]
        scores[item.name] = Prediction(probs, flagged, lines, float(rep["risk"]))
    return scores


SET_ORIGIN = {"cgt_test": "cgt", "solidifi": "solidifi", "real_code": "real_code"}


def set_analysis_inputs(
    sets: Sequence[BenchSet], records: Mapping[str, Mapping[str, Any]], data: DictConfig
) -> dict[str, Any]:
    """Contract id -> what Slither analyses for it (``analysis_inputs``: CGT's and SolidiFI's original text,
    an npm contract in its package tree), for every contract of ``sets``."""
    from training_pipeline.data.weak_labels.sources import analysis_inputs

    rows = [{**records[c.id], "origin": SET_ORIGIN[s.name]} for s in sets for c in s.contracts]
    return analysis_inputs(rows, OmegaConf.to_container(data, resolve=True))


def slither_scores(
    sets: Sequence[BenchSet], records: Mapping[str, Mapping[str, Any]], data: DictConfig
) -> tuple[Scores, list[str]]:
    """Slither's contract-level predictions from the weak-label cache (no analysis here): a failed analysis
    flags nothing (what its user gets); a contract never analysed is left out and counted."""
    from training_pipeline.data.weak_labels import DetectorMapping, FindingsCache, record_predictions
    from training_pipeline.data.weak_labels.runner import cache_key

    cache, mapping = FindingsCache(), DetectorMapping.from_config()
    inputs = set_analysis_inputs(sets, records, data)
    results = {rid: cache.get(cache_key(inp)) for rid, inp in inputs.items()}
    scores: Scores = {}
    for rid, res in results.items():
        if res is None:
            continue
        pred = record_predictions(res, mapping)
        flagged = list(pred.labels) if pred else []
        probs = {c: float(c in flagged) for c in CLASSES}
        scores[rid] = Prediction(probs, flagged)
    missing = len(results) - len(scores)
    if missing:
        log.warning(
            "Slither: %d of %d contracts never analysed (left out of its row); fill the cache with "
            "python scripts/weak_label.py --source cgt|solidifi|real_code",
            missing,
            len(results),
        )
    return scores, mapping.detected_classes


def static_scanner(
    scanner: Scanner,
    pipeline: Path,
    sets: Sequence[BenchSet],
    records: Mapping[str, Mapping[str, Any]],
    data: DictConfig,
) -> Scanner | None:
    """The pipeline's scanner with Slither's findings as its static-analysis view, read from the weak-label
    cache (what Slither analysed: ``set_analysis_inputs``; nothing is analysed here, a contract without a
    cached analysis has the view masked); None when the run's aggregator never learnt that view."""
    from training_pipeline.scan.models import load_static_view

    manifest = read_manifest(pipeline)
    if not (manifest.get("artifacts") or {}).get("static_analysis"):
        return None
    static = load_static_view(manifest, scanner.aggregator)
    static.inputs, static.fill = set_analysis_inputs(sets, records, data), False
    models = {**scanner.models, "static_analysis": True}
    return Scanner([*scanner.views, static], scanner.aggregator, scanner.origin, models, scanner.guard)


# -- the run -------------------------------------------------------------------------------------------------
@dataclass
class Row:
    """One predictor under one condition and its scores on every set."""

    name: str
    condition: str
    scores: Scores


def collect_rows(
    cfg: RealWorldConfig, sets: Sequence[BenchSet], records: Mapping[str, Mapping[str, Any]], data: DictConfig
) -> tuple[list[Row], dict[str, Any]]:
    """Every predictor's scores; ``info`` says which checkpoints and run dirs were used."""
    rows: list[Row] = []
    info: dict[str, Any] = {"models": {}, "pipeline": None, "slither_classes": []}
    for option, ckpt in resolve_models(cfg).items():
        view = load_base_model(ckpt)
        info["models"][option] = str(ckpt)
        source = view.spec.needs == "source_code"
        for condition in ["source"] if source else cfg.conditions:
            log.info("Scoring %s (%s)", option, condition)
            rows.append(Row(option, condition, _model_scores(view, _inputs(records, condition, source))))
    pipeline = resolve_pipeline(cfg)
    if pipeline is not None:
        scanners = {"aggregator": Scanner.from_pipeline(pipeline)}
        info["pipeline"] = str(pipeline)
        if cfg.static_analysis:
            with_static = static_scanner(scanners["aggregator"], pipeline, sets, records, data)
            if with_static is not None:
                scanners[AGGREGATOR_STATIC] = with_static
        for condition in cfg.conditions:
            for name, scanner in scanners.items():
                log.info("Scoring %s (%s)", name, condition)
                scores = _aggregator_scores(scanner, _inputs(records, condition, True))
                rows.append(Row(name, condition, scores))
    if cfg.slither:
        scores, covered = slither_scores(sets, records, data)
        info["slither_classes"] = covered
        if scores:
            rows.append(Row("slither", "source", scores))
        else:
            log.warning("Slither: no contract of these sets is in the weak-label cache; no Slither row")
    if not rows:
        raise UserError(
            "real-world benchmark: no model, train-all run or Slither to evaluate "
            "(train one first: make train; or set real_world.models.<model>=<checkpoint>)"
        )
    return rows, info


def measure(rows: Sequence[Row], sets: Sequence[BenchSet], k: int) -> list[dict[str, Any]]:
    """Metrics of every row on every set, vulnerable-vs-audited AUROC and the error analysis."""
    target = RiskTarget()
    audited = next((s for s in sets if s.audited), None)
    out = []
    for row in rows:
        entry: dict[str, Any] = {"model": row.name, "condition": row.condition, "sets": {}}
        for bset in sets:
            if bset.audited:
                entry["sets"][bset.name] = audited_metrics(bset, row.scores, target)
            else:
                m = labelled_metrics(bset, row.scores)
                if audited is not None:
                    m["auroc_vs_audited"] = vulnerable_vs_audited_auroc(bset, audited, row.scores)
                entry["sets"][bset.name] = m
            entry["sets"][bset.name]["by_era"] = by_era(bset, row.scores)
        errors = worst_errors(sets, row.scores, k)
        population = [c for s in sets for c in s.contracts if c.id in row.scores]
        entry["errors"] = {
            kind: {
                "shared": shared_traits(errs, population, row.condition),
                "worst": [e.to_dict() for e in errs],
            }
            for kind, errs in errors.items()
        }
        out.append(entry)
    return out


def markdown(results: Sequence[Mapping[str, Any]], sets: Sequence[BenchSet], info: Mapping[str, Any]) -> str:
    """The report: one headline table, per-class F1 on each labelled set, then the error analysis."""
    labelled = [s for s in sets if not s.audited]
    audited = [s for s in sets if s.audited]
    lines = [
        "# Real-world benchmark",
        "",
        "Real contracts only; contract-level; at each model's own thresholds.",
        "",
    ]
    for s in sets:
        lines.append(f"- **{s.name}**: {len(s.contracts)} contracts. {s.description}")
    lines += ["", f"Models: {json.dumps(info.get('models'))}; aggregator: {info.get('pipeline')}.", ""]
    head = ["model", "condition"]
    for s in labelled:
        head += [f"{s.name} recall", "precision", "F1", "wrong flags/contract"]
        if audited:
            head.append("AUROC vs audited")
    for s in audited:
        head += [f"{s.name} flagged", "mean risk"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r["model"], r["condition"]]
        for s in labelled:
            m = r["sets"][s.name]
            cells += [fmt(m["recall"]), fmt(m["precision"]), fmt(m["f1"]), fmt(m["wrong_flags_per_contract"])]
            if audited:
                cells.append(fmt(m.get("auroc_vs_audited")))
        for s in audited:
            m = r["sets"][s.name]
            flagged = m["flagged_share"]
            cells += [f"{flagged:.0%}" if flagged is not None else "—", fmt(m["mean_risk"])]
        lines.append("| " + " | ".join(cells) + " |")
    for s in audited:
        lines += by_family_table(results, s)
    lines += by_era_table(results, sets)
    covered = set(info.get("slither_classes") or [])
    for s in labelled:
        lines += ["", f"## Per class on {s.name}: F1 (recall)", ""]
        classes = [c for c in CLASSES if any(r["sets"][s.name]["per_class"][c]["positives"] for r in results)]
        lines += [
            "| model | condition | "
            + " | ".join(f"{c}{'*' if c in covered else ''}" for c in classes)
            + " |",
            "|" + "---|" * (len(classes) + 2),
        ]
        for r in results:
            pc = r["sets"][s.name]["per_class"]
            cells = [f"{fmt(pc[c]['f1'])} ({fmt(pc[c]['recall'])})" for c in classes]
            lines.append(f"| {r['model']} | {r['condition']} | " + " | ".join(cells) + " |")
        if covered:
            lines += ["", "\\* a class Slither has detectors for (conf/weak_labels/slither.yaml)."]
    lines += ["", "## Error analysis", ""]
    for r in results:
        for kind, e in r["errors"].items():
            title = kind.replace("_", " ")
            lines.append(f"### {r['model']} ({r['condition']}): worst {title}")
            lines.append("")
            lines.append("What they share: " + ("; ".join(e["shared"]) or "nothing stands out") + ".")
            lines.append("")
            for w in e["worst"]:
                top = " / ".join(f"L{t['line']}: `{t['text']}`" for t in w["top_lines"] if t.get("text"))
                lines.append(
                    f"- {w['set']} `{w['id']}` {w['class']} p={w['prob']:.3f} "
                    f"({w['era']}, {w['lines']} lines, {w['family']})" + (f" — {top}" if top else "")
                )
            lines.append("")
    return "\n".join(lines) + "\n"


def by_family_table(results: Sequence[Mapping[str, Any]], audited: BenchSet) -> list[str]:
    """Markdown lines: the share of the audited set flagged per family (package), one row per model; none
    when the set holds one family."""
    counts = Counter(c.family for c in audited.contracts)
    if len(counts) < 2:
        return []
    families = sorted(counts, key=lambda f: (-counts[f], f))
    lines = ["", f"## {audited.name} flagged, by family (contracts)", ""]
    lines += ["| model | condition | " + " | ".join(f"{f} ({counts[f]})" for f in families) + " |"]
    lines += ["|" + "---|" * (len(families) + 2)]
    for r in results:
        by = r["sets"][audited.name].get("by_family", {})
        cells = [f"{by[f]['flagged_share']:.0%}" if f in by else "—" for f in families]
        lines.append(f"| {r['model']} | {r['condition']} | " + " | ".join(cells) + " |")
    return lines


def by_era_table(results: Sequence[Mapping[str, Any]], sets: Sequence[BenchSet]) -> list[str]:
    """Markdown lines: per set and compiler era, each row's median highest class probability and share
    flagged; the eras with at least 5 contracts."""
    columns = [
        (s.name, era, n)
        for s in sets
        for era, n in sorted(Counter(c.era for c in s.contracts).items())
        if n >= 5
    ]
    if not results or not columns:
        return []
    lines = ["", "## By compiler era: median top probability (share flagged)", ""]
    lines += ["| model | condition | " + " | ".join(f"{name} {era} ({n})" for name, era, n in columns) + " |"]
    lines += ["|" + "---|" * (len(columns) + 2)]
    for r in results:
        cells = []
        for name, era, _ in columns:
            e = r["sets"][name].get("by_era", {}).get(era)
            cells.append(f"{e['median_top_prob']:.2f} ({e['flagged_share']:.0%})" if e else "—")
        lines.append(f"| {r['model']} | {r['condition']} | " + " | ".join(cells) + " |")
    return lines


def write_scores(path: Path, rows: Sequence[Row], sets: Sequence[BenchSet]) -> None:
    """``scores.jsonl``: one line per row and scored contract (set, era, family, truth, probabilities,
    flags), for analyses the report does not make. Written whole or not at all."""
    write_jsonl(
        path,
        (
            {
                "model": row.name,
                "condition": row.condition,
                "set": bset.name,
                "id": c.id,
                "era": c.era,
                "family": c.family,
                "labels": c.labels,
                "assessed": c.assessed,
                "probs": {k: round(v, 5) for k, v in row.scores[c.id].probs.items()},
                "flagged": list(row.scores[c.id].flagged),
            }
            for row in rows
            for bset in sets
            for c in bset.contracts
            if c.id in row.scores
        ),
    )


def resolve_auto(cfg: RealWorldConfig, models: Mapping[str, Path]) -> RealWorldConfig:
    """``split_from: auto`` → the first model's training run (none without a model); ``audited_split:
    auto`` → test when that run's sources include real_code, else all."""
    split_from = cfg.split_from
    if split_from == AUTO:
        split_from = str(next(iter(models.values()))) if models else None
    audited = cfg.audited_split
    if audited == AUTO:
        config = run_config_of(Path(split_from)) if split_from else None
        sources = OmegaConf.select(OmegaConf.load(config), "data.sources", default=None) if config else None
        audited = "test" if sources and "real_code" in sources else "all"
    log.info("Held-out split from %s; audited set: %s", split_from or "data.split (CGT alone)", audited)
    return replace(cfg, split_from=split_from, audited_split=audited)


def run_real_world(cfg: DictConfig) -> Path:
    """The benchmark of ``cfg.real_world`` over the sets built with ``cfg.data``; returns the report dir."""
    bench = config_dataclass(
        RealWorldConfig, OmegaConf.to_container(cfg.real_world, resolve=True), "real_world"
    )
    bench = resolve_auto(bench, resolve_models(bench))
    out_dir = Path(cfg.paths.output_dir)
    sets, records = load_sets(bench, cfg.data)
    rows, info = collect_rows(bench, sets, records, cfg.data)
    results = measure(rows, sets, bench.error_analysis)
    report = {
        "sets": {
            s.name: {"contracts": len(s.contracts), "audited": s.audited, "description": s.description}
            for s in sets
        },
        **info,
        "results": results,
    }
    write_json(out_dir / "report.json", report)
    write_scores(out_dir / "scores.jsonl", rows, sets)
    (out_dir / "report.md").write_text(markdown(results, sets, info))
    log.info("Real-world report: %s", out_dir / "report.md")
    return out_dir
