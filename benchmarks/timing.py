"""Helpers shared by the benchmark scripts: synchronisation, peak memory, a fresh process per case."""

from __future__ import annotations

import multiprocessing
import resource
from pathlib import Path

import torch

__all__ = ["cpu_description", "in_fresh_process", "synchronize", "peak_memory_mb", "reset_peak_memory"]


def cpu_description() -> dict:
    """The CPU's model name and whether it has AVX-512 and AVX512-BF16 (from ``/proc/cpuinfo``; empty elsewhere).

    Timings of two machines differ by the CPU more than by the code: on an AMD EPYC with AVX2 only, the
    latent sampler ran 1.9 times as long as on the AVX512-BF16 CPU of earlier runs.
    """
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        return {}
    fields = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in info.read_text().splitlines())}
    flags = set(fields.get("flags", "").split())
    return {"cpu_model": fields.get("model name", ""), "avx512": "avx512f" in flags, "avx512_bf16": "avx512_bf16" in flags}


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
