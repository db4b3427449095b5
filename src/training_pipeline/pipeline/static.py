"""The static-analysis view of the pipeline: Slither's cached findings for the contracts of the stages (the
generated corpus; with real data also CGT in its original text and npm audited code in its package tree).

The findings come from the weak-label cache (``data/weak_labels``); with ``static_analysis.fill`` the stage
first analyses the contracts the cache lacks (``runner.label_sources``: long-lived workers, a per-contract
timeout). A contract without a usable analysis (none cached, compile error, timeout) has the view masked.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from rich.console import Console

from training_pipeline.data.contracts import config_records
from training_pipeline.data.weak_labels.cache import FindingsCache
from training_pipeline.data.weak_labels.features import mapped_detectors, static_features
from training_pipeline.data.weak_labels.mapping import DetectorMapping, record_predictions
from training_pipeline.data.weak_labels.runner import cache_key, label_sources, progress_printer
from training_pipeline.data.weak_labels.slither import SlitherNotInstalledError
from training_pipeline.data.weak_labels.sources import analysis_inputs
from training_pipeline.errors import ConfigError

STATIC_KEYS = {"enabled", "fill", "workers", "timeout_s", "cache_dir", "detectors"}


def stage_analysis_inputs(stage_configs: Sequence[Path], ids: Collection[str]) -> dict[str, Any]:
    """id -> what Slither analyses (``analysis_inputs``: a text or an npm contract's package tree) for the
    contracts among ``ids`` of the contract stages whose resolved configs are given: the generated corpus
    and, with ``real_data``, CGT (its original text) and the npm audited code."""
    out: dict[str, Any] = {}
    for config in stage_configs:
        block = OmegaConf.to_container(OmegaConf.load(config).data, resolve=True)
        records, _ = config_records(block)
        todo = [r for r in records if str(r["id"]) in ids and str(r["id"]) not in out]
        out.update(analysis_inputs(todo, block))
    if not out:
        raise ConfigError(f"static_analysis: the stages {[str(c) for c in stage_configs]} hold no contract")
    return out


def static_view(
    cfg: Mapping[str, Any], sources: Mapping[str, Any], console: Console
) -> dict[str, dict[str, float] | None] | None:
    """Features per contract id (None: masked); None (the view left out) when nothing could be analysed.
    ``cfg.detectors``: one feature per detector too (``features.static_features``)."""
    unknown = set(cfg) - STATIC_KEYS
    if unknown:
        raise ConfigError(
            f"pipeline static_analysis: unknown key(s) {sorted(unknown)}; known {sorted(STATIC_KEYS)}"
        )
    try:
        cache = FindingsCache(cfg.get("cache_dir"))
    except SlitherNotInstalledError as exc:
        console.print(f"static analysis: [yellow]skipped[/yellow], {exc}")
        return None
    ids, inputs = list(sources), list(sources.values())
    if cfg.get("fill", True):
        try:
            _, summary = label_sources(
                inputs,
                cache,
                workers=int(cfg.get("workers", 2)),
                timeout_s=float(cfg.get("timeout_s", 60)),
                progress=progress_printer(every_s=30),
            )
            console.print(f"static analysis: {summary.line()}")
        except RuntimeError as exc:  # the workers could not start (e.g. no node for the solc bridge)
            console.print(
                f"static analysis: [yellow]could not run Slither[/yellow] ({exc}); the cache as it is"
            )
    mapping = DetectorMapping.from_config()
    detectors = mapped_detectors(mapping) if cfg.get("detectors", False) else []
    preds = [record_predictions(cache.get(cache_key(i)), mapping) for i in inputs]
    out = {rid: static_features(p, detectors) for rid, p in zip(ids, preds, strict=True)}
    covered = sum(f is not None for f in out.values())
    console.print(f"static analysis: Slither findings for {covered}/{len(out)} contracts (the rest masked)")
    if not covered:
        console.print(
            "static analysis: [yellow]no contract has a usable analysis[/yellow] (fill the cache: "
            "scripts/weak_label.py --source corpus, or static_analysis.fill=true); view left out"
        )
        return None
    return out
