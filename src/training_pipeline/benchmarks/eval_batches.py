"""Evaluation batches sorted by length (``SortedBatchSampler``, the bytecode detector's validation, test and
predict loaders) against batches in dataset order, in one process: the bytecode detector's default network
scores the same contracts in both orders, and the padded positions each computes are counted.

The contracts' lengths are drawn log-uniformly between 200 and 24,576 opcodes (``make train`` reads real
contracts whole at evaluation: EIP-170's limit), in random order, as a validation split holds them; the time
is the median of two passes after a warm-up. The pooled features of both orders are compared too: a contract
scores the same in any batch.
"""

from __future__ import annotations

import math
import random
import statistics
import time

import numpy as np
import torch

from training_pipeline.data.contracts import SortedBatchSampler
from training_pipeline.data.featurizers import pad_sequences
from training_pipeline.models.nets.cnn import BytecodeCNN


def _batches(order: list[list[int]], contracts: list[np.ndarray]) -> list[torch.Tensor]:
    return [pad_sequences([contracts[i] for i in idx]) for idx in order]  # pad id 0, as the collate pads


def _score(net: BytecodeCNN, batches: list[torch.Tensor], order: list[list[int]]) -> dict[int, torch.Tensor]:
    out = {}
    with torch.inference_mode():
        for batch, idx in zip(batches, order, strict=True):
            out |= dict(zip(idx, net(batch), strict=True))
    return out


def run(quick: bool = False) -> dict:
    """Seconds per evaluation pass and padded positions, dataset order vs sorted; their ratios."""
    n, batch_size, longest = (32, 8, 2048) if quick else (128, 32, 24576)
    repeats = 2
    rng = random.Random(0)
    lengths = [int(math.exp(rng.uniform(math.log(200), math.log(longest)))) for _ in range(n)]
    torch.manual_seed(0)
    ids = np.random.default_rng(0)
    contracts = [ids.integers(1, 150, k) for k in lengths]
    net = BytecodeCNN(vocab_size=150, embed_dim=32, channels=96, depth=4, kernel_size=5, pooling="max").eval()
    orders = {
        "dataset_order": [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)],
        "sorted": list(SortedBatchSampler(lengths, batch_size)),
    }
    out: dict = {"contracts": n, "batch_size": batch_size, "opcodes": sum(lengths)}
    scores = {}
    for name, order in orders.items():
        batches = _batches(order, contracts)
        out[f"{name}_padded_positions"] = sum(b.numel() for b in batches)
        scores[name] = _score(net, batches, order)  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            _score(net, batches, order)
            times.append(time.perf_counter() - t)
        out[f"{name}_s"] = round(statistics.median(times), 3)
    out["speedup"] = round(out["dataset_order_s"] / out["sorted_s"], 2)
    out["padding_ratio"] = round(out["dataset_order_padded_positions"] / out["sorted_padded_positions"], 2)
    out["max_abs_diff"] = float(
        max((scores["sorted"][i] - scores["dataset_order"][i]).abs().max() for i in range(n))
    )
    return {"eval_batches": out}
