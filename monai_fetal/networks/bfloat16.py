"""Whether this machine runs bfloat16 natively, and so whether mixed precision pays on its CPU."""

from __future__ import annotations

import torch

__all__ = ["cpu_autocast_default", "native_bfloat16"]


def native_bfloat16() -> bool:
    """``True`` when the CPU computes bfloat16 natively (AVX512-BF16 or AMX, through oneDNN)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_autocast_default(device: str | torch.device) -> bool:
    """Whether training on ``device`` should run under bfloat16 autocast by default.

    ``True`` on a CPU with native bfloat16 (MONAI's ``amp`` switch enters ``torch.autocast("cuda")`` only,
    so a CPU gets mixed precision from this switch instead); ``False`` elsewhere: CUDA has ``amp``, and a
    CPU without native bfloat16 emulates it, slower than float32.
    """
    return torch.device(device).type == "cpu" and native_bfloat16()
