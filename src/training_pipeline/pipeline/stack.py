"""Stack the base models' predictions into the aggregator's input, checking by ids that nothing leaked.

Train and val rows take each model's out-of-fold predictions (the cross-fitted model that never saw the
contract); test rows take the mean of the cross-fitted models' predictions (``crossfit_mean``: the same kind
of model the aggregator learnt from) or those of the model trained on the whole training split (``full``);
explanations (the code analyzer's top lines) always come from the full model. The static-analysis view
(Slither's cached findings) needs no cross-fitting: nothing learns it. ``variant_members`` (a bytecode view's
``stack_variants``): the same fold models' out-of-fold predictions from other compile builds of the contracts;
each train or val row that has the build gets one more row per variant, id ``<id>~<variant>``, its bytecode
view from that build and everything else (labels, the other views) the contract's own. A contract's role
(train / val / test) is the most held-out one any model's full run gave it (test, then val), so a model that
trained on a contract another model tests simply has no view for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training_pipeline.data.stacked import SPLITS, mean_probs
from training_pipeline.data.weak_labels.features import (
    STATIC_KIND,
    STATIC_MODEL,
    STATIC_VIEW,
    static_feature_names,
)
from training_pipeline.errors import DataError
from training_pipeline.pipeline.stages import StageResult
from training_pipeline.pipeline.views import read_view_predictions


class LeakageError(RuntimeError):
    """A model predicted (or was validated on) a contract it trained on: the stacked data would lie."""


@dataclass(frozen=True)
class ModelView:
    model: str  # config option (model=...)
    view: str  # name of the view in the stacked data
    kind: str  # adapter kind (pipeline/views.py)


def check_crossfit(
    model: str, inner: Sequence[StageResult], full: StageResult, predicted: Mapping[str, set]
) -> None:
    """Raise LeakageError unless every inner model predicts only contracts outside its train and val splits,
    no inner model sees the outer test split, and the full model predicts only its own test split."""
    outer_test = set(full.split_ids["test"])
    for r in inner:
        seen = set(r.split_ids["train"]) | set(r.split_ids["val"])
        leaked = predicted[r.name] & seen
        if leaked:
            raise LeakageError(
                f"{r.name}: predicted {len(leaked)} contract(s) it trained on, e.g. {sorted(leaked)[:3]}"
            )
        touched = (seen | set(r.split_ids["test"])) & outer_test
        if touched:
            raise LeakageError(
                f"{r.name}: saw {len(touched)} outer test contract(s), e.g. {sorted(touched)[:3]}"
            )
    own = predicted[full.name]
    bad = own - outer_test
    if bad:
        raise LeakageError(
            f"{full.name}: predicted {len(bad)} contract(s) outside its test split, e.g. {sorted(bad)[:3]}"
        )


def crossfit_mean(
    name: str, full: dict[str, dict], members: Sequence[dict[str, dict]]
) -> dict[str, dict[str, Any]]:
    """The full model's test entries with their probabilities replaced by the mean of the cross-fitted
    models' (truth and explanations stay the full model's); every fold model must predict exactly the
    contracts the full model tests."""
    for k, preds in enumerate(members):
        if set(preds) != set(full):
            odd = sorted(set(preds) ^ set(full))
            raise LeakageError(
                f"{name}: fold model {k} predicted other contracts than the test split: {odd[:3]}"
            )
    return {rid: {**e, "probs": mean_probs([m[rid]["probs"] for m in members])} for rid, e in full.items()}


def _static_names(static: Mapping[str, dict[str, float] | None]) -> list[str]:
    """The static-analysis view's feature names: those every analysed contract has (one set for all)."""
    names = {tuple(f) for f in static.values() if f is not None}
    if len(names) > 1:
        raise DataError(f"static analysis: contracts with different feature sets ({len(names)})")
    return list(next(iter(names))) if names else static_feature_names()


def build_stacked(
    pipeline_dir: Path,
    views: Sequence[ModelView],
    stages: Mapping[str, StageResult],
    inner_tags: Sequence[str],
    test_members: Mapping[str, Sequence[Path]] | None = None,
    static: Mapping[str, dict[str, float] | None] | None = None,
    variant_members: Mapping[str, Mapping[str, Sequence[Path]]] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(rows, manifest) for ``data/stacked.py``'s ``write_stacked``. ``test_members``: per view, the fold
    models' outer-test prediction files (their mean replaces the full model's probabilities); ``static``:
    the static-analysis view's features per contract id (None or absent: masked); ``variant_members``: per
    view and compile variant, each fold model's (``inner_tags`` order) predictions on its own out-of-fold
    contracts built that way (extra train and val rows)."""
    oof: dict[str, dict[str, dict]] = {}
    oof_variant: dict[tuple[str, str], dict[str, dict]] = {}  # (view, compile variant) -> id -> entry
    test: dict[str, dict[str, dict]] = {}
    role: dict[str, str] = {}
    roles_seen: dict[str, set[str]] = {}
    features: dict[str, list[str]] = {}
    for mv in views:
        inner = [stages[f"{mv.model}/{t}"] for t in inner_tags]
        full = stages[f"{mv.model}/full"]
        predicted: dict[str, set] = {}
        oof[mv.view] = {}
        for r in inner:
            preds = read_view_predictions(pipeline_dir / r.predictions, mv.kind)
            predicted[r.name] = set(preds)
            twice = set(preds) & set(oof[mv.view])
            if twice:
                raise LeakageError(f"{r.name}: {len(twice)} contract(s) also predicted by another fold")
            oof[mv.view].update(preds)
        test[mv.view] = read_view_predictions(pipeline_dir / full.predictions, mv.kind)
        predicted[full.name] = set(test[mv.view])
        check_crossfit(mv.model, inner, full, predicted)
        if test_members is not None:
            members = [read_view_predictions(p, mv.kind) for p in test_members[mv.view]]
            test[mv.view] = crossfit_mean(mv.model, test[mv.view], members)
        for variant, paths in ((variant_members or {}).get(mv.view) or {}).items():
            oof_variant[(mv.view, variant)] = _variant_oof(mv, variant, inner, paths, predicted)
        first = next(iter(test[mv.view].values()), None) or next(iter(oof[mv.view].values()))
        features[mv.view] = list(first["probs"])
        for split in SPLITS:
            for rid in full.split_ids[split]:
                roles_seen.setdefault(rid, set()).add(split)
    order = {"test": 0, "val": 1, "train": 2}
    for rid, seen in roles_seen.items():
        role[rid] = min(seen, key=order.get)
    rows = []
    missing = {mv.view: {"train": 0, "val": 0, "test": 0} for mv in views}
    for rid in sorted(role):
        split = role[rid]
        row: dict[str, Any] = {"id": rid, "split": split, "views": {}, "labels": None, "behavior": None}
        for mv in views:
            entry = (test if split == "test" else oof)[mv.view].get(rid)
            if entry is None:
                missing[mv.view][split] += 1
                other = oof[mv.view].get(rid) or test[mv.view].get(rid)  # the truth is the same anywhere
                entry_truth = other["truth"] if other else {}
            else:
                row["views"][mv.view] = entry["probs"]
                entry_truth = entry["truth"]
                if entry["extras"].get("top_lines"):
                    row["top_lines"] = entry["extras"]["top_lines"]
            if entry_truth.get("labels") is not None and row["labels"] is None:
                row["labels"] = entry_truth["labels"]
                if entry_truth.get("unassessed"):  # CGT's masked classes, every class of audited code
                    row["unassessed"] = entry_truth["unassessed"]
            if entry_truth.get("behavior") is not None:
                row["behavior"] = entry_truth["behavior"]
        if row["views"]:
            if static is not None and static.get(rid) is not None:
                row["views"][STATIC_VIEW] = static[rid]
            rows.append(row)
    variant_rows = _variant_rows(rows, oof_variant)
    rows += variant_rows
    entries = [
        {"view": mv.view, "model": mv.model, "kind": mv.kind, "features": features[mv.view]} for mv in views
    ]
    if static is not None:
        entries.append(
            {
                "view": STATIC_VIEW,
                "model": STATIC_MODEL,
                "kind": STATIC_KIND,
                "features": _static_names(static),
            }
        )
        missing[STATIC_VIEW] = {
            s: sum(r["split"] == s and STATIC_VIEW not in r["views"] for r in rows) for s in SPLITS
        }
    manifest = {
        "views": entries,
        "test_inputs": "full" if test_members is None else "crossfit_mean",
        "counts": {s: sum(r["split"] == s for r in rows) for s in SPLITS},
        "missing_views": missing,
        "role_conflicts": sum(len(s) > 1 for s in roles_seen.values()),
        "variant_rows": {
            variant: {
                s: sum(r["split"] == s and r["variant"] == variant for r in variant_rows) for s in SPLITS[:2]
            }
            for variant in sorted({v for _, v in oof_variant})
        },
    }
    return rows, manifest


def _variant_oof(
    mv: ModelView,
    variant: str,
    inner: Sequence[StageResult],
    paths: Sequence[Path],
    predicted: Mapping[str, set],
) -> dict[str, dict]:
    """One view's out-of-fold predictions from the ``variant`` build: each fold model must have predicted
    exactly the contracts of its own out-of-fold predictions (so none it trained on)."""
    out: dict[str, dict] = {}
    for r, path in zip(inner, paths, strict=True):
        preds = read_view_predictions(path, mv.kind)
        if set(preds) != predicted[r.name]:
            odd = sorted(set(preds) ^ predicted[r.name])
            raise LeakageError(
                f"{r.name} {variant}: predicted other contracts than its out-of-fold ones, e.g. {odd[:3]}"
            )
        out.update(preds)
    return out


def _variant_rows(rows: Sequence[dict[str, Any]], oof_variant: Mapping[tuple[str, str], dict]) -> list[dict]:
    """Per train/val row and compile variant, a copy whose views from that build replace the row's own; a
    contract the build is missing for (its prediction says no ``compile_variant``) gets none."""
    out = []
    for variant in sorted({v for _, v in oof_variant}):
        built = {view: preds for (view, v), preds in oof_variant.items() if v == variant}
        for row in rows:
            if row["split"] == "test":
                continue
            views = {
                view: preds[rid]["probs"]
                for view, preds in built.items()
                if (rid := row["id"]) in preds and preds[rid]["extras"].get("compile_variant") == variant
            }
            if views:
                out.append(
                    {
                        **row,
                        "id": f"{row['id']}~{variant}",
                        "variant": variant,
                        "views": {**row["views"], **views},
                    }
                )
    return out
