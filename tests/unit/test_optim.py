"""Optimizer and scheduler come from the model config; the shared base fills in the step counts."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from training_pipeline.errors import ConfigError
from training_pipeline.models.base import BaseModule

CONF = Path(__file__).resolve().parents[2] / "src" / "training_pipeline" / "conf" / "model"


class Tiny(BaseModule):
    def __init__(self, optimizer=None, scheduler=None, warmup_ratio: float = 0.0) -> None:
        super().__init__(optimizer, scheduler)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.layer = torch.nn.Linear(2, 1)
        self.lrs: list[float] = []

    def training_loss(self, batch):
        return self.layer(batch["x"]).pow(2).mean()

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])


def fit(model: Tiny, epochs: int, batches: int = 4) -> Tiny:
    data = [{"x": torch.randn(3, 2), "labels": torch.zeros(3)} for _ in range(batches)]
    trainer = L.Trainer(
        max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(model, train_dataloaders=DataLoader(data, batch_size=None))
    return model


def model_optim(name: str) -> dict:
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    cfg = cfg.get("model", cfg)
    return {k: instantiate(cfg[k]) for k in ("optimizer", "scheduler")}


def test_epoch_cosine_from_config_keeps_the_old_curve() -> None:
    """CosineAnnealingLR over max_epochs down to 5% of lr: the schedule the models had before."""
    model = fit(Tiny(**model_optim("bytecode_detector")), epochs=4)
    per_epoch = model.lrs[::4]
    expected = [1e-4 + (2e-3 - 1e-4) * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    assert per_epoch == pytest.approx(expected, rel=1e-6)
    assert "optimizer" not in model.hparams and "scheduler" not in model.hparams


def test_step_schedule_warms_up_over_warmup_ratio_of_the_steps() -> None:
    """transformers' warm-up cosine: from 0 over ``warmup_ratio`` of the steps, then down to 5% of lr."""
    model = fit(Tiny(**model_optim("code_analyzer"), warmup_ratio=0.25), epochs=2)  # 8 steps, 2 of warm-up
    assert model.lrs[:3] == pytest.approx([0.0, 0.5e-3, 1e-3])
    progress = [(s - 2) / 6 for s in range(2, 8)]
    assert model.lrs[2:] == pytest.approx(
        [1e-3 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p))) for p in progress]
    )


def test_a_module_without_optimizer_refuses_to_train() -> None:
    with pytest.raises(ConfigError, match="model.optimizer"):
        Tiny().configure_optimizers()
