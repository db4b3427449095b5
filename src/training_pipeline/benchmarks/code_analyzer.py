"""Code analyzer throughput: BPE training, tokenization (uncached vs cached) and training steps.

Records come from an interchange file (``BENCH_RECORDS=contracts.jsonl`` or ``--records``; no Node.js needed,
e.g. on a GPU machine), else from the default generated corpus (full mode) or synthetic source-only contracts
(quick mode). Training runs on CUDA with bf16 autocast when a GPU is present (as ``trainer=gpu``), else on
CPU.

python scripts/benchmark.py --only code_analyzer [--quick]
BENCH_RECORDS=contracts.parquet python scripts/benchmark.py --only code_analyzer
python -m training_pipeline.benchmarks.code_analyzer --records contracts.jsonl --steps 30
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra.utils import instantiate

from training_pipeline.config import compose_config, project_root
from training_pipeline.data.bpe import cached_bpe
from training_pipeline.data.records import write_records
from training_pipeline.data.source import tokenize_sources


def synthetic_records(n: int, seed: int = 0) -> list[dict]:
    """Source-only contracts of ~60–150 lines with one telltale statement per label (quick mode)."""
    bugs = {
        "reentrancy": "require(msg.sender.call.value(amount)());",
        "time_manipulation": "require(now > deadline);",
        "bad_randomness": "uint pick = uint(keccak256(block.timestamp)) % size;",
        "arithmetic": "balances[to] = balances[to] + amount;",
    }
    rng = random.Random(seed)
    records = []
    for i in range(n):
        labels = [] if i % 3 == 0 else [rng.choice(sorted(bugs))]
        lines = ["pragma solidity ^0.4.24;", f"contract C{i} {{", "mapping(address => uint) balances;"]
        vuln = {}
        funcs = labels + [None] * rng.randint(8, 20)
        rng.shuffle(funcs)
        for k, bug in enumerate(funcs):
            lines += [f"function f{k}(uint amount, uint deadline, uint size, address to) public {{"]
            lines += [f"uint x{k} = amount * {rng.randint(2, 99)};", f"balances[msg.sender] -= x{k};"]
            if bug:
                lines.append(bugs[bug])
                vuln[bug] = [len(lines)]
            lines.append("}")
        lines.append("}")
        records.append(
            {
                "id": f"syn-{i}",
                "source_code": "\n".join(lines) + "\n",
                "bytecode": None,
                "labels": labels,
                "vulnerable_lines": vuln or None,
                "family": ["vault", "lottery", "auction"][i % 3],
                "fold": i % 5,
            }
        )
    return records


def _datamodule(records_path: str | None, data_dir: str, n_contracts: int, overrides: list[str]):
    base = [f"paths.data_dir={data_dir}", "model=code_analyzer"]
    base += [f"data.path={records_path}"] if records_path else [f"data.corpus.n_contracts={n_contracts}"]
    cfg = compose_config("train.yaml", [*base, *overrides])
    return cfg, instantiate(cfg.data, _convert_="all")


def tokenization(dm) -> dict:
    """BPE training on the train split, then every source tokenized with and without the on-disk cache
    (below 200 contracts, num_proc > 1 still runs in-process: forking would cost more)."""

    records, names = dm.load_records()
    dm.records, dm.split_of = records, names
    train = [records[i] for i in dm.indices("train")]
    ids, sources = [r["id"] for r in records], [r["source_code"] for r in records]
    out: dict = {"contracts": len(records)}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        tok = cached_bpe(
            [r["source_code"] for r in train],
            [r["id"] for r in train],
            "bench",
            dm.tokenizer_cfg,
            Path(tmp) / "tok",
        )
        out["bpe_train_seconds"] = round(time.perf_counter() - t, 3)
        out["bpe_train_contracts"] = len(train)
        out["vocab_size"] = tok.vocab_size
        tokenize_sources(ids[:32], sources[:32], tok, None, 1)  # warm-up: first calls pay for imports
        for procs in sorted({1, dm.num_proc}):
            t = time.perf_counter()
            tok_ids, _ = tokenize_sources(ids, sources, tok, None, procs)
            out[f"uncached_contracts_per_s_num_proc_{procs}"] = round(len(ids) / (time.perf_counter() - t), 1)
        cache = Path(tmp) / "tokenized"
        tokenize_sources(ids, sources, tok, cache, dm.num_proc)  # fills the cache
        t = time.perf_counter()
        tokenize_sources(ids, sources, tok, cache, dm.num_proc)
        out["cached_contracts_per_s"] = round(len(ids) / (time.perf_counter() - t), 1)
    out["tokens_per_contract_mean"] = round(sum(map(len, tok_ids)) / len(tok_ids), 1)
    return out


def training(cfg, dm, steps: int, warmup: int = 2) -> dict:
    """Optimizer steps on real batches (forward, loss, backward, clip, AdamW): samples and tokens a second."""
    dm.records, dm.split_of = [], []
    dm.prepare_data()
    dm.setup("fit")
    torch.manual_seed(0)
    model = instantiate(cfg.model, _convert_="all", **dm.model_kwargs())
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    model.to(device).train()
    opt = model.optimizer_factory(params=model.parameters(), weight_decay=0.0)
    batches = []
    for b in dm.train_dataloader():
        batches.append(b)
        if len(batches) >= steps + warmup:
            break
    times, samples, tokens, padded = [], 0, 0, 0
    for i, batch in enumerate(batches):
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = model.training_loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
            samples += len(batch["labels"])
            tokens += int(batch["attention_mask"].sum())
            padded += batch["attention_mask"].numel()
    total = sum(times)
    return {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "precision": "bf16-mixed" if cuda else "32-true",
        "torch_threads": torch.get_num_threads(),
        "timed_steps": len(times),
        "median_step_s": round(statistics.median(times), 4) if times else None,
        "samples_per_s": round(samples / total, 2) if total else None,
        "tokens_per_s": round(tokens / total, 1) if total else None,
        "padded_tokens_per_s": round(padded / total, 1) if total else None,
        "params": sum(p.numel() for p in model.parameters()),
        "window_size": dm.window_cfg.size,
        "hidden_size": model.encoder.config.hidden_size,
        "num_layers": model.encoder.config.num_hidden_layers,
    }


def run(
    quick: bool = False,
    records: str | None = None,
    data_dir: str | None = None,
    n_contracts: int | None = None,
    steps: int | None = None,
    overrides: tuple[str, ...] = (),
) -> dict:
    records = records or os.environ.get("BENCH_RECORDS") or None
    with tempfile.TemporaryDirectory() as tmp:
        source = records or f"generated corpus ({n_contracts or 1500} contracts)"
        if records is None and quick:
            records = str(write_records(synthetic_records(n_contracts or 120), Path(tmp) / "synthetic.jsonl"))
            source = f"synthetic ({n_contracts or 120} contracts)"
        # the generated corpus lives in the project's data/ (built once, then reused); a file needs no cache
        data_dir = data_dir or str(project_root() / "data" if records is None else Path(tmp) / "data")
        cfg, dm = _datamodule(records, data_dir, n_contracts or 1500, list(overrides))
        tok = tokenization(dm)
        train = training(cfg, dm, steps or (4 if quick else 20))
    return {"code_analyzer": {"records": source, "tokenization": tok, "training": train}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", help="contract interchange file (JSONL/parquet) with source_code")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model.num_layers=4")
    args = parser.parse_args(argv)
    out = run(quick=args.quick, records=args.records, steps=args.steps, overrides=tuple(args.overrides))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
