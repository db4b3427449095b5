"""Input features of one scanned contract, as the reference profiles hold them (``evaluation.profile``):
cheap (no model call), computed from a ``ScanInput`` or an interchange record. The scan service writes them
into each inference-log line (``record["features"]``); they are numbers and an era, never raw source."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from training_pipeline.data.tx_csv import import_history
from training_pipeline.evaluation.profile import (
    CATEGORICAL_FEATURES,
    CONTINUOUS_FEATURES,
    FEATURES,
    bytecode_features,
    compiler_era,
    history_features,
    record_features,
    source_features,
)
from training_pipeline.scan.inputs import ScanInput
from training_pipeline.utils.run import one_line

__all__ = ["CATEGORICAL_FEATURES", "CONTINUOUS_FEATURES", "FEATURES", "contract_features", "log_features"]
log = logging.getLogger(__name__)


def contract_features(item: ScanInput | Mapping[str, Any]) -> dict[str, Any]:
    """Features of a ``ScanInput`` (its bytecode, source, compiler and transaction CSV) or of a record dict
    (a contract record or a transaction history); a view the input lacks is left out."""
    if not isinstance(item, ScanInput):
        return record_features(item)
    out: dict[str, Any] = {}
    if item.bytecode:
        out |= bytecode_features(item.bytecode)
    if item.source_code:
        out |= source_features(item.source_code)
    era = compiler_era(item.compiler, item.source_code)
    if era is not None:
        out["compiler_era"] = era
    if item.tx_path and item.address:
        out |= history_features(import_history(item.tx_path, item.address))
    return out


def log_features(item: ScanInput) -> dict[str, Any]:
    """``contract_features`` for the inference log: never raises (a failure is ``{"error": ...}`` and one
    warning), so a feature problem never fails a scan request."""
    try:
        return contract_features(item)
    except Exception as exc:  # noqa: BLE001 - monitoring must not break serving
        log.warning("features of %s: %s", item.name, one_line(exc))
        return {"error": one_line(exc)}
