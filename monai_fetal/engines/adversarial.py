"""What MONAI's ``AdversarialTrainer`` needs to sharpen the latent generator's decoder with a patch GAN.

The prior's autoencoder, trained with L1 and spectral losses, decodes smooth images: speckle and fine
edges are averaged away, and that caps every synthetic image's realism. Fine-tuning only its *decoder*
against MONAI's ``PatchDiscriminator`` aims to restore the texture while the encoder, and so the latent space
the prior's UNet was trained in, stays exactly as it was: the new decoder replaces the old one with no UNet
retraining (as Stable Diffusion's improved VAE decoders did). On 2 CPU cores it has not yet moved the
quality ceiling (the diffusion bundle's docs give the numbers), so the shipped prior keeps its decoder.

- :func:`freeze_encoder`: freeze the encoder and its latent projections, return the decoder's parameters.
- :class:`SelectedOutputInferer`: one output of a network that returns several (the reconstruction of
  ``AutoencoderKL``, the logits of ``PatchDiscriminator``), optionally under bfloat16 autocast.
- :class:`GeneratorAdversarialLoss`, :class:`DiscriminatorAdversarialLoss`: MONAI's ``PatchAdversarialLoss``
  in the call signatures of ``AdversarialTrainer``'s ``g_loss_function`` and ``d_loss_function``.
- :func:`progress_only`: the trainer's checkpoint entry without the objects MONAI adds to it, so that a
  resume loads with ``weights_only=True``.
"""

from __future__ import annotations

from typing import Any

import torch
from ignite.engine import Engine
from monai.inferers import Inferer
from monai.losses import PatchAdversarialLoss
from monai.networks.nets import AutoencoderKL
from torch import nn

from monai_fetal.engines.mixed_precision import bfloat16_autocast
from monai_fetal.errors import ConfigError

__all__ = ["DiscriminatorAdversarialLoss", "GeneratorAdversarialLoss", "SelectedOutputInferer", "freeze_encoder", "progress_only"]


def freeze_encoder(autoencoder: AutoencoderKL) -> list[nn.Parameter]:
    """Stop gradients into ``autoencoder``'s encoder and latent projections; the decoder's parameters, to optimise."""
    for part in (autoencoder.encoder, autoencoder.quant_conv_mu, autoencoder.quant_conv_log_sigma):
        part.requires_grad_(False)
    return [parameter for parameter in autoencoder.parameters() if parameter.requires_grad]


def progress_only(trainer: Engine) -> Engine:
    """``trainer``, its ``state_dict`` reduced to ignite's progress (epoch, iteration, lengths).

    ``AdversarialTrainer`` adds its networks, optimizers and losses to its state dict as whole objects,
    which ``torch.load(..., weights_only=True)`` refuses to read back; the networks and optimizers have
    checkpoint entries of their own.
    """
    trainer.state_dict_user_keys.clear()
    return trainer


class SelectedOutputInferer(Inferer):
    """``network(inputs)[index]`` as float32 (the whole output when ``index`` is ``None``).

    Args:
        index: which output to keep: ``0`` for ``AutoencoderKL``'s reconstruction, ``-1`` for
            ``PatchDiscriminator``'s final logits.
        autocast: run the network under bfloat16 autocast on the inputs' device (CPUs with bfloat16
            support train about three times faster; ``AdversarialTrainer``'s own ``amp`` is CUDA only).
    """

    def __init__(self, index: int | None = None, autocast: bool = False) -> None:
        super().__init__()
        if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
            raise ConfigError("index", index, "an integer position in the network's outputs, or null")
        self.index = index
        self.autocast = bool(autocast)

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The selected output of ``network`` for ``inputs``."""
        with bfloat16_autocast(inputs.device, self.autocast):
            output = network(inputs, *args, **kwargs)
        if self.index is not None:
            output = output[self.index]
        return output.float()


def _check_weight(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(name, value, "a number >= 0")
    return float(value)


class GeneratorAdversarialLoss(nn.Module):
    """``weight`` times the patch adversarial loss of the generator's fakes (labelled real).

    Args:
        weight: the adversarial term's weight against the reconstruction loss.
        criterion: ``PatchAdversarialLoss`` criterion (``least_squares``, ``bce`` or ``hinge``).
    """

    def __init__(self, weight: float = 0.05, criterion: str = "least_squares") -> None:
        super().__init__()
        self.weight = _check_weight("adversarial_weight", weight)
        self.loss = PatchAdversarialLoss(criterion=criterion)

    def forward(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """The generator's adversarial loss for the discriminator's logits of its fakes."""
        return self.weight * self.loss(fake_logits.float(), target_is_real=True, for_discriminator=False)


class DiscriminatorAdversarialLoss(nn.Module):
    """The mean of the discriminator's patch losses on real (labelled real) and fake (labelled fake) images.

    Args:
        criterion: ``PatchAdversarialLoss`` criterion (``least_squares``, ``bce`` or ``hinge``).
    """

    def __init__(self, criterion: str = "least_squares") -> None:
        super().__init__()
        self.loss = PatchAdversarialLoss(criterion=criterion)

    def forward(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """The discriminator's loss for its logits of real and of fake images."""
        real = self.loss(real_logits.float(), target_is_real=True, for_discriminator=True)
        fake = self.loss(fake_logits.float(), target_is_real=False, for_discriminator=True)
        return 0.5 * (real + fake)
