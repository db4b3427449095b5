"""The LightningModule every model here extends: optimizer and scheduler from config, loss logging, and the
validation/test steps that collect per-row outputs and gather them (across processes) at epoch end.

``optimizer`` and ``scheduler`` are ``_partial_`` Hydra entries (``conf/model/*.yaml``), e.g.
``torch.optim.AdamW`` with ``lr`` and ``weight_decay``; they are not hyperparameters of the checkpoint, so a
module restored for inference needs neither. The scheduler's step counts are filled in here: a scheduler that
takes ``num_training_steps`` (transformers' warm-up schedules) steps every optimizer step, with
``num_training_steps`` from ``trainer.estimated_stepping_batches`` and ``num_warmup_steps`` from the module's
``warmup_ratio``; one that takes ``T_max`` (``CosineAnnealingLR``) steps every epoch over ``max_epochs``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch
from lightning.pytorch import LightningModule

from training_pipeline.errors import ConfigError

OPTIM_KEYS = ["optimizer", "scheduler"]  # passed to save_hyperparameters(ignore=...) by every subclass


class BaseModule(LightningModule):
    """Shared optimization and evaluation; subclasses implement ``training_loss`` and ``eval_step``."""

    log_train_steps = True  # log train/loss per step as well as per epoch

    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self._outputs: dict[str, list[dict[str, Any]]] = {}
        self.gathered: dict[str, dict[str, torch.Tensor]] = {}  # each stage's last rows (retune reads val)

    # -- optimization -------------------------------------------------------------------------------------
    def optimizer_params(self) -> Iterable[Any]:
        """What the optimizer updates (a subclass may return parameter groups)."""
        return self.parameters()

    def build_optimizer(self) -> torch.optim.Optimizer:
        """The configured optimizer over ``optimizer_params()``."""
        if self.optimizer_factory is None:
            raise ConfigError(
                f"{type(self).__name__}: no optimizer (model.optimizer) to train with; "
                "a module loaded from a checkpoint predicts only"
            )
        return self.optimizer_factory(params=self.optimizer_params())

    def configure_optimizers(self) -> Any:
        opt = self.build_optimizer()
        if self.scheduler_factory is None or self._trainer is None:
            return opt
        target = getattr(self.scheduler_factory, "func", self.scheduler_factory)
        params = inspect.signature(target).parameters
        given = getattr(self.scheduler_factory, "keywords", {})
        fill: dict[str, int] = {}
        interval = "step" if "num_training_steps" in params else "epoch"
        if interval == "step":
            total = int(
                given.get("num_training_steps") or max(1, int(self.trainer.estimated_stepping_batches))
            )
            fill["num_training_steps"] = total
            if "num_warmup_steps" in params and "num_warmup_steps" not in given:
                fill["num_warmup_steps"] = max(1, int(total * self.hparams.get("warmup_ratio", 0.0)))
        elif "T_max" in params and "T_max" not in given:
            fill["T_max"] = max(int(self.trainer.max_epochs or 1), 1)
        sched = self.scheduler_factory(opt, **fill)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": interval}}

    # -- steps --------------------------------------------------------------------------------------------
    def batch_size_of(self, batch: dict[str, Any]) -> int:
        """Rows in ``batch`` (for per-epoch averages)."""
        return len(batch["labels"])

    def training_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """The loss to minimize on a training batch."""
        raise NotImplementedError

    def eval_step(self, stage: str, batch: dict[str, Any], batch_idx: int) -> dict[str, Any] | None:
        """Log the stage's loss; return this batch's rows to keep for the epoch end (or None)."""
        raise NotImplementedError

    def log_loss(self, stage: str, loss: torch.Tensor, batch_size: int) -> None:
        """Log ``<stage>/loss`` (per step and epoch in training, per epoch and synced elsewhere)."""
        if stage == "train":
            on_step = self.log_train_steps
            self.log("train/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=batch_size)
        else:
            self.log(
                f"{stage}/loss",
                loss,
                on_epoch=True,
                prog_bar=stage == "val",
                sync_dist=True,
                batch_size=batch_size,
            )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.training_loss(batch)
        self.log_loss("train", loss, self.batch_size_of(batch))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.keep("val", self.eval_step("val", batch, batch_idx))

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.keep("test", self.eval_step("test", batch, batch_idx))

    # -- epoch ends ---------------------------------------------------------------------------------------
    def keep(self, stage: str, rows: dict[str, Any] | None) -> None:
        """Keep a batch's rows (detached) for the stage's epoch end."""
        if rows:
            self._outputs.setdefault(stage, []).append(
                {k: v.detach() if torch.is_tensor(v) else v for k, v in rows.items()}
            )

    def gather(self, stage: str) -> dict[str, torch.Tensor]:
        """The stage's kept rows, concatenated (and over every process); {} when none were kept."""
        outs = self._outputs.pop(stage, [])
        if not outs:
            return {}
        data = {k: torch.cat([o[k] for o in outs]) for k in outs[0] if torch.is_tensor(outs[0][k])}
        if self._trainer is not None and self.trainer.world_size > 1:
            data = {k: self._all_gather_rows(v) for k, v in data.items()}
        self.gathered[stage] = data
        return data

    def _all_gather_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate a tensor of any length over ranks (padded to the longest for all_gather)."""
        sizes = self.all_gather(torch.tensor([len(x)], device=x.device)).flatten()
        padded = torch.zeros((int(sizes.max()), *x.shape[1:]), dtype=x.dtype, device=x.device)
        padded[: len(x)] = x
        gathered = self.all_gather(padded)
        return torch.cat([gathered[r, : int(s)] for r, s in enumerate(sizes)])
