"""Helpers for ``torchrun`` runs of the bundles: process group and device per rank (rank-0-first work is
ignite's ``ignite.distributed.one_rank_first``)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["init_distributed", "local_device", "is_rank_zero"]


def init_distributed() -> str:
    """Join the ``torchrun`` process group (NCCL on CUDA, gloo on CPU) unless already joined; return the backend."""
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    if backend == "nccl":
        torch.cuda.set_device(local_device())
    return dist.get_backend()


def local_device() -> torch.device:
    """``cuda:LOCAL_RANK`` when CUDA is present, else the CPU."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return torch.device("cpu")


def is_rank_zero() -> bool:
    """True on rank 0 of a process group, and in a run without one."""
    return not dist.is_initialized() or dist.get_rank() == 0
