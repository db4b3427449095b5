"""Throughput of the behavior model's pipeline: simulating histories, featurizing them, training, inference.

The model is the default config's BehaviorModel; training is timed on a fixed list of collated batches with a
plain loop (forward, loss, backward, clip, AdamW step), the first epoch a warm-up; inference runs in eval mode
without gradients over the validation split.
"""

from __future__ import annotations

import statistics
import time

import torch
from hydra.utils import instantiate

from training_pipeline.benchmarks.training import plain_loop
from training_pipeline.config import compose_config, project_root
from training_pipeline.corpus import txsim
from training_pipeline.corpus.build import CorpusConfig


def _compose(data_dir: str, n_contracts: int, overrides: list[str]):
    return compose_config(
        "train.yaml",
        [
            "model=behavior_model",
            f"paths.data_dir={data_dir}",
            f"data.corpus.n_contracts={n_contracts}",
            *overrides,
        ],
    )


def run(
    quick: bool = False,
    data_dir: str | None = None,
    n_contracts: int | None = None,
    overrides: tuple[str, ...] = (),
) -> dict:
    """Histories/s and transactions/s of each stage; ``data_dir`` reuses stored histories (default: data/)."""
    n_contracts = n_contracts or (60 if quick else 1500)  # 1500: the default behavior data
    cfg = _compose(data_dir or str(project_root() / "data"), n_contracts, list(overrides))
    sim = min(n_contracts, 20 if quick else 300)  # the simulator alone, on the first contracts
    records = txsim.corpus_records(CorpusConfig(**{**cfg.data.corpus, "n_contracts": max(sim, 10)}))
    start = time.perf_counter()
    histories = txsim.simulate_histories(records, txsim.SimConfig(**cfg.data.sim))
    sim_s = time.perf_counter() - start
    sim_tx = sum(len(h["timestamp"]) for h in histories)

    dm = instantiate(cfg.data, _convert_="all")
    dm.prepare_data()  # builds or reuses the stored histories: not timed
    start = time.perf_counter()
    dm.setup("fit")
    setup_s = time.perf_counter() - start

    torch.manual_seed(0)
    model = instantiate(cfg.model, _convert_="all", **dm.model_kwargs())
    batches = list(dm.train_dataloader())[: 4 if quick else 16]
    samples = sum(len(b["labels"]) for b in batches)
    transactions = int(sum(b["mask"].sum() for b in batches))
    times = plain_loop(model, batches, 2 if quick else 3)  # the first epoch is a warm-up
    train_s = statistics.median(times[1:])

    model.eval()
    val = list(dm.val_dataloader())[: 4 if quick else None]
    start = time.perf_counter()
    with torch.no_grad():
        for batch in val:
            model(batch)
    infer_s = time.perf_counter() - start
    infer_n = sum(len(b["labels"]) for b in val)
    return {
        "behavior": {
            "encoder": cfg.model.encoder,
            "simulate_histories_per_s": round(len(histories) / sim_s, 1),
            "simulate_transactions_per_s": round(sim_tx / sim_s, 1),
            "featurize_histories_per_s": round(len(dm.records) / setup_s, 1),
            "train_batches_per_epoch": len(batches),
            "train_histories_per_s": round(samples / train_s, 1),
            "train_transactions_per_s": round(transactions / train_s, 1),
            "inference_histories_per_s": round(infer_n / infer_s, 1),
            "torch_threads": torch.get_num_threads(),
        }
    }
