"""Slither's findings as the aggregator's static-analysis view: per taxonomy class, whether a mapped finding
fired (0/1), how many (log1p of the count) and the highest impact among them (rank scaled to 0..1); with
``detectors``, also one 0/1 feature per detector mapped to a class (``detector:<check>``). A class's detectors
differ widely in precision (on all of CGT, ``tx-origin`` is right about access control 10 times in 13,
``arbitrary-send-eth`` 6 in 114), which the per-class summary cannot show.

A contract without a usable cached analysis has no features (None): the view is masked, never "clean".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from training_pipeline.data.weak_labels.mapping import IMPACTS, ContractPrediction, DetectorMapping
from training_pipeline.taxonomy import VULNERABILITY_CLASSES

STATIC_VIEW = "static"  # the view's name in the stacked data and the aggregator
STATIC_KIND = "static_findings"  # its adapter kind (beside contract_classes and anomaly_classes)
STATIC_MODEL = "slither"
PARTS = ("present", "count", "impact")
DETECTOR_PREFIX = "detector:"


def mapped_detectors(mapping: DetectorMapping) -> list[str]:
    """The detectors mapped to a taxonomy class, sorted: the per-detector features, one each."""
    return sorted(check for check, cls in mapping.classes.items() if cls is not None)


def learnt_detectors(feature_names: Sequence[str]) -> list[str]:
    """The detectors among a static view's feature names (``static_feature_names``), in their order."""
    return [n[len(DETECTOR_PREFIX) :] for n in feature_names if n.startswith(DETECTOR_PREFIX)]


def static_feature_names(detectors: Sequence[str] = ()) -> list[str]:
    """``<class>:present``, ``<class>:count``, ``<class>:impact`` for every taxonomy class, in that order,
    then ``detector:<check>`` for each of ``detectors``."""
    names = [f"{c}:{part}" for c in VULNERABILITY_CLASSES for part in PARTS]
    return names + [DETECTOR_PREFIX + d for d in detectors]


def static_features(
    pred: ContractPrediction | None, detectors: Sequence[str] = ()
) -> dict[str, float] | None:
    """The view's features of one contract's Slither prediction (``static_feature_names(detectors)``, in that
    order); None (masked) without one."""
    if pred is None:
        return None
    top = len(IMPACTS) - 1
    out: dict[str, float] = {}
    for c in VULNERABILITY_CLASSES:
        p = pred.classes[c]
        out[f"{c}:present"] = float(p.present)
        out[f"{c}:count"] = math.log1p(p.count)
        out[f"{c}:impact"] = IMPACTS.index(p.max_impact) / top if p.max_impact else 0.0
    fired = {check for p in pred.classes.values() for check in p.checks}
    out.update({DETECTOR_PREFIX + d: float(d in fired) for d in detectors})
    return out


def static_class_probs(features: Mapping[str, float]) -> dict[str, float]:
    """Slither as a classifier: 1 for each class it flags, 0 otherwise (its single-view risk reads these)."""
    return {c: float(features.get(f"{c}:present", 0.0)) for c in VULNERABILITY_CLASSES}
