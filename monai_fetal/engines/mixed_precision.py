"""bfloat16 autocast for the latent generator on a CPU: its training stages and its sampling.

MONAI's trainers enter ``torch.autocast("cuda")`` when ``amp`` is set, so on a CPU they train in
float32 even where the CPU computes bfloat16 natively. The training configs wrap their inferer in
:class:`AutocastInferer` (and :class:`~monai_fetal.engines.latent.LatentPrepareBatch` encodes under the same
switch), and ``inference.json`` samples under it; the switch's default is
:func:`~monai_fetal.networks.bfloat16.cpu_autocast_default`.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.inferers import Inferer
from torch import nn

__all__ = ["AutocastInferer", "as_float32", "bfloat16_autocast"]


def bfloat16_autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """``torch.autocast`` to bfloat16 on ``device``'s type, doing nothing when ``enabled`` is false."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(enabled))


def as_float32(output: Any) -> Any:
    """``output`` with every floating tensor in it (alone, or in a tuple or list) as float32."""
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    if isinstance(output, (tuple, list)):
        return type(output)(as_float32(item) for item in output)
    return output


class AutocastInferer(Inferer):
    """``inferer`` run under bfloat16 autocast when ``autocast`` is true; its outputs as float32.

    The losses then see float32, as they do without autocast; the gradients flow back through the
    bfloat16 operations as in any autocast training.

    Args:
        inferer: the inferer to wrap (``DiffusionInferer``, ``SimpleInferer``, ...).
        autocast: run it under ``torch.autocast(<inputs' device type>, dtype=torch.bfloat16)``.
    """

    def __init__(self, inferer: Inferer, autocast: bool = False) -> None:
        super().__init__()
        self.inferer = inferer
        self.autocast = bool(autocast)

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args: Any, **kwargs: Any) -> Any:
        """``inferer(inputs, network, *args, **kwargs)``, under autocast when switched on, as float32."""
        with bfloat16_autocast(inputs.device, self.autocast):
            output = self.inferer(inputs, network, *args, **kwargs)
        return as_float32(output)
