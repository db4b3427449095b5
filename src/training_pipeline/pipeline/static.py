"""The static-analysis view of the pipeline: Slither's cached findings for the corpus contracts.

The findings come from the weak-label cache (``data/weak_labels``); with ``static_analysis.fill`` the stage
first analyses the contracts the cache lacks (``runner.label_sources``: long-lived workers, a per-contract
timeout). A contract without a usable analysis (none cached, compile error, timeout) has the view masked.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from rich.console import Console

from training_pipeline.data.contracts import load_generated_corpus
from training_pipeline.data.weak_labels.cache import FindingsCache, cached_predictions
from training_pipeline.data.weak_labels.features import static_features
from training_pipeline.data.weak_labels.mapping import DetectorMapping
from training_pipeline.data.weak_labels.runner import label_sources, progress_printer
from training_pipeline.data.weak_labels.slither import SlitherNotInstalledError
from training_pipeline.errors import ConfigError

STATIC_KEYS = {"enabled", "fill", "workers", "timeout_s", "cache_dir"}


def corpus_sources(stage_config: Path, ids: Collection[str]) -> dict[str, str]:
    """id -> source code of the corpus contracts among ``ids`` (the corpus of a contract stage's config)."""
    cfg = OmegaConf.load(stage_config)
    if "corpus" not in cfg.data:
        raise ConfigError(f"static_analysis: {stage_config} reads no generated corpus (data.corpus)")
    corpus = OmegaConf.to_container(cfg.data.corpus, resolve=True)
    loaded = load_generated_corpus(corpus, Path(cfg.paths.data_dir))
    return {r["id"]: r["source_code"] for r in loaded.records if r["id"] in ids and r.get("source_code")}


def static_view(
    cfg: Mapping[str, Any], sources: Mapping[str, str], console: Console
) -> dict[str, dict[str, float] | None] | None:
    """Features per contract id (None: masked); None (the view left out) when nothing could be analysed."""
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
    ids, texts = list(sources), list(sources.values())
    if cfg.get("fill", True):
        try:
            _, summary = label_sources(
                texts,
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
    preds = cached_predictions(texts, cache, DetectorMapping.from_config())
    out = {rid: static_features(p) for rid, p in zip(ids, preds, strict=True)}
    covered = sum(f is not None for f in out.values())
    console.print(f"static analysis: Slither findings for {covered}/{len(out)} contracts (the rest masked)")
    if not covered:
        console.print(
            "static analysis: [yellow]no contract has a usable analysis[/yellow] (fill the cache: "
            "scripts/weak_label.py --source corpus, or static_analysis.fill=true); view left out"
        )
        return None
    return out
