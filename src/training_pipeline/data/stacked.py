"""StackedPredictionData: the base models' predictions per contract, the aggregator's input.

A pipeline run dir (``scripts/train_all.py``) holds ``stacked/stacked.jsonl``, one line per contract:

    {"id": ..., "split": "train" | "val" | "test",
     "views": {"bytecode": {"access_control": 0.12, ...}, "source": {...}},   # a view absent = missing
     "labels": [...true vulnerabilities...], "behavior": "normal" | anomaly type | null,
     "unassessed": [...classes whose truth is unknown...],                    # optional (CGT, audited code)
     "top_lines": {...code analyzer's ranked lines...}}                       # optional

and ``stacked/manifest.json`` naming (in order) each view's model, adapter kind and feature order. Train and
val rows are out-of-fold predictions (cross-fitted models that never saw the contract; val is the fold the
full models validated on); test rows average the cross-fitted models' predictions (``aggregator_inputs:
crossfit_mean``, the default) or come from the models trained on the whole training split (``full``).
A ``static`` view (``weak_labels.features``) holds Slither's findings per class instead of probabilities.

A missing view is never zeros that look like data: its features are NaN and its ``mask`` entry False, and the
aggregator replaces it by the mask before anything reads it. ``unassessed`` classes (CGT's partial labels;
every class of the npm audited code, which has no labels) get ``label_mask`` 0: the class head neither learns
nor is scored on them, and rows that assess no class are the false-alarm budget's rows (``tune_thresholds``).
``audited_negative_weight`` makes the *training* rows that assess no class (audited code) negatives of every
class at that loss weight, as ``data.audited_negative_weight`` does for the contract models: audited code then
teaches the class head what not to flag, not only the risk head; validation rows keep their mask (the budget's
rows).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from training_pipeline import taxonomy
from training_pipeline.data.contracts import SplitDataModule, check_audited_negative_weight, make_loader
from training_pipeline.data.weak_labels.features import STATIC_KIND, static_class_probs
from training_pipeline.errors import ConfigError, DataError
from training_pipeline.risk import RiskTarget, view_risk
from training_pipeline.utils.run import write_json

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
EVAL_SPLITS = ("test", "val", "train", "all")
STACKED_FILE = "stacked/stacked.jsonl"
MANIFEST_FILE = "stacked/manifest.json"


def write_stacked(pipeline_dir: str | Path, rows: Sequence[dict[str, Any]], manifest: dict[str, Any]) -> Path:
    """Write the stacked rows and their manifest (with a content hash) under ``<pipeline_dir>/stacked/``."""
    path = Path(pipeline_dir) / STACKED_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    manifest = {**manifest, "content_hash": "sha256:" + hashlib.sha256(text.encode()).hexdigest()}
    write_json(Path(pipeline_dir) / MANIFEST_FILE, manifest)
    return path


def read_stacked(pipeline_dir: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The stacked rows and their manifest of a pipeline run dir."""
    root = Path(pipeline_dir)
    path, manifest = root / STACKED_FILE, root / MANIFEST_FILE
    if not path.is_file() or not manifest.is_file():
        raise DataError(f"{root}: no stacked predictions ({STACKED_FILE}); run scripts/train_all.py first")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows, json.loads(manifest.read_text())


def single_view_risk(target: RiskTarget, kind: str, features: Mapping[str, float]) -> float:
    """One view's own (uncalibrated) risk: ``risk.view_risk`` of its probabilities; the static-analysis view
    counts each class Slither flags as certain."""
    if kind == STATIC_KIND:
        return view_risk(target, "contract_classes", static_class_probs(features))
    return view_risk(target, kind, features)


def mean_probs(members: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Several models' probabilities averaged feature by feature (``crossfit_mean``: the fold models)."""
    return {k: float(np.mean([float(m[k]) for m in members])) for k in members[0]}


def view_matrix(
    rows: Sequence[dict[str, Any]], view_names: Sequence[str], view_features: dict[str, list[str]]
) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, sum of view dims) with NaN where a view is missing, mask (N, V) bool)."""
    dims = [len(view_features[v]) for v in view_names]
    x = np.full((len(rows), sum(dims)), np.nan, dtype=np.float32)
    mask = np.zeros((len(rows), len(view_names)), dtype=bool)
    for i, r in enumerate(rows):
        start = 0
        for j, (v, d) in enumerate(zip(view_names, dims, strict=True)):
            probs = (r.get("views") or {}).get(v)
            if probs is not None:
                try:
                    x[i, start : start + d] = [float(probs[f]) for f in view_features[v]]
                except KeyError as exc:
                    raise DataError(f"row {r.get('id')!r}: view {v!r} lacks feature {exc}") from None
                mask[i, j] = True
            start += d
    return x, mask


class StackedRows(Dataset):
    """Per contract: the views' features (NaN where missing), the view mask, the risk target, labels and
    their assessed mask."""

    def __init__(
        self,
        x: np.ndarray,
        mask: np.ndarray,
        risk: np.ndarray,
        classes: np.ndarray,
        index: np.ndarray,
        label_mask: np.ndarray | None = None,
    ):
        self.x, self.mask, self.risk, self.classes, self.index = x, mask, risk, classes, index
        self.label_mask = np.ones_like(classes) if label_mask is None else label_mask

    def __len__(self) -> int:
        return len(self.x)

    def audited(self) -> np.ndarray:
        """Rows that assess no class and are labelled with none: audited code (as loaded, before
        ``audited_negative_weight`` turns them into weighted negatives)."""
        return (self.label_mask.sum(1) == 0) & (self.classes.sum(1) == 0)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            "features": torch.from_numpy(self.x[i]),
            "mask": torch.from_numpy(self.mask[i]),
            "risk": torch.tensor(self.risk[i]),
            "labels": torch.from_numpy(self.classes[i]),
            "label_mask": torch.from_numpy(self.label_mask[i]),
            "index": torch.tensor(int(self.index[i])),
        }


BUDGET_SPLITS = ("val", "train")


def check_budget_splits(splits: Sequence[str], audited_negative_weight: float | None) -> tuple[str, ...]:
    """``data.budget_splits``: where the false-alarm budget counts audited rows, validation always."""
    out = tuple(str(s) for s in splits or ())
    if "val" not in out or any(s not in BUDGET_SPLITS for s in out):
        raise ConfigError(f"data.budget_splits={list(out)}: expected [val] or [val,train]")
    if "train" in out and audited_negative_weight is not None:
        raise ConfigError(
            "data.budget_splits=[val,train] with data.audited_negative_weight set: the class head learns the "
            "training split's audited rows as negatives, so the budget would be measured on rows it fitted"
        )
    return out


class StackedPredictionData(SplitDataModule):
    """The stacked base-model predictions of a pipeline run dir, with the expert risk target."""

    def __init__(
        self,
        pipeline_dir: str | None = None,
        views: Sequence[str] | None = None,
        target: dict | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        eval_split: str = "test",
        audited_negative_weight: float | None = None,
        budget_splits: Sequence[str] = ("val",),
    ) -> None:
        super().__init__()
        self.audited_negative_weight = check_audited_negative_weight(audited_negative_weight)
        self.budget_splits = check_budget_splits(budget_splits, self.audited_negative_weight)
        if not pipeline_dir:
            raise ConfigError(
                "data.pipeline_dir: the aggregator needs a pipeline run dir (scripts/train_all.py)"
            )
        if eval_split not in EVAL_SPLITS:
            raise ConfigError(f"eval split {eval_split!r}: expected one of {', '.join(EVAL_SPLITS)}")
        try:
            self.target = RiskTarget(**dict(target or {}))
        except TypeError as exc:
            raise ConfigError(f"data.target: {exc}".replace(".__init__()", ":")) from None
        self.pipeline_dir, self.views = Path(pipeline_dir), list(views) if views else None
        self.batch_size, self.num_workers, self.eval_split = batch_size, num_workers, eval_split
        self.class_names = list(taxonomy.VULNERABILITY_CLASSES)
        self.records: list[dict[str, Any]] = []
        self.splits: dict[str, StackedRows] = {}
        self.data_version: str | None = None
        self.manifest: dict[str, Any] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        rows, self.manifest = read_stacked(self.pipeline_dir)
        info = {v["view"]: v for v in self.manifest["views"]}
        available = list(info)
        self.view_names = self.views or available
        unknown = [v for v in self.view_names if v not in available]
        if unknown:
            raise ConfigError(f"data.views: {unknown} are not in {self.pipeline_dir} (views: {available})")
        self.view_features = {v: list(info[v]["features"]) for v in self.view_names}
        self.view_kinds = {v: info[v].get("kind", "contract_classes") for v in self.view_names}
        self.view_models = {v: info[v].get("model", v) for v in self.view_names}
        x, mask = view_matrix(rows, self.view_names, self.view_features)
        keep = mask.any(1)
        if not keep.all():
            log.warning(
                "Stacked data: %d contracts have none of the views %s", int((~keep).sum()), self.view_names
            )
        rows, x, mask = [r for r, k in zip(rows, keep, strict=True) if k], x[keep], mask[keep]
        self.records = rows
        self.data_version = self.manifest.get("content_hash")
        risk = np.array(
            [self.target.label(r.get("labels") or [], r.get("behavior")) for r in rows], dtype=np.float32
        )
        self.scores = np.array([self.target.score(r.get("labels") or [], r.get("behavior")) for r in rows])
        classes = np.array([taxonomy.multi_hot(r.get("labels") or []) for r in rows], dtype=np.float32)
        assessed = 1.0 - np.array(
            [taxonomy.multi_hot(r.get("unassessed") or []) for r in rows], dtype=np.float32
        ).reshape(classes.shape)
        names = np.array([r["split"] for r in rows])
        for split in SPLITS:
            idx = np.flatnonzero(names == split)
            self.splits[split] = StackedRows(x[idx], mask[idx], risk[idx], classes[idx], idx, assessed[idx])
        idx = np.arange(len(rows))
        self.splits["all"] = StackedRows(x, mask, risk, classes, idx, assessed)
        if self.audited_negative_weight:
            self._audited_negatives(self.splits["train"])
        sizes = {s: len(self.splits[s]) for s in SPLITS}
        empty = [s for s in SPLITS if not sizes[s]] if self.eval_split != "all" else []
        if empty:
            raise DataError(f"{self.pipeline_dir}: stacked split(s) {empty} are empty")
        log.info(
            "Stacked predictions %s: %s, views %s (present: %s), risky %.0f%%",
            self.data_version,
            sizes,
            self.view_names,
            dict(zip(self.view_names, mask.sum(0).tolist(), strict=True)),
            100 * risk.mean(),
        )

    def _audited_negatives(self, train: StackedRows) -> None:
        """Training rows that assess no class (audited code; never labelled positive) become negatives of
        every class at ``audited_negative_weight`` (their ``label_mask``, which the class loss weighs by)."""
        audited = train.audited()
        train.label_mask[audited] = self.audited_negative_weight
        log.log(
            logging.INFO if audited.any() else logging.WARNING,
            "Audited negatives (weight %g): %d of %d training rows",
            self.audited_negative_weight,
            int(audited.sum()),
            len(train),
        )

    def budget_rows(self) -> dict[str, torch.Tensor] | None:
        """The training split's audited rows (assessing no class, labelled with none) when ``budget_splits``
        names ``train``: their features and view mask, for the false-alarm budget to count beside
        validation's. Their base-model features are out of fold, and the class head never learned from them
        (``audited_negative_weight`` is null then), so its flags on them are as honest as on validation rows.
        None otherwise, or when there are none."""
        self.setup()
        if "train" not in self.budget_splits:
            return None
        train = self.splits["train"]
        audited = train.audited()
        if not audited.any():
            return None
        return {"features": torch.from_numpy(train.x[audited]), "mask": torch.from_numpy(train.mask[audited])}

    def model_kwargs(self) -> dict[str, Any]:
        """View names and features, classes, risk target and its positive weight."""
        self.setup()
        y = self.splits["train"].risk
        pos = float(y.sum())
        return {
            "view_names": self.view_names,
            "view_features": self.view_features,
            "view_kinds": self.view_kinds,
            "class_names": self.class_names,
            "target": self.target.as_dict(),
            "risk_pos_weight": float(np.clip((len(y) - pos) / max(pos, 1.0), 0.2, 20.0)),
        }

    def _loader(self, split: str, train: bool = False) -> DataLoader:
        return make_loader(
            self.splits[split], self.batch_size, default_collate, self.num_workers, False, train
        )
