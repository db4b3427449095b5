"""Line-level localization: token attributions summed per source line, ranked, and scored against
``vulnerable_lines`` (top-k hit rate: is one of the k best-ranked lines a labelled vulnerable line?).

The hit rate is measured for every (contract, true class) pair whose record lists vulnerable lines for that
class, whether or not the model predicted the class: it asks "given the class, does the model look at the
right lines?". Predictions files carry the ranked lines of predicted classes (and of true ones when known).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

TOP_KS = (1, 3)


def line_scores(
    token_scores: torch.Tensor, token_lines: torch.Tensor, reduce: str = "sum"
) -> dict[int, float]:
    """Per 1-based source line, the sum (or max) of its tokens' scores; line 0 (special tokens) is dropped.

    Tokens seen by two overlapping windows count in both, so their lines are not favoured: ``sum`` sums the
    windows' attributions of that token, which estimate the same quantity twice.
    """
    scores, lines = token_scores.flatten().float(), token_lines.flatten().long()
    keep = lines > 0
    scores, lines = scores[keep], lines[keep]
    if not len(lines):
        return {}
    n = int(lines.max()) + 1
    if reduce == "max":
        out = torch.full((n,), float("-inf"), device=scores.device).scatter_reduce(0, lines, scores, "amax")
    elif reduce == "sum":
        out = torch.zeros(n, device=scores.device).index_add_(0, lines, scores)
    else:
        raise ValueError(f"reduce={reduce!r}: expected 'sum' or 'max'")
    present = torch.unique(lines)
    return {int(line): float(out[line]) for line in present}


def rank_lines(scores: Mapping[int, float], top_k: int = 5) -> list[list[float]]:
    """The ``top_k`` lines by score, as ``[line, score]`` pairs (ties: the earlier line first)."""
    best = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]
    return [[line, round(score, 5)] for line, score in best]


def hit_rates(
    ranked: Sequence[Mapping[str, Sequence[Sequence[float]]]],
    truth: Sequence[Mapping[str, Sequence[int]] | None],
    class_names: Sequence[str],
    prefix: str = "test",
    ks: Sequence[int] = TOP_KS,
) -> dict[str, float]:
    """``prefix/loc_top{k}`` over every (contract, class) pair with labelled lines, and per class.

    ``ranked[i][class]`` are contract i's ranked ``[line, score]`` pairs; ``truth[i][class]`` its labelled
    lines. Pairs whose class was not ranked count as misses.
    """
    hits = {k: {c: [] for c in class_names} for k in ks}
    for ranks, lines in zip(ranked, truth, strict=True):
        for cls, true_lines in (lines or {}).items():
            if not true_lines or cls not in class_names:
                continue
            order = [int(r[0]) for r in ranks.get(cls, [])]
            for k in ks:
                hits[k][cls].append(float(bool(set(order[:k]) & set(true_lines))))
    out: dict[str, float] = {}
    for k in ks:
        every = [h for c in class_names for h in hits[k][c]]
        if every:
            out[f"{prefix}/loc_top{k}"] = sum(every) / len(every)
        for c in class_names:
            if hits[k][c]:
                out[f"{prefix}/loc_top{k}/{c}"] = sum(hits[k][c]) / len(hits[k][c])
    if hits[ks[0]]:
        out[f"{prefix}/loc_pairs"] = float(sum(len(v) for v in hits[ks[0]].values()))
    return out
