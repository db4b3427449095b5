"""The CNN's CPU dropout (``MaskDropout``) against ``nn.Dropout``, in one process: forward and backward on one
residual block's activations, and a whole training step of the bytecode detector's CNN with each. Beside
them, the blocks' padding-masked norm (``masked_group_norm``) against ``nn.GroupNorm``, on the same
activations padded as in a length-bucketed training batch (each row 0-12% shorter than the longest).

The sizes are the default model's (96 channels, 4 blocks, kernel 5) on a batch of 64 contracts of 2,048
opcodes (512 positions after the stem's pooling); each time is the median of several repeats after a warm-up.
"""

from __future__ import annotations

import statistics
import time

import torch

from training_pipeline.models.nets.cnn import BytecodeCNN, MaskDropout, masked_group_norm


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def run(quick: bool = False) -> dict:
    """``nn.Dropout`` vs ``MaskDropout`` (p = 0.1): milliseconds for one block's activations (batch x channels
    x length after the stem's pooling, the default model's sizes) and for one CNN training step."""
    batch, length = (16, 1024) if quick else (64, 2048)
    repeats = 3 if quick else 7
    torch.manual_seed(0)
    x = torch.randn(batch, 96, length // 4, requires_grad=True)
    grad = torch.randn_like(x)
    ids = torch.randint(1, 150, (batch, length))
    out: dict[str, float] = {}
    for name, make in (("nn_dropout", torch.nn.Dropout), ("mask_dropout", MaskDropout)):
        drop = make(0.1).train()
        out[f"{name}_fwd_bwd_ms"] = _median_ms(lambda d=drop: d(x).backward(grad), repeats)
        net = BytecodeCNN(vocab_size=150, embed_dim=32, channels=96, depth=4, kernel_size=5)
        for block in net.blocks:
            block.body[3] = make(0.1)
        opt = torch.optim.AdamW(net.parameters())

        def step(net=net, opt=opt) -> None:
            opt.zero_grad(set_to_none=True)
            net(ids).square().mean().backward()
            opt.step()

        out[f"{name}_cnn_step_ms"] = _median_ms(step, repeats)
    positions = x.shape[2]
    mask = torch.ones(batch, 1, positions)
    for row, keep in enumerate(torch.linspace(positions, positions * 0.88, batch).long()):
        mask[row, :, keep:] = 0
    padded = (x.detach() * mask).requires_grad_(True)
    norm = torch.nn.GroupNorm(1, 96)
    out["group_norm_fwd_bwd_ms"] = _median_ms(lambda: norm(padded).backward(grad), repeats)
    out["masked_norm_fwd_bwd_ms"] = _median_ms(
        lambda: masked_group_norm(padded, mask, norm).backward(grad), repeats
    )
    result: dict = {k: round(v, 2) for k, v in out.items()}
    result["shape"] = [batch, 96, length // 4]
    result["dropout_speedup"] = round(out["nn_dropout_fwd_bwd_ms"] / out["mask_dropout_fwd_bwd_ms"], 2)
    result["cnn_step_speedup"] = round(out["nn_dropout_cnn_step_ms"] / out["mask_dropout_cnn_step_ms"], 3)
    result["masked_norm_cost"] = round(out["masked_norm_fwd_bwd_ms"] / out["group_norm_fwd_bwd_ms"], 2)
    return {"dropout": result}
