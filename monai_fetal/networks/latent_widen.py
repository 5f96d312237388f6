"""Warm starts for a latent generator with more latent channels than a trained one.

A wider latent holds more of an image's fine detail (the shipped 3-channel autoencoder loses the speckle that
LiteMedSAM's features see). Training a wider generator from scratch takes what a GPU gives in minutes and a
CPU in many hours; starting from a trained generator keeps what it already knows:

- :func:`widen_autoencoder`: the trained channels are copied, the new ones start *silent* (the decoder's
  weights for them are zero), so the widened autoencoder reconstructs exactly as the trained one did and
  training only has to teach the new channels what the old ones missed;
- :func:`widen_latent_unet`: the trained UNet's weights for the old latent channels and the mask channel are
  copied, the new channels enter and leave through zero weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from monai.networks.nets import AutoencoderKL, DiffusionModelUNet

from monai_fetal.errors import ConfigError
from monai_fetal.networks.latent import AUTOENCODER_NAME, UNET_NAME, build_autoencoder, build_latent_unet, load_state, read_latent_settings

__all__ = ["widen_autoencoder", "widen_latent_unet", "autoencoder_to_train", "unet_to_train"]

_ENCODER_OUT = "encoder.blocks"
_DECODER_IN = "decoder.blocks.0.conv.weight"
_IDENTITY_CONVS = ("quant_conv_mu.conv", "post_quant_conv.conv")
_LOG_SIGMA = "quant_conv_log_sigma.conv"


def _check_widening(trained: Mapping, wider: Mapping, channels_key: str) -> tuple[int, int]:
    """``(old, new)`` channel counts; refuse settings that differ in anything but the channel count."""
    differing = sorted(k for k in set(trained) | set(wider) if k not in ("in_channels", "out_channels", channels_key) and trained.get(k) != wider.get(k))
    if differing:
        raise ConfigError(differing[0], wider.get(differing[0]), f"{trained.get(differing[0])!r}, as in the generator being widened (only the latent channels may change)")
    old, new = int(trained[channels_key]), int(wider[channels_key])
    if new < old:
        raise ConfigError("latent_channels", new, f">= {old}, the latent channels of the generator being widened")
    return old, new


def widen_autoencoder(autoencoder: AutoencoderKL, trained_settings: Mapping, settings: Mapping) -> AutoencoderKL:
    """An autoencoder of ``settings`` that reconstructs as the trained ``autoencoder`` does, its new latent channels silent.

    New latent channels get the encoder's freshly initialised output weights, an identity in the
    1 x 1 convolutions around the latent, the trained mean log-sigma, and zero weights into the decoder.

    Raises:
        ConfigError: ``settings`` differ from ``trained_settings`` in more than ``latent_channels``, or have fewer.
    """
    old, new = _check_widening(trained_settings["autoencoder"], settings["autoencoder"], "latent_channels")
    wide = build_autoencoder(settings)
    state = wide.state_dict()
    encoder_out = f"{_ENCODER_OUT}.{len(wide.encoder.blocks) - 1}.conv"
    with torch.no_grad():
        for key, value in autoencoder.state_dict().items():
            target = state[key]
            if target.shape == value.shape:
                target.copy_(value)
                continue
            if key.startswith(encoder_out):
                target[:old] = value
                continue
            target.zero_()
            if key == _DECODER_IN:
                target[:, :old] = value
            elif key.endswith("weight"):
                target[:old, :old] = value
                if key.startswith(_IDENTITY_CONVS):
                    target[old:, old:, 0, 0] = torch.eye(new - old)
            else:
                target[:old] = value
                if key.startswith(_LOG_SIGMA):
                    target[old:] = value.mean()
    wide.load_state_dict(state)
    return wide


def widen_latent_unet(unet: DiffusionModelUNet, trained_settings: Mapping, settings: Mapping) -> DiffusionModelUNet:
    """A UNet of ``settings`` that predicts as the trained ``unet`` for the old latent channels, and zero for the new.

    The input's last channel is the mask condition: its trained weights move to the new last channel.

    Raises:
        ConfigError: the UNet settings differ in more than the channel counts, or the latent narrows.
    """
    old, new = _check_widening(trained_settings["autoencoder"], settings["autoencoder"], "latent_channels")
    _check_widening(trained_settings["unet"], settings["unet"], "in_channels")
    wide = build_latent_unet(settings)
    state = wide.state_dict()
    source = unet.state_dict()
    with torch.no_grad():
        for key, value in source.items():
            target = state[key]
            if target.shape == value.shape:
                target.copy_(value)
            elif target.dim() == 4 and target.shape[1] == new + 1:
                target.zero_()
                target[:, :old] = value[:, :old]
                target[:, new] = value[:, old]
            else:
                target.zero_()
                target[:old] = value
    wide.load_state_dict(state)
    return wide


def _to_train(settings: Mapping, init_prior: str | Path | None, build: Callable, file_name: str, widen: Callable) -> torch.nn.Module:
    if init_prior is None:
        return build(settings)
    trained = read_latent_settings(init_prior)
    return widen(load_state(build(trained), Path(init_prior) / file_name), trained, settings)


def autoencoder_to_train(settings: Mapping, init_prior: str | Path | None = None) -> AutoencoderKL:
    """The autoencoder a stage trains: untrained, or the one in the generator folder ``init_prior`` widened to ``settings``."""
    return _to_train(settings, init_prior, build_autoencoder, AUTOENCODER_NAME, widen_autoencoder)


def unet_to_train(settings: Mapping, init_prior: str | Path | None = None) -> DiffusionModelUNet:
    """The UNet a stage trains: untrained, or the one in the generator folder ``init_prior`` widened to ``settings``."""
    return _to_train(settings, init_prior, build_latent_unet, UNET_NAME, widen_latent_unet)
