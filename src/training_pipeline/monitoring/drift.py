"""Drift of the current inputs and predictions against a package's reference profile.

Per input feature: the population stability index over the reference's own bins (its quantile cut points;
``psi.epsilon`` stands in for an empty bin's share) and a two-sample test: Kolmogorov-Smirnov
(``scipy.stats.ks_2samp``) of the current values against the reference's stored sample for a continuous
feature, chi-square (``scipy.stats.chi2_contingency`` on the 2 x categories table of counts) for a
categorical one. The same for each class's score, for the risk, and PSI of each predicted class's share;
data quality (share of requests without each view, error rate, inputs refused as invalid) from the log.

Status: PSI is the size of a shift, the test says whether it is more than sampling noise (PSI alone is
biased upwards on small samples: about (bins - 1) / n for data of the very same distribution). ``alert`` when
PSI >= ``psi.alert`` and p < ``test.p_value``; ``warning`` when PSI >= ``psi.warning`` and p <
``test.p_value``; else ``ok``. A predicted class's share is tested with a binomial test against the
reference share. Fewer than ``min_samples`` current values give no verdict (``ok`` with a note).

Why scipy + numpy and not Evidently: Evidently is not pinned in requirements.txt, pulls a large dependency
tree whose pins were not checked against ours, and the statistics needed here are a few lines of scipy.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf
from scipy import stats

from training_pipeline.config import CONF_DIR
from training_pipeline.errors import ConfigError, DataError
from training_pipeline.evaluation.profile import CATEGORICAL_FEATURES, bin_index, top_class
from training_pipeline.utils.run import one_line

STATUSES = ("ok", "warning", "alert")
LOG_VIEWS = ("source", "bytecode", "transactions_csv")


# -- config --------------------------------------------------------------------------------------------------
@dataclass
class PsiConfig:
    bins: int = 10
    epsilon: float = 1e-4
    warning: float = 0.1
    alert: float = 0.25


@dataclass
class TestConfig:
    p_value: float = 0.01
    correction: str = "holm"  # holm | none: the family-wise error over every test of one report


@dataclass
class ProfileConfig:
    sample_size: int = 2000
    seed: int = 0
    enabled: bool = True


@dataclass
class ReportConfig:
    out_dir: str | None = None
    max_feature_plots: int = 12


@dataclass
class DriftConfig:
    """``conf/monitoring/default.yaml``."""

    window: str = "7d"
    time_slices: int = 7
    min_samples: int = 30
    psi: PsiConfig = field(default_factory=PsiConfig)
    test: TestConfig = field(default_factory=TestConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> DriftConfig:
    """The drift settings of ``path`` (default ``conf/monitoring/default.yaml``) with ``key=value``
    overrides; an unknown key or a wrong type is a ``ConfigError`` naming it."""
    path = Path(path) if path else Path(CONF_DIR) / "monitoring" / "default.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: no such monitoring config")
    try:
        merged = OmegaConf.merge(
            OmegaConf.structured(DriftConfig), OmegaConf.load(path), OmegaConf.from_dotlist(list(overrides))
        )
        cfg = OmegaConf.to_object(merged)
    except Exception as exc:  # noqa: BLE001 - OmegaConf's validation errors have no common base to name
        raise ConfigError(f"{path}: {one_line(exc)}") from None
    parse_window(cfg.window)
    if not 0 < cfg.psi.warning <= cfg.psi.alert:
        raise ConfigError(
            f"{path}: need 0 < psi.warning <= psi.alert, got {cfg.psi.warning}, {cfg.psi.alert}"
        )
    return cfg  # type: ignore[return-value]


_WINDOW = re.compile(r"(\d+(?:\.\d+)?)\s*([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_window(text: str | None) -> timedelta | None:
    """``7d`` → 7 days (units m, h, d, w); ``all`` or empty → None (the whole log)."""
    if text is None or str(text).strip().lower() in ("", "all", "none"):
        return None
    match = _WINDOW.fullmatch(str(text).strip().lower())
    if not match:
        raise ConfigError(f"window {text!r}: expected a number and a unit (30m, 12h, 7d, 2w) or 'all'")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


# -- statistics ----------------------------------------------------------------------------------------------
def psi(reference: Sequence[float], current: Sequence[float], epsilon: float = 1e-4) -> float:
    """Population stability index of two count (or share) vectors over the same bins."""
    r = np.asarray(reference, dtype=float)
    c = np.asarray(current, dtype=float)
    if r.sum() <= 0 or c.sum() <= 0:
        return 0.0
    r = np.clip(r / r.sum(), epsilon, None)
    c = np.clip(c / c.sum(), epsilon, None)
    return float(np.sum((c - r) * np.log(c / r)))


def status_of(psi_value: float, p_value: float | None, cfg: DriftConfig) -> str:
    """``alert``/``warning`` when PSI reaches that threshold and the test is significant, else ``ok``."""
    if p_value is None or p_value >= cfg.test.p_value:
        return "ok"
    if psi_value >= cfg.psi.alert:
        return "alert"
    return "warning" if psi_value >= cfg.psi.warning else "ok"


def adjust_p_values(entries: Mapping[str, dict[str, Any]], cfg: DriftConfig) -> None:
    """Holm's step-down correction over every test of a report (``test.correction: holm``): with 40 features
    and scores tested at p < 0.01, about one in three reports from an unchanged distribution would otherwise
    flag one by chance. Each tested entry gains ``p_adjusted`` and its status is decided on it."""
    if cfg.test.correction == "none":
        return
    if cfg.test.correction != "holm":
        raise ConfigError(f"test.correction={cfg.test.correction!r}: expected holm or none")
    tested = sorted(
        ((k, e) for k, e in entries.items() if isinstance(e.get("p_value"), float)),
        key=lambda item: item[1]["p_value"],
    )
    m, running = len(tested), 0.0
    for rank, (_, entry) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * entry["p_value"]))
        entry["p_adjusted"] = running
        entry["status"] = status_of(entry["psi"], running, cfg)


def _finite(values: Sequence[Any]) -> np.ndarray:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if math.isfinite(v):
            out.append(float(v))
    return np.asarray(out, dtype=float)


def continuous_drift(reference: Mapping[str, Any], values: Sequence[Any], cfg: DriftConfig) -> dict[str, Any]:
    """PSI over the reference's bins and KS against its sample, for one continuous feature."""
    cur = _finite(values)
    edges = reference.get("edges") or []
    ref_counts = reference.get("counts") or []
    out: dict[str, Any] = {"kind": "continuous", "test": "ks", "n_reference": int(reference.get("n", 0))}
    out["n_current"] = int(cur.size)
    cur_counts = np.bincount(bin_index(cur, edges), minlength=len(ref_counts)) if cur.size else []
    out["psi"] = round(psi(ref_counts, cur_counts, cfg.psi.epsilon), 6) if cur.size else 0.0
    sample = reference.get("sample") or []
    if cur.size >= cfg.min_samples and len(sample) >= 2:
        res = stats.ks_2samp(np.asarray(sample, dtype=float), cur)
        out["statistic"], out["p_value"] = round(float(res.statistic), 6), float(res.pvalue)
        out["status"] = status_of(out["psi"], out["p_value"], cfg)
    else:
        out |= _too_few(cur.size, cfg)
    out["reference_mean"], out["current_mean"] = (
        reference.get("mean"),
        (float(cur.mean()) if cur.size else None),
    )
    out["current_counts"] = [int(c) for c in cur_counts]
    return out


def categorical_drift(
    reference: Mapping[str, Any], values: Sequence[Any], cfg: DriftConfig
) -> dict[str, Any]:
    """PSI over the union of categories and a chi-square test of the 2 x categories table."""
    ref = {str(k): int(v) for k, v in (reference.get("counts") or {}).items()}
    cur = Counter(str(v) for v in values if v is not None)
    cats = sorted(set(ref) | set(cur))
    r, c = [ref.get(k, 0) for k in cats], [cur.get(k, 0) for k in cats]
    n = sum(c)
    out: dict[str, Any] = {"kind": "categorical", "test": "chi2", "n_reference": sum(r), "n_current": n}
    out["psi"] = round(psi(r, c, cfg.psi.epsilon), 6) if n else 0.0
    if n >= cfg.min_samples and sum(r):
        if len(cats) > 1:
            res = stats.chi2_contingency(np.array([r, c]))
            out["statistic"], out["p_value"] = round(float(res.statistic), 6), float(res.pvalue)
        else:
            out["statistic"], out["p_value"] = 0.0, 1.0
        out["status"] = status_of(out["psi"], out["p_value"], cfg)
    else:
        out |= _too_few(n, cfg)
    out["reference_counts"], out["current_counts"] = (
        dict(zip(cats, r, strict=True)),
        dict(zip(cats, c, strict=True)),
    )
    return out


def _too_few(n: int, cfg: DriftConfig) -> dict[str, Any]:
    return {
        "statistic": None,
        "p_value": None,
        "status": "ok",
        "note": f"{n} current values, fewer than min_samples={cfg.min_samples}: no verdict",
    }


def share_drift(reference: float, current: float, n: int, cfg: DriftConfig) -> dict[str, Any]:
    """PSI of one predicted class's share (two bins: the class, the rest) and a binomial test of the current
    count against the reference share."""
    value = psi([reference, 1 - reference], [current, 1 - current], cfg.psi.epsilon) if n else 0.0
    out: dict[str, Any] = {
        "reference": round(reference, 6),
        "current": round(current, 6),
        "psi": round(value, 6),
        "test": "binomial",
        "n": n,
    }
    if n >= cfg.min_samples:
        res = stats.binomtest(round(current * n), n, min(max(reference, 1e-9), 1 - 1e-9))
        out |= {"statistic": round(current, 6), "p_value": float(res.pvalue)}
        out["status"] = status_of(value, out["p_value"], cfg)
    else:
        out |= _too_few(n, cfg)
    return out


# -- current data --------------------------------------------------------------------------------------------
@dataclass
class Current:
    """What is compared with the reference: per input its features, per answered request its scores."""

    source: str
    kind: str  # inference_log | contracts | transactions
    features: list[dict[str, Any]] = field(default_factory=list)
    predictions: list[dict[str, Any]] = field(default_factory=list)  # {"probs", "risk", "time"}
    records: list[dict[str, Any]] = field(default_factory=list)  # the log records in the window
    window: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    unreadable_lines: int = 0


def _time(record: Mapping[str, Any]) -> datetime | None:
    try:
        t = datetime.fromisoformat(str(record.get("time")))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def read_log_lines(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The log's JSON object lines (rotated backups ``.N`` … ``.1`` first), and how many lines were not."""
    backups = sorted(
        (p for p in path.parent.glob(f"{path.name}.*") if p.suffix[1:].isdigit()),
        key=lambda p: -int(p.suffix[1:]),
    )
    records, bad = [], 0
    for file in [*backups, path]:
        for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(value, dict):
                records.append(value)
            else:
                bad += 1
    return records, bad


def is_inference_log(path: Path) -> bool:
    """True when the first JSON object line of ``path`` is a scan-service log record (torn lines skipped)."""
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                first = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(first, dict):
                return "request_id" in first
    return False


def _probs_of(entry: Mapping[str, Any], score_source: str) -> dict[str, float] | None:
    if score_source.startswith("view_probabilities/"):
        view = score_source.split("/", 1)[1]
        return (entry.get("view_probabilities") or {}).get(view)
    return entry.get("probabilities")


def from_log(
    path: Path, window: timedelta | None, package_id: str | None, score_source: str = "probabilities"
) -> Current:
    """Features and predictions of the log's requests in the window (it ends at the newest record, so an
    old log replays as it was); predictions only of the requests this package answered (champion, A/B or
    shadow arm), all answered ones when the log names no package id."""
    records, bad = read_log_lines(path)
    if not records:
        raise DataError(f"{path}: no inference-log records")
    times = [t for t in (_time(r) for r in records) if t is not None]
    end = max(times) if times else None
    start = end - window if (end is not None and window is not None) else None
    if start is not None:
        records = [r for r in records if (t := _time(r)) is not None and t >= start]
    cur = Current(str(path), "inference_log", records=records, unreadable_lines=bad)
    cur.window = {
        "start": (start or (min(times) if times else None)),
        "end": end,
        "length": str(window) if window is not None else "all",
        "records": len(records),
    }
    cur.window = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in cur.window.items()}
    cur.features = [
        r["features"] for r in records if isinstance(r.get("features"), dict) and "error" not in r["features"]
    ]
    answered = [r for r in records if r.get("status") == 200]
    matched = []
    for r in answered:
        arm_model = (r.get("models") or {}).get(r.get("arm") or "champion") or {}
        shadow = r.get("shadow") or {}
        if package_id and arm_model.get("package_id") == package_id:
            matched.append(r)
        elif (
            package_id
            and (shadow.get("model") or {}).get("package_id") == package_id
            and not shadow.get("error")
        ):
            matched.append({**shadow, "time": r.get("time")})
    if package_id and not matched and answered:
        cur.notes.append(
            f"no log record names package {package_id[:12]}: predictions of every answered request used"
        )
        matched = answered
    elif not package_id:
        matched = answered
    for r in matched:
        probs = _probs_of(r, score_source)
        risk = r.get("risk")
        if probs or isinstance(risk, int | float):
            cur.predictions.append(
                {
                    "probs": probs or {},
                    "risk": risk,
                    "time": r.get("time"),
                    "view_probs": r.get("view_probabilities") or {},
                    "flagged": r.get("flagged"),
                }
            )
    if not cur.features:
        cur.notes.append("no log record carries input features (a service older than the features field?)")
    return cur


def quality(cur: Current) -> dict[str, Any]:
    """Share of requests without each view, error rate and inputs refused as invalid (HTTP 422)."""
    rows = cur.records
    n = len(rows)
    out: dict[str, Any] = {}
    for view in LOG_VIEWS:
        with_views = [r for r in rows if isinstance(r.get("views"), list)]
        missing = sum(view not in r["views"] for r in with_views)
        out[f"missing_view/{view}"] = round(missing / len(with_views), 6) if with_views else None
    out["error_rate"] = round(sum(bool(r.get("error")) for r in rows) / n, 6) if n else 0.0
    out["unparsable"] = sum(r.get("status") == 422 for r in rows)
    out["unreadable_log_lines"] = cur.unreadable_lines
    out["feature_errors"] = sum(
        isinstance(r.get("features"), dict) and "error" in r["features"] for r in rows
    )
    return out


# -- the comparison ------------------------------------------------------------------------------------------
def compare(profile: Mapping[str, Any], cur: Current, cfg: DriftConfig) -> dict[str, Any]:
    """The ``features``, ``predictions``, ``quality``, ``status`` and ``drifted`` parts of a drift report."""
    features: dict[str, Any] = {}
    for name, ref in (profile.get("features") or {}).items():
        values = [f.get(name) for f in cur.features]
        if ref.get("kind") == "categorical" or name in CATEGORICAL_FEATURES:
            features[name] = categorical_drift(ref, values, cfg)
        else:
            features[name] = continuous_drift(ref, values, cfg)
    predictions: dict[str, Any] = {}
    preds = cur.predictions
    for view, per_class in (profile.get("view_scores") or {}).items():  # each base model's own scores
        own = [p["view_probs"][view] for p in preds if isinstance(p.get("view_probs", {}).get(view), dict)]
        for cls, ref in per_class.items():
            predictions[f"score/{view}/{cls}"] = continuous_drift(ref, [o.get(cls) for o in own], cfg)
    if profile.get("view_scores") and profile.get("views"):
        # the fused scores of the reference had every view: compare them with requests that had them too
        full = set(profile["views"])
        preds = [p for p in preds if full <= set(p.get("view_probs") or {})]
        if len(preds) < len(cur.predictions):
            cur.notes.append(
                f"fused scores compared on the {len(preds)} of {len(cur.predictions)} requests with every "
                f"view ({', '.join(sorted(full))}); per-view scores (score/<view>/<class>) on all"
            )
    for cls, ref in (profile.get("scores") or {}).items():
        predictions[f"score/{cls}"] = continuous_drift(ref, [p["probs"].get(cls) for p in preds], cfg)
    if profile.get("risk"):
        predictions["risk"] = continuous_drift(profile["risk"], [p.get("risk") for p in preds], cfg)
    with_probs = [p for p in preds if p["probs"]]
    if profile.get("predicted_share_kind") == "flagged":  # the share of requests flagged for each class
        with_probs = [p for p in with_probs if isinstance(p.get("flagged"), list)]
        tops = Counter(c for p in with_probs for c in p["flagged"])
    else:
        tops = Counter(top_class(p["probs"]) for p in with_probs)
    for cls, share in (profile.get("predicted_share") or {}).items():
        current = tops.get(cls, 0) / len(with_probs) if with_probs else 0.0
        predictions[f"predicted_share/{cls}"] = share_drift(float(share), current, len(with_probs), cfg)
    entries = {**features, **predictions}
    adjust_p_values(entries, cfg)
    worst = max((STATUSES.index(e["status"]) for e in entries.values()), default=0)
    return {
        "features": features,
        "predictions": predictions,
        "quality": quality(cur),
        "status": STATUSES[worst],
        "drifted": [k for k, e in entries.items() if e["status"] != "ok"],
    }


def time_slices(preds: Sequence[Mapping[str, Any]], n: int) -> list[dict[str, Any]]:
    """Mean risk and per-class mean score in ``n`` equal time slices of the predictions (for the plot)."""
    timed = [(t, p) for p in preds if (t := _time(p)) is not None]
    if len(timed) < 2 or n < 1:
        return []
    lo, hi = min(t for t, _ in timed), max(t for t, _ in timed)
    width = (hi - lo) / n or timedelta(seconds=1)
    slices: list[list[Mapping[str, Any]]] = [[] for _ in range(n)]
    for t, p in timed:
        slices[min(int((t - lo) / width), n - 1)].append(p)
    out = []
    for i, part in enumerate(slices):
        if not part:
            continue
        classes = sorted({c for p in part for c in p["probs"]})
        risks = [p["risk"] for p in part if isinstance(p.get("risk"), int | float)]
        out.append(
            {
                "start": (lo + i * width).isoformat(timespec="seconds"),
                "n": len(part),
                "risk": float(np.mean(risks)) if risks else None,
                "scores": {c: float(np.mean([p["probs"].get(c, 0.0) for p in part])) for c in classes},
            }
        )
    return out
