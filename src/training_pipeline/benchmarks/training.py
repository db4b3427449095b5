"""The cost of Lightning + Hydra: the same network trained on the same batches by a plain PyTorch loop.

Both sides train the BytecodeDetector built from the composed default config, on one fixed list of collated
batches, for the same number of epochs; the first epoch of each is a warm-up and is not timed.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import torch
from hydra.utils import instantiate
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

from training_pipeline.config import compose_config, project_root


class _EpochTimer(Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.times.append(time.perf_counter() - self._t)


def _setup(data_dir: str, n_contracts: int, overrides: list[str]):
    cfg = compose_config(
        "train.yaml",
        [f"paths.data_dir={data_dir}", f"data.corpus.n_contracts={n_contracts}", *overrides],
    )
    dm = instantiate(cfg.data, _convert_="all")
    dm.prepare_data()
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    return cfg, dm, batches


def _model(cfg, dm):
    torch.manual_seed(0)
    return instantiate(cfg.model, _convert_="all", **dm.model_kwargs())


def plain_loop(model, batches, epochs: int) -> list[float]:
    """What Lightning does for us, written out: AdamW, forward, loss, backward, clip, step."""
    opt = model.build_optimizer()
    model.train()
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        for batch in batches:
            loss = model.training_loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        times.append(time.perf_counter() - t)
    return times


def lightning_loop(model, batches, epochs: int, out_dir: str) -> list[float]:
    """Trainer as the default config runs it (TensorBoard, step logging, grad clipping), no validation."""
    model.configure_optimizers = model.build_optimizer  # same optimizer, no scheduler, as the plain loop
    timer = _EpochTimer()
    trainer = Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=TensorBoardLogger(out_dir),
        callbacks=[timer],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        gradient_clip_val=1.0,
        log_every_n_steps=10,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, train_dataloaders=DataLoader(batches, batch_size=None, shuffle=False))
    return timer.times


def run(
    quick: bool = False,
    data_dir: str | None = None,
    n_contracts: int | None = None,
    overrides: tuple[str, ...] = (),
) -> dict:
    """Median epoch time of each loop; ``data_dir`` reuses a built corpus (default: the project's data/)."""
    epochs = 3
    n_contracts = n_contracts or (120 if quick else 1500)  # 1500: the default corpus (built by make train)
    with tempfile.TemporaryDirectory() as tmp:
        cfg, dm, batches = _setup(data_dir or str(project_root() / "data"), n_contracts, list(overrides))
        batches = batches[: 6 if quick else 16]
        samples = sum(len(b["labels"]) for b in batches)
        torch.set_num_threads(max(1, torch.get_num_threads()))
        # Alternate the two so drift in machine load hits both sides alike.
        plain, light = [], []
        for _ in range(2):
            plain += plain_loop(_model(cfg, dm), batches, epochs)[1:]
            light += lightning_loop(_model(cfg, dm), batches, epochs, tmp)[1:]
    plain_sps = samples / statistics.median(plain)
    light_sps = samples / statistics.median(light)
    return {
        "training": {
            "batches_per_epoch": len(batches),
            "samples_per_epoch": samples,
            "timed_epochs_each": len(plain),
            "plain_pytorch_samples_per_s": round(plain_sps, 1),
            "lightning_samples_per_s": round(light_sps, 1),
            "lightning_slowdown": round(plain_sps / light_sps - 1, 4),  # 0.05 = Lightning 5% slower
        }
    }
