"""Training callbacks of our own: system metrics beside the model's metrics."""

from __future__ import annotations

import shutil
import subprocess
import time

import psutil
import torch
from lightning.pytorch import Callback, LightningModule, Trainer


def gpu_utilization(index: int) -> float | None:
    """The GPU's utilization in percent over the driver's last sample period: ``torch.cuda.utilization``
    (needs pynvml), else ``nvidia-smi``; None when neither can tell."""
    try:
        return float(torch.cuda.utilization(index))
    except Exception:  # pynvml missing or no NVML: ask nvidia-smi
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, f"--id={index}", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        return float(out.strip().splitlines()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def system_stats(process: psutil.Process, device: torch.device | None = None) -> dict[str, float]:
    """CPU utilization (system-wide and of this process, since the previous call), memory (process RSS and
    the system's used share) and, for a CUDA device, its memory and utilization."""
    stats = {
        "system/cpu_percent": psutil.cpu_percent(None),
        "system/process_cpu_percent": process.cpu_percent(None),
        "system/process_rss_mb": process.memory_info().rss / 2**20,
        "system/memory_percent": psutil.virtual_memory().percent,
    }
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(device)
        stats |= {
            "system/gpu_memory_allocated_mb": torch.cuda.memory_allocated(device) / 2**20,
            "system/gpu_memory_reserved_mb": torch.cuda.memory_reserved(device) / 2**20,
            "system/gpu_max_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20,
            "system/gpu_memory_used_percent": 100.0 * (total - free) / total if total else 0.0,
        }
        util = gpu_utilization(device.index if device.index is not None else torch.cuda.current_device())
        if util is not None:
            stats["system/gpu_utilization"] = util
    return stats


class SystemMonitor(Callback):
    """Logs per training epoch (validation included) its wall time (``time/epoch_seconds``), training samples
    per second, CPU utilization, process and system memory and, on CUDA, GPU memory and utilization.

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
            "time/epoch_seconds": seconds,
            "time/train_samples_per_second": self._samples / seconds if seconds > 0 else 0.0,
            **system_stats(self._process, pl_module.device),
        }
        pl_module.log_dict(stats, on_step=False, on_epoch=True, sync_dist=False, rank_zero_only=True)
