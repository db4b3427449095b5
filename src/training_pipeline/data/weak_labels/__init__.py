"""Slither weak labels: raw detector findings per source, cached (by sha256; a file with imports by its
input-set hash), mapped to the taxonomy.

``runner.label_sources`` analyses sources into a ``cache.FindingsCache``; ``mapping.contract_predictions``
turns a contract's findings into per-class predictions; ``agreement`` scores them against reference labels.
Slither itself (the ``analysis`` extra) is imported only inside ``slither.analyse_source``.
"""

from __future__ import annotations

from training_pipeline.data.weak_labels.cache import DEFAULT_CACHE_DIR, FindingsCache, cached_predictions
from training_pipeline.data.weak_labels.mapping import (
    ContractPrediction,
    DetectorMapping,
    contract_predictions,
    load_config,
    record_predictions,
)
from training_pipeline.data.weak_labels.slither import (
    TreeSource,
    analyse_source,
    plan_compile,
    source_sha256,
    tree_source,
)

__all__ = [
    "DEFAULT_CACHE_DIR",
    "ContractPrediction",
    "DetectorMapping",
    "FindingsCache",
    "TreeSource",
    "analyse_source",
    "cached_predictions",
    "contract_predictions",
    "load_config",
    "plan_compile",
    "record_predictions",
    "source_sha256",
    "tree_source",
]
