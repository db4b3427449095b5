"""Training callbacks of our own: system metrics beside the model's metrics."""

from __future__ import annotations

import time

import psutil
import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class SystemMonitor(Callback):
    """Logs time per epoch, samples per second, CPU utilization, process memory and, on CUDA, GPU figures.

    Lightning's DeviceStatsMonitor reports nothing useful on the CPU accelerator, hence this small callback.
    """

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._epoch_start = 0.0
        self._samples = 0

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._process.cpu_percent(None)  # starts the measurement interval
        psutil.cpu_percent(None)
        self._samples = 0
        if torch.cuda.is_available() and pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx
    ) -> None:
        self._samples += int(batch["labels"].shape[0]) if isinstance(batch, dict) and "labels" in batch else 0

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        seconds = time.perf_counter() - self._epoch_start
        stats = {
            "perf/epoch_time_s": seconds,
            "perf/train_samples_per_s": self._samples / seconds if seconds > 0 else 0.0,
            "system/cpu_percent": psutil.cpu_percent(None),
            "system/process_cpu_percent": self._process.cpu_percent(None),
            "system/process_rss_mb": self._process.memory_info().rss / 2**20,
        }
        if torch.cuda.is_available() and pl_module.device.type == "cuda":
            stats["system/gpu_max_memory_mb"] = torch.cuda.max_memory_allocated(pl_module.device) / 2**20
            try:
                stats["system/gpu_utilization"] = float(torch.cuda.utilization(pl_module.device))
            except Exception:  # pynvml missing: utilization is optional
                pass
        pl_module.log_dict(stats, on_step=False, on_epoch=True, sync_dist=False, rank_zero_only=True)
