"""Low-rank adapters (LoRA-style) on a network's convolution and linear weights, and their merge.

:func:`add_low_rank_adapters` freezes a network and re-parametrises the weight ``W`` of each ``Conv*d`` and
``Linear`` layer as ``W + up @ down`` (``torch.nn.utils.parametrize``), with ``up`` zero at
the start, so the adapted network predicts exactly as the original until it trains. Layers named in
``train_fully`` (by module-name prefix) are left unadapted and trainable, e.g. the UNet's input convolution
that reads a new mask channel. :func:`merged_state_dict` folds the adapters back into plain weights, so a
trained network saves, and loads, as the architecture it started from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from monai_fetal.errors import ConfigError

__all__ = ["LowRankUpdate", "MergedLowRank", "add_low_rank_adapters", "merged_state_dict", "trainable_parameters"]

_ADAPTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class LowRankUpdate(nn.Module):
    """Parametrisation ``W -> W + (up @ down).view_as(W)`` of a weight of ``shape``, ``up @ down`` of rank ``rank``.

    ``down`` starts as Kaiming-uniform noise and ``up`` as zeros, so the update is zero until trained.
    """

    def __init__(self, shape: Sequence[int], rank: int) -> None:
        super().__init__()
        fan_in = math.prod(shape[1:])
        self.down = nn.Parameter(torch.empty(rank, fan_in))
        self.up = nn.Parameter(torch.zeros(shape[0], rank))
        nn.init.kaiming_uniform_(self.down, a=math.sqrt(5))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """The adapted weight."""
        update = (self.up @ self.down).view_as(weight)
        return weight + update.to(weight.dtype)


def _under(name: str, prefix: str) -> bool:
    """Whether the module or parameter ``name`` is ``prefix`` or inside it."""
    return name == prefix or name.startswith(prefix + ".")


def add_low_rank_adapters(network: nn.Module, rank: int, train_fully: Sequence[str] = ()) -> nn.Module:
    """Freeze ``network`` and adapt its convolution and linear weights by rank-``rank`` updates, in place.

    Args:
        network: the network to adapt (its weights are kept as the frozen originals).
        rank: rank of each update (a positive integer).
        train_fully: module-name prefixes whose parameters stay trainable and get no adapter.

    Returns:
        ``network``, whose only trainable parameters are the adapters and the ``train_fully`` modules'.

    Raises:
        ConfigError: ``rank`` is not a positive integer, or a ``train_fully`` prefix names no module.
    """
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError("adapter_rank", rank, "a positive integer (rank of each low-rank update)")
    names = [name for name, _ in network.named_modules()]
    for prefix in train_fully:
        if not any(_under(name, prefix) for name in names):
            raise ConfigError("train_fully", prefix, f"a module name of the network, e.g. one of {names[1:4]}")

    def fully_trained(name: str) -> bool:
        return any(_under(name, prefix) for prefix in train_fully)

    for name, parameter in network.named_parameters():
        parameter.requires_grad_(fully_trained(name))
    for name, module in list(network.named_modules()):
        if isinstance(module, _ADAPTED) and not fully_trained(name):
            update = LowRankUpdate(module.weight.shape, rank)
            parametrize.register_parametrization(module, "weight", update.to(module.weight.device))
    return network


def trainable_parameters(network: nn.Module) -> list[nn.Parameter]:
    """The parameters of ``network`` that require gradients (what an optimizer of an adapted network updates)."""
    return [parameter for parameter in network.parameters() if parameter.requires_grad]


def merged_state_dict(network: nn.Module) -> dict[str, torch.Tensor]:
    """``network``'s state dict with each low-rank update folded into its weight, under the plain names.

    A network without adapters gives its own state dict.
    """
    state = {}
    for name, value in network.state_dict().items():
        if ".parametrizations." not in name:
            state[name] = value
    for name, module in network.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            with torch.no_grad():
                state[f"{name}.weight" if name else "weight"] = module.weight.detach().clone()
    return state


class MergedLowRank:
    """What a checkpoint saver stores for an adapted network: its :func:`merged_state_dict` (plain weights)."""

    def __init__(self, network: nn.Module) -> None:
        self.network = network

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The merged weights."""
        return merged_state_dict(self.network)
