"""The expert risk assessment: a severity-weighted function of a contract's true vulnerabilities and its
transaction behaviour, the single models' risk under the same function, and risk levels.

score = noisy-or(severity[c] for every true vulnerability c, severity[behaviour label]): a contract with one
critical flaw scores that flaw's severity, two flaws more than either, an observed attack adds its own.
The aggregator's target is ``score >= positive_at`` (binary, so its output is a probability to calibrate).
Vulnerability severities default to ``taxonomy.SEVERITY``; behaviour severities live in the data config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training_pipeline import taxonomy
from training_pipeline.errors import ConfigError

DEFAULT_BEHAVIOR_SEVERITY: dict[str, float] = {
    "normal": 0.0,
    "exploit_drain": 1.0,
    "flash_loan_attack": 0.9,
    "rug_pull": 0.9,
    "ponzi_collapse": 0.8,
    "phishing_drain": 0.7,
}
DEFAULT_LEVELS: dict[str, float] = {"low": 0.0, "medium": 0.25, "high": 0.5, "critical": 0.8}


def noisy_or(values: Sequence[float]) -> float:
    return float(1.0 - np.prod([1.0 - min(max(v, 0.0), 1.0) for v in values])) if len(values) else 0.0


@dataclass(frozen=True)
class RiskTarget:
    """``data.target.*``: severities and the score at which a contract counts as risky."""

    vulnerability_severity: Mapping[str, float] | None = None  # None = taxonomy.SEVERITY
    behavior_severity: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_BEHAVIOR_SEVERITY))
    default_anomaly_severity: float = 0.8  # an anomaly type added to the taxonomy but not listed above
    positive_at: float = 0.5

    def __post_init__(self) -> None:
        unknown = sorted(set(self.vulnerability_severity or {}) - set(taxonomy.VULNERABILITY_CLASSES))
        if unknown:
            raise ConfigError(f"data.target.vulnerability_severity: unknown class(es) {unknown}")
        bad = {k: v for k, v in self.severities().items() if not 0.0 <= float(v) <= 1.0}
        if bad or not 0.0 < self.positive_at <= 1.0:
            raise ConfigError(
                f"data.target: severities and positive_at must lie in [0, 1]; got {bad or self}"
            )

    def severities(self) -> dict[str, float]:
        out = {**taxonomy.SEVERITY, **dict(self.vulnerability_severity or {})}
        return {c: float(out.get(c, 0.0)) for c in taxonomy.VULNERABILITY_CLASSES}

    def behavior(self, label: str | None) -> float:
        if label is None or label == "normal":
            return float(self.behavior_severity.get("normal", 0.0)) if label else 0.0
        return float(self.behavior_severity.get(label, self.default_anomaly_severity))

    def score(self, labels: Sequence[str], behavior: str | None) -> float:
        sev = self.severities()
        return noisy_or([sev.get(c, 0.0) for c in labels] + [self.behavior(behavior)])

    def label(self, labels: Sequence[str], behavior: str | None) -> int:
        return int(self.score(labels, behavior) >= self.positive_at - 1e-9)

    def as_dict(self) -> dict[str, Any]:
        return {
            "vulnerability_severity": self.severities(),
            "behavior_severity": dict(self.behavior_severity),
            "default_anomaly_severity": self.default_anomaly_severity,
            "positive_at": self.positive_at,
        }

    # -- the same function applied to one model's predicted probabilities -------------------------------
    def vulnerability_risk(self, probs: Mapping[str, float]) -> float:
        """Noisy-or of severity x probability over classes: the chance of at least one severe flaw."""
        sev = self.severities()
        return noisy_or([sev.get(c, 0.0) * float(p) for c, p in probs.items()])

    def behavior_risk(self, probs: Mapping[str, float]) -> float:
        """Expected severity of the history's class."""
        return float(sum(float(p) * self.behavior(c) for c, p in probs.items()))


def view_risk(target: RiskTarget, kind: str, probs: Mapping[str, float]) -> float:
    """A single model's risk: ``kind`` is the view's adapter kind (contract_classes | anomaly_classes)."""
    return target.behavior_risk(probs) if kind == "anomaly_classes" else target.vulnerability_risk(probs)


def risk_level(p: float, levels: Mapping[str, float] | None = None) -> str:
    """The highest level whose lower bound ``p`` reaches (levels: name -> lower bound)."""
    levels = dict(levels or DEFAULT_LEVELS)
    best = min(levels, key=levels.get)
    for name, lo in sorted(levels.items(), key=lambda kv: kv[1]):
        if p >= lo:
            best = name
    return best


def check_levels(levels: Mapping[str, float]) -> dict[str, float]:
    levels = {str(k): float(v) for k, v in dict(levels).items()}
    if not levels or min(levels.values()) != 0.0 or any(not 0.0 <= v <= 1.0 for v in levels.values()):
        raise ConfigError(f"model.risk_levels={levels}: lower bounds in [0, 1], the lowest level at 0")
    return levels
