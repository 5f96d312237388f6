"""Device helpers shared by the benchmark scripts: synchronisation and peak memory."""

from __future__ import annotations

import resource

import torch

__all__ = ["synchronize", "peak_memory_mb", "reset_peak_memory"]


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work (no-op on CPU), so that wall-clock timings are complete."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory since the last reset, or the process's peak resident memory on CPU (MiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_memory(device: torch.device) -> None:
    """Start a new GPU peak-memory window (CPU peaks cover the whole process)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
