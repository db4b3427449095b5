"""Slither detectors → the 9-class taxonomy, and contract-level predictions from cached findings.

The predictions serve as weak labels, as a baseline row (Slither as a classifier) and, later, as the
aggregator's static-findings view. The mapping lives in ``conf/weak_labels/slither.yaml`` (``detectors``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training_pipeline.errors import ConfigError
from training_pipeline.taxonomy import VULNERABILITY_CLASSES

IMPACTS: tuple[str, ...] = ("Optimization", "Informational", "Low", "Medium", "High")
CONFIDENCES: tuple[str, ...] = ("Low", "Medium", "High")
CONFIG_FILE = Path("weak_labels") / "slither.yaml"  # under the package's conf/


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """The weak-label config as a plain dict: ``path``, else the packaged conf/weak_labels/slither.yaml."""
    from omegaconf import OmegaConf

    from training_pipeline.config import CONF_DIR

    file = Path(path) if path else CONF_DIR / CONFIG_FILE
    if not file.is_file():
        raise ConfigError(f"weak-label config {file} not found")
    cfg = OmegaConf.to_container(OmegaConf.load(file), resolve=True)
    if not isinstance(cfg, dict) or not isinstance(cfg.get("detectors"), dict):
        raise ConfigError(f"{file}: expected a mapping with a `detectors` block (check → class or null)")
    return cfg  # type: ignore[return-value]


def _rank(value: str | None, scale: tuple[str, ...], where: str) -> int:
    if value not in scale:
        raise ConfigError(f"{where}={value!r}: expected one of {', '.join(scale)}")
    return scale.index(value)


@dataclass(frozen=True)
class DetectorMapping:
    """Which taxonomy class each Slither check stands for, and the impact/confidence a finding needs."""

    classes: Mapping[str, str | None]
    min_impact: str = "Informational"
    min_confidence: str = "Low"

    def __post_init__(self) -> None:
        unknown = sorted({c for c in self.classes.values() if c is not None} - set(VULNERABILITY_CLASSES))
        if unknown:
            raise ConfigError(
                f"weak_labels detectors: unknown class(es) {', '.join(unknown)}; "
                f"expected some of {', '.join(VULNERABILITY_CLASSES)} or null"
            )
        _rank(self.min_impact, IMPACTS, "min_impact")
        _rank(self.min_confidence, CONFIDENCES, "min_confidence")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None = None, **overrides: Any) -> DetectorMapping:
        """From the config dict (default: the packaged one); keyword arguments override its thresholds."""
        cfg = cfg if cfg is not None else load_config()
        kwargs = {
            "classes": dict(cfg["detectors"]),
            "min_impact": cfg.get("min_impact", "Informational"),
            "min_confidence": cfg.get("min_confidence", "Low"),
        }
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kwargs)

    @property
    def detected_classes(self) -> list[str]:
        """The classes at least one check maps to, in taxonomy order (Slither is blind to the rest)."""
        mapped = set(self.classes.values())
        return [c for c in VULNERABILITY_CLASSES if c in mapped]

    def class_of(self, check: str) -> str | None:
        """The taxonomy class of a check; None for checks mapped to null and for unknown ones."""
        return self.classes.get(check)

    def counts(self, finding: Mapping[str, Any]) -> bool:
        """Whether a finding is at or above the impact and confidence thresholds."""
        impact, confidence = finding.get("impact"), finding.get("confidence")
        return (
            impact in IMPACTS
            and confidence in CONFIDENCES
            and IMPACTS.index(impact) >= IMPACTS.index(self.min_impact)
            and CONFIDENCES.index(confidence) >= CONFIDENCES.index(self.min_confidence)
        )


@dataclass
class ClassPrediction:
    """One class of one contract: whether any mapped finding fired, how many, the highest impact, which."""

    present: bool = False
    count: int = 0
    max_impact: str | None = None
    checks: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)


@dataclass
class ContractPrediction:
    """Slither's view of one contract: a prediction per taxonomy class, plus checks that map to none."""

    classes: dict[str, ClassPrediction]
    unmapped: dict[str, int]  # check → findings count, for checks with no class (null or unknown)
    unknown: list[str]  # checks the mapping has never heard of (a newer Slither): kept raw

    @property
    def labels(self) -> list[str]:
        """The classes predicted present, in taxonomy order (a weak label list)."""
        return [c for c in VULNERABILITY_CLASSES if self.classes[c].present]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return {
            "labels": self.labels,
            "classes": {c: vars(p) for c, p in self.classes.items()},
            "unmapped": self.unmapped,
            "unknown": self.unknown,
        }


def contract_predictions(
    findings: Iterable[Mapping[str, Any]], mapping: DetectorMapping, entry_only: bool = True
) -> ContractPrediction:
    """Turn a contract's cached findings into per-class predictions (present / count / max impact).

    A file analysed with its imports has findings in imported files too (``in_entry`` false): they are left
    out unless ``entry_only`` is false (the whole import closure's view).
    """
    classes = {c: ClassPrediction() for c in VULNERABILITY_CLASSES}
    unmapped: dict[str, int] = {}
    unknown: set[str] = set()
    for f in findings:
        if entry_only and f.get("in_entry") is False:
            continue
        check = str(f.get("check"))
        cls = mapping.class_of(check)
        if cls is None:
            unmapped[check] = unmapped.get(check, 0) + 1
            if check not in mapping.classes:
                unknown.add(check)
            continue
        if not mapping.counts(f):
            continue
        p = classes[cls]
        p.present = True
        p.count += 1
        impact = f.get("impact")
        if p.max_impact is None or IMPACTS.index(impact) > IMPACTS.index(p.max_impact):  # type: ignore[arg-type]
            p.max_impact = impact  # type: ignore[assignment]
        if check not in p.checks:
            p.checks.append(check)
        p.lines = sorted(set(p.lines) | set(f.get("lines") or []))
    return ContractPrediction(classes, dict(sorted(unmapped.items())), sorted(unknown))


def record_predictions(
    record: Mapping[str, Any] | None, mapping: DetectorMapping, entry_only: bool = True
) -> ContractPrediction | None:
    """Predictions of a cached record; None when there is none or the analysis failed (no opinion)."""
    if not record or record.get("status") != "ok":
        return None
    return contract_predictions(record.get("findings") or [], mapping, entry_only)
