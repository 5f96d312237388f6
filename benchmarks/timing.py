"""Helpers shared by the benchmark scripts: synchronisation, peak memory, a fresh process per case."""

from __future__ import annotations

import multiprocessing
import resource

import torch

__all__ = ["in_fresh_process", "synchronize", "peak_memory_mb", "reset_peak_memory"]


def in_fresh_process(function, *args):
    """``function(*args)`` in a new (spawned) process, so that a CPU peak-memory reading is that call's alone."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


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
