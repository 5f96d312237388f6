"""How few-shot conditioning adapts the shipped latent prior to the mask: the three routes it can take.

``fine_tune``
    every weight of the prior's UNet trains, its mask channel now holding the mask (the default until
    diffusion bundle 0.8.x);
``low_rank`` (``train_conditioning.json``'s default)
    the UNet is frozen except its input convolution (which reads the mask channel); every other
    convolution and linear weight trains through a rank-``adapter_rank`` update (:mod:`monai_fetal.networks.low_rank`),
    merged into plain weights when saved;
``controlnet``
    the UNet is frozen and a MONAI ``ControlNet``, a copy of its encoder with zero-initialised outputs,
    reads the mask (:class:`monai_fetal.networks.latent.MaskControlledUNet`).

All three write a generator that ``load_latent_generator`` reads and ``synthesize`` samples with the same
classifier-free guidance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from monai.networks.nets import ControlNet, DiffusionModelUNet
from monai.networks.utils import copy_model_state

from monai_fetal.config_checks import check_option
from monai_fetal.errors import ConfigError
from monai_fetal.networks.latent import MaskControlledUNet
from monai_fetal.networks.low_rank import add_low_rank_adapters

__all__ = ["CONTROLNET_EMBEDDING", "conditioning_settings", "conditioned_unet"]

CONTROLNET_EMBEDDING = (16,)
"""Channels of the ControlNet's mask embedding: one level, since the mask is already at latent size."""

_NOT_CONTROLNET_ARGS = ("out_channels", "dropout_cattn")


def conditioning_settings(settings: Mapping, route: str) -> dict:
    """The generator's settings for ``route``: the prior's, with the ControlNet's arguments for ``controlnet``.

    Raises:
        ConfigError: an unknown ``route``.
    """
    if check_option("conditioning", route) != "controlnet":
        return dict(settings)
    args = {key: value for key, value in settings["unet"].items() if key not in _NOT_CONTROLNET_ARGS}
    controlnet = {**args, "conditioning_embedding_in_channels": 1, "conditioning_embedding_num_channels": list(CONTROLNET_EMBEDDING)}
    return {**settings, "controlnet": controlnet}


def conditioned_unet(
    prior_unet: DiffusionModelUNet,
    settings: Mapping,
    route: str,
    adapter_rank: int = 16,
    train_fully: Sequence[str] = ("conv_in",),
) -> DiffusionModelUNet | MaskControlledUNet:
    """The network that conditioning trains, built on ``prior_unet`` (the prior's trained UNet) by ``route``.

    Args:
        prior_unet: the prior's UNet with its weights.
        settings: from :func:`conditioning_settings` with the same ``route``.
        route: ``fine_tune``, ``low_rank`` or ``controlnet`` (module docstring).
        adapter_rank: rank of the updates (``low_rank`` only; a positive integer).
        train_fully: module-name prefixes trained fully instead of adapted (``low_rank`` only).

    Raises:
        ConfigError: an unknown ``route``, a bad ``adapter_rank``, or ``settings`` without the ControlNet of ``controlnet``.
    """
    if check_option("conditioning", route) == "fine_tune":
        return prior_unet
    if route == "low_rank":
        return add_low_rank_adapters(prior_unet, adapter_rank, train_fully=train_fully)
    if not settings.get("controlnet"):
        raise ConfigError("settings", "no 'controlnet' entry", "settings from conditioning_settings(settings, 'controlnet')")
    controlnet = ControlNet(**settings["controlnet"])
    copy_model_state(controlnet, prior_unet.state_dict())
    prior_unet.requires_grad_(False)
    return MaskControlledUNet(prior_unet, controlnet)
