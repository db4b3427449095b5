"""Multi-label metrics shared by every classifier: F1 (macro, micro, per class), P/R, AUROC, AUPRC.

Macro averages run over the classes the model was trained on that also occur in the evaluated split: a
class with no training example cannot be predicted, and a class with no example in the split has no
recall, so either would only drag the average towards zero (AUROC/AUPRC also skip a class without a
negative). False alarms on absent classes still count in micro-F1 and in the per-class precision of the
classes that are present.

Partially labelled data passes a ``mask`` (same shape as the targets, 1 = assessed): every metric and the
threshold tuning then count a class only over the contracts where it was assessed (torchmetrics'
``ignore_index`` on the unassessed entries). Without a mask, or with a full one, nothing changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAUROC,
    BinaryAveragePrecision,
    MultilabelAUROC,
    MultilabelAveragePrecision,
    MultilabelF1Score,
    MultilabelPrecision,
    MultilabelRecall,
)
from torchmetrics.functional.classification import multilabel_stat_scores

from training_pipeline.errors import ConfigError

THRESHOLD_GRID = torch.linspace(0.05, 0.95, 19)
IGNORE = -1  # target value of an unassessed entry


def masked_targets(targets: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, int | None]:
    """Integer targets with unassessed entries set to ``IGNORE``, and the ``ignore_index`` to pass
    (None, targets untouched, when every entry is assessed)."""
    if mask is None or bool(mask.all()):
        return targets.long(), None
    return torch.where(mask > 0.5, targets.long(), torch.full_like(targets.long(), IGNORE)), IGNORE


def multilabel_metrics(num_labels: int, ignore_index: int | None = None) -> MetricCollection:
    """Metrics on binarized predictions (per-class thresholds are applied before update)."""
    kw = {"num_labels": num_labels, "threshold": 0.5, "zero_division": 0, "ignore_index": ignore_index}
    return MetricCollection(
        {
            "f1_macro": MultilabelF1Score(average="macro", **kw),
            "f1_micro": MultilabelF1Score(average="micro", **kw),
            "precision_macro": MultilabelPrecision(average="macro", **kw),
            "recall_macro": MultilabelRecall(average="macro", **kw),
            "f1": MultilabelF1Score(average="none", **kw),
            "precision": MultilabelPrecision(average="none", **kw),
            "recall": MultilabelRecall(average="none", **kw),
        }
    )


def ranking_metrics(num_labels: int, ignore_index: int | None = None) -> MetricCollection:
    """Threshold-free metrics on probabilities."""
    kw = {"num_labels": num_labels, "average": "macro", "ignore_index": ignore_index}
    return MetricCollection({"auroc": MultilabelAUROC(**kw), "auprc": MultilabelAveragePrecision(**kw)})


MIN_TUNING_COUNT = 5  # assessed positives AND negatives a class needs in validation to get its own threshold
FlagBudget = float | Mapping[str, float] | None


def class_flag_budgets(budget: FlagBudget, class_names: Sequence[str]) -> torch.Tensor | None:
    """A false-alarm budget (``model.max_audited_flag_rate``) as a rate per class: a number is every class's;
    a mapping names classes, and ``default`` covers those it does not name (without it they have no budget),
    e.g. ``{default: 0.02, time_manipulation: 0.10}``. An unknown class or a rate outside [0, 1] is a
    ConfigError naming it."""
    if budget is None:
        return None
    names = list(class_names)
    if isinstance(budget, Mapping):
        unknown = sorted(str(k) for k in budget if k != "default" and k not in names)
        if unknown:
            raise ConfigError(
                f"model.max_audited_flag_rate: unknown class {', '.join(unknown)} (expected default or one "
                f"of {', '.join(names)})"
            )
        rest = budget.get("default")
        rates = [budget.get(c, rest) for c in names]
    else:
        rates = [budget] * len(names)
    values = []
    for r in rates:
        try:
            value = float("inf") if r is None else float(r)
        except (TypeError, ValueError):
            value = float("nan")
        if value != float("inf") and not 0.0 <= value <= 1.0:
            raise ConfigError(f"model.max_audited_flag_rate={budget}: expected rates in [0, 1], got {r!r}")
        values.append(value)
    return torch.tensor(values)


def tune_thresholds(
    probs: torch.Tensor,
    targets: torch.Tensor,
    default: float = 0.5,
    mask: torch.Tensor | None = None,
    min_count: int = MIN_TUNING_COUNT,
    max_flag_rate: float | torch.Tensor | None = None,
    max_flagged_share: float | None = None,
    beta: float = 1.0,
) -> torch.Tensor:
    """Per-class threshold maximizing F1 on (validation) data over assessed entries (``mask``); ``default``
    for classes with fewer than ``min_count`` assessed positives or assessed negatives. Without negatives F1
    is best at the lowest threshold, which flags every contract (CGT assesses time manipulation on 121
    contracts, 120 of them positive): such a class keeps the default.

    ``max_flag_rate``: a false-alarm budget. Rows that assess no class at all (audited code without labels)
    may be flagged for a class at most at this rate: the threshold is the best-F1 one among those within
    budget (or, for an untuned class, the default raised until within it; the grid's top when none is). A
    tensor gives each class its own rate (``class_flag_budgets``; ``inf``: no budget for that class).

    ``max_flagged_share``: a budget on the share of those rows flagged for *any* class, spent where it buys
    the most F1 (``spend_flag_budget``) instead of the same rate for every class.

    ``beta``: maximize F-beta instead (``fbeta_per_class``); above 1 a missed flaw costs more than a false
    alarm, so thresholds fall until the budgets stop them. Checked by ``check_threshold_beta``.
    """
    grid = THRESHOLD_GRID.to(probs.device)
    f1 = torch.stack([fbeta_per_class(probs >= t, targets, mask, beta) for t in grid])  # (T, C)
    assessed = torch.ones_like(targets) if mask is None else mask
    audited = assessed.sum(1) == 0
    within = torch.ones_like(f1, dtype=torch.bool)
    if max_flag_rate is not None and audited.any():
        within = _within_budget(probs[audited], max_flag_rate)
    best = grid[torch.where(within, f1, torch.full_like(f1, -1.0)).argmax(0)]
    enough = _enough_to_tune(targets, assessed, min_count)
    # an untuned class: the default, or the lowest threshold within budget if that is higher
    lowest_within = grid[within.float().argmax(0)]
    fallback = torch.maximum(torch.full_like(best, default), lowest_within)
    tuned = torch.where(enough, best, fallback)
    if max_flagged_share is not None and audited.any():
        tuned = spend_flag_budget(probs[audited], f1, enough, tuned, max_flagged_share)
    return tuned


def _within_budget(audited_probs: torch.Tensor, max_flag_rate: float | torch.Tensor) -> torch.Tensor:
    """(T, C): whether each grid threshold flags at most the budget's share of the audited rows, per class;
    a class that no threshold keeps within budget gets the grid's top."""
    grid = THRESHOLD_GRID.to(audited_probs.device)
    rates = torch.stack([(audited_probs >= t).float().mean(0) for t in grid])  # (T, C)
    limit = max_flag_rate.to(rates) if isinstance(max_flag_rate, torch.Tensor) else max_flag_rate
    within = rates <= limit
    within[-1] |= ~within.any(0)
    return within


def _enough_to_tune(targets: torch.Tensor, assessed: torch.Tensor, min_count: int) -> torch.Tensor:
    """(C,): classes with at least ``min_count`` assessed positives and as many assessed negatives."""
    positives = (targets * assessed).sum(0)
    negatives = ((1 - targets) * assessed).sum(0)
    return (positives >= min_count) & (negatives >= min_count)


def era_groups(eras: torch.Tensor, bounds: torch.Tensor) -> torch.Tensor:
    """Each row's era group: 0 below ``bounds[0]`` (and for an unknown era, code -1), g for eras at or above
    ``bounds[g - 1]`` and below ``bounds[g]`` (``bounds``: ascending ``data.contracts.era_code`` values)."""
    return torch.bucketize(eras, bounds.to(eras.device), right=True)


def cap_flags(probs: torch.Tensor, thresholds: torch.Tensor, capped: torch.Tensor, k: int) -> torch.Tensor:
    """(n, C) thresholds under which each ``capped`` row (bool (n,)) flags at most ``k`` classes: the ones
    furthest above their thresholds in log-odds keep them (a tie: the lower class index), the row's other
    classes get +inf. Other rows keep ``thresholds``. A contract of code where real contracts nearly always
    carry one class names its likeliest one rather than several."""
    out = thresholds.expand_as(probs).clone()
    if not capped.any():
        return out
    eps = 1e-6
    margin = torch.logit(probs.clamp(eps, 1 - eps)) - torch.logit(out.clamp(eps, 1 - eps))
    flagged = probs >= out
    order = margin.masked_fill(~flagged, -torch.inf).argsort(dim=1, descending=True, stable=True)
    places = torch.arange(probs.shape[1], device=probs.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, places)  # each class's place in its row's order
    out[capped[:, None] & flagged & (rank >= k)] = torch.inf
    return out


def tune_era_thresholds(
    probs: torch.Tensor,
    targets: torch.Tensor,
    eras: torch.Tensor,
    bounds: torch.Tensor,
    base: torch.Tensor,
    mask: torch.Tensor | None = None,
    min_count: int = MIN_TUNING_COUNT,
    max_flag_rate: float | torch.Tensor | None = None,
    beta: float = 1.0,
) -> torch.Tensor:
    """(G, C) thresholds for code of the compiler eras at or above each of ``bounds`` (``era_groups``);
    ``base`` (C,), tuned on every row (``tune_thresholds``), stays for older and unknown eras.

    Real labelled contracts are nearly all of one era (CGT: 95% compiled by 0.4), and a model's probabilities
    differ in level between eras. A group's class is tuned like ``tune_thresholds`` on the group's own rows
    where they hold ``min_count`` assessed positives and negatives; where they do not (F1 cannot be measured
    there), it takes the lowest threshold that keeps the false-alarm budget on the group's audited rows,
    never above ``base``: the most flaws the budget allows, with no more false alarms than the budget on
    that era's audited code. A group without audited rows, or a class without a budget, keeps ``base``."""
    out = base.expand(len(bounds), -1).clone()
    if max_flag_rate is None:
        return out
    limit = torch.as_tensor(max_flag_rate, dtype=probs.dtype, device=probs.device).expand_as(base)
    budgeted = torch.isfinite(limit)  # class_flag_budgets: inf where a mapping gives a class no budget
    assessed = torch.ones_like(targets) if mask is None else mask
    audited = assessed.sum(1) == 0
    groups = era_groups(eras, bounds)
    grid = THRESHOLD_GRID.to(probs.device)
    for g in range(1, len(bounds) + 1):
        rows = groups == g
        if not (rows & audited).any():
            continue
        lowest = grid[_within_budget(probs[rows & audited], max_flag_rate).float().argmax(0)]
        own = tune_thresholds(
            probs[rows], targets[rows], mask=assessed[rows], min_count=min_count,
            max_flag_rate=max_flag_rate, beta=beta,
        )  # fmt: skip
        enough = _enough_to_tune(targets[rows], assessed[rows], min_count)
        lowered = torch.where(budgeted, torch.minimum(base, lowest), base)
        out[g - 1] = torch.where(enough, own, lowered)
    return out


def spend_flag_budget(
    audited_probs: torch.Tensor,
    f1: torch.Tensor,
    tuned: torch.Tensor,
    thresholds: torch.Tensor,
    max_share: float,
) -> torch.Tensor:
    """Raise thresholds along ``THRESHOLD_GRID`` until at most ``max_share`` of the audited rows are flagged
    for any class. Each step raises the class whose next grid step costs the least validation F1 (``f1``:
    (T, C) per threshold) per share of audited rows it unflags; a class without its own threshold (``tuned``
    False) costs nothing, so it goes first. Stops at the grid's top."""
    grid = THRESHOLD_GRID.to(audited_probs.device)
    idx = torch.searchsorted(grid, thresholds.clamp(max=float(grid[-1])) - 1e-6)
    thr = grid[idx]

    def share(t: torch.Tensor) -> float:
        return int((audited_probs >= t).any(1).sum()) / len(audited_probs)  # exact: 4/20 is not above 0.2

    floor = 1.0 / (10 * len(audited_probs))  # a step that unflags no row still counts a little
    current = share(thr)
    while current > max_share:
        best_cost, best_c, best_share = float("inf"), -1, current
        for c in range(len(thr)):
            if idx[c] >= len(grid) - 1 or not bool((audited_probs[:, c] >= thr[c]).any()):
                continue
            raised = thr.clone()
            raised[c] = grid[idx[c] + 1]
            after = share(raised)
            loss = float(f1[idx[c], c] - f1[idx[c] + 1, c]) if bool(tuned[c]) else 0.0
            cost = max(loss, 0.0) / max(current - after, floor)
            if cost < best_cost:
                best_cost, best_c, best_share = cost, c, after
        if best_c < 0:
            break  # every class at the grid's top (or flagging no audited row): as low as it goes
        idx[best_c] += 1
        thr[best_c] = grid[idx[best_c]]
        current = best_share
    return thr


def flag_summary(
    probs: torch.Tensor, targets: torch.Tensor, thresholds: torch.Tensor, mask: torch.Tensor | None = None
) -> dict[str, float | int]:
    """What thresholds do on labelled data. Over the rows that assess some class: the share of their known
    vulnerabilities flagged (``recall``), of the contracts with one that get a right flag
    (``contract_recall``), and the wrong-class flags per contract. Over the rows that assess none (audited
    code): the share flagged for any class (``audited_flagged``). What a false-alarm budget trades."""
    assessed = torch.ones_like(targets) if mask is None else mask
    flags = (probs >= thresholds).float()
    audited = assessed.sum(1) == 0
    rated = ~audited
    pos = targets * assessed
    hit = (flags * pos)[rated]
    vulnerable = pos[rated].sum(1) > 0
    return {
        "rows": int(rated.sum()),
        "audited_rows": int(audited.sum()),
        "recall": float(hit.sum() / pos[rated].sum().clamp(min=1)),
        "contract_recall": float((hit.sum(1) > 0)[vulnerable].float().mean()) if vulnerable.any() else 0.0,
        "wrong_flags_per_contract": float((flags * (1 - targets) * assessed)[rated].sum(1).mean())
        if rated.any()
        else 0.0,
        "audited_flagged": float((flags[audited].sum(1) > 0).float().mean()) if audited.any() else 0.0,
    }


def f1_per_class(
    preds: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """(C,) F1 = 2 TP / (2 TP + FP + FN) of binarized ``preds`` over assessed entries (0 where a class has no
    TP, FP nor FN)."""
    return fbeta_per_class(preds, targets, mask, 1.0)


def fbeta_per_class(
    preds: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None, beta: float = 1.0
) -> torch.Tensor:
    """(C,) F-beta = (1 + b²) TP / ((1 + b²) TP + b² FN + FP) of binarized ``preds`` over assessed entries
    (0 where a class has no TP, FP nor FN); beta 1 is F1, beta 2 weighs recall four times as much as
    precision."""
    if not len(preds):
        return torch.zeros(preds.shape[1], device=preds.device)
    target, ignore = masked_targets(targets, mask)
    # binarized before torchmetrics (its own threshold is strict ``>``, ours is ``>=``)
    stats = multilabel_stat_scores(
        preds.long(), target, preds.shape[1], average=None, ignore_index=ignore
    ).float()
    tp, fp, fn = stats[:, 0], stats[:, 1], stats[:, 3]
    b2 = beta * beta
    return (1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp).clamp(min=1)


def check_threshold_beta(beta: Any) -> float:
    """``model.threshold_beta``: a number > 0 (1: thresholds maximize F1)."""
    if isinstance(beta, bool) or not isinstance(beta, int | float) or not beta > 0:
        raise ConfigError(f"model.threshold_beta={beta!r}: expected a number > 0 (1 = F1)")
    return float(beta)


def flatten(prefix: str, values: dict[str, torch.Tensor], class_names: list[str]) -> dict[str, float]:
    """Scalar metrics as ``prefix/name``; per-class vectors as ``prefix/name/<class>``."""
    out: dict[str, float] = {}
    for name, value in values.items():
        if value.ndim == 0:
            out[f"{prefix}/{name}"] = float(value)
        else:
            out.update({f"{prefix}/{name}/{c}": float(v) for c, v in zip(class_names, value, strict=True)})
    return out


def evaluate_multilabel(
    stage: str,
    probs: torch.Tensor,
    targets: torch.Tensor,
    thresholds: torch.Tensor,
    class_names: list[str],
    candidates: list[int],
    mask: torch.Tensor | None = None,
) -> dict[str, float]:
    """All metrics of one epoch, named ``stage/...``: micro-F1 over every candidate (trained) class, the rest
    over the candidates with an assessed positive in ``targets``; unassessed entries (``mask`` 0) never
    count."""
    preds = (probs >= thresholds).long()
    target, ignore = masked_targets(targets, mask)
    cand = torch.tensor(candidates, device=probs.device)
    micro = MultilabelF1Score(
        num_labels=len(candidates), average="micro", zero_division=0, ignore_index=ignore
    ).to(probs.device)
    values = {f"{stage}/f1_micro": float(micro(preds[:, cand], target[:, cand]))}
    idx = cand[(target[:, cand] == 1).sum(0) > 0]
    if len(idx) < 2:  # torchmetrics' multilabel metrics need two labels
        idx = cand
    names = [class_names[i] for i in idx.tolist()]
    per_class = multilabel_metrics(len(names), ignore).to(probs.device)
    per_class.update(preds[:, idx].float(), target[:, idx])
    values.update(flatten(stage, {k: v for k, v in per_class.compute().items() if k != "f1_micro"}, names))
    if len(probs):
        # AUROC/AUPRC need both outcomes: a class without an assessed negative (CGT's time_manipulation)
        # would score 0 and drag the average down; fully assessed data always has both
        ranked = idx[(target[:, idx] == 0).sum(0) > 0]
        if len(ranked) == 1:  # torchmetrics' multilabel curves need two labels: the binary ones then
            kw = {"ignore_index": ignore}
            rank = MetricCollection({"auroc": BinaryAUROC(**kw), "auprc": BinaryAveragePrecision(**kw)})
        else:
            ranked = ranked if len(ranked) >= 2 else idx
            rank = ranking_metrics(len(ranked), ignore)
        col = ranked if len(ranked) > 1 else ranked[0]
        rank = rank.to(probs.device)
        rank.update(probs[:, col], target[:, col])
        values.update(flatten(stage, rank.compute(), [class_names[i] for i in ranked.tolist()]))
    return values
