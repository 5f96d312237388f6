"""What MONAI's ``SupervisedTrainer`` needs to train the latent generator, and its sampler.

- :class:`AutoencoderLoss`: L1 + spectral (MONAI's ``JukeboxLoss``, which keeps speckle) + KL, on
  ``AutoencoderKL``'s ``(reconstruction, z_mu, z_sigma)``.
- :class:`LatentPrepareBatch`: the concat-mode prepare-batch that encodes the images with the frozen
  autoencoder and adds the mask channel (or ``CONDITION_FILL`` for unlabelled images and dropped masks).
- :func:`latent_scale_factor`: one over the standard deviation of the latents, as latent diffusion scales them.
- :func:`sample_latent_images`: DDIM/DDPM sampling through MONAI's ``LatentDiffusionInferer``.
- :class:`TimeLimit` and :class:`LatentSampleGrid`: trainer handlers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.inferers import LatentDiffusionInferer
from monai.losses import JukeboxLoss
from monai.networks.nets import AutoencoderKL, DiffusionModelUNet
from monai.networks.schedulers import Scheduler
from monai.utils import convert_to_tensor
from torch import nn

from monai_fetal.engines.diffusion import MaskConditionedPrepareBatch, make_scheduler
from monai_fetal.engines.mixed_precision import bfloat16_autocast
from monai_fetal.engines.sample_grid import SampleGrid
from monai_fetal.errors import ConfigError
from monai_fetal.networks.latent import CONDITION_FILL, LatentGenerator, latent_shape, mask_to_latent, read_latent_settings

__all__ = [
    "AutoencoderLoss",
    "LATENT_X0_CLIP",
    "LatentPrepareBatch",
    "LatentSampleGrid",
    "TimeLimit",
    "latent_inferer",
    "latent_scale_factor",
    "sample_latent_images",
    "stored_or_new_scale_factor",
]

logger = logging.getLogger(__name__)

LATENT_X0_CLIP = 3.0
"""Bound of the predicted clean latent in sampling. Scaled latents have unit spread but are not bounded
by 1: 30 % of the shipped prior's posterior means lie outside [-1, 1] (1.6 % outside [-3, 3]), so the
image generators' bound of 1 darkened every image and flattened its echoes. 3 still guards against runaway
predictions under guidance; 2, 3 and no bound measured alike (``benchmarks/results/synth_x0_clip_cpu.json``)."""


class AutoencoderLoss(nn.Module):
    """``l1 + spectral_weight * spectral + kl_weight * KL`` for ``AutoencoderKL``'s output tuple.

    Args:
        kl_weight: weight of the KL divergence of the latent posterior to N(0, 1) (small: the latents stay
            close to a unit Gaussian without losing detail).
        spectral_weight: weight of the spectral (Fourier magnitude) loss, MONAI's ``JukeboxLoss``.
    """

    def __init__(self, kl_weight: float = 1e-6, spectral_weight: float = 0.1) -> None:
        super().__init__()
        for key, value in (("kl_weight", kl_weight), ("spectral_weight", spectral_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(key, value, "a number >= 0")
        self.kl_weight = float(kl_weight)
        self.spectral_weight = float(spectral_weight)
        self.spectral = JukeboxLoss(spatial_dims=2)

    def forward(self, output: Sequence[torch.Tensor] | torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of ``(reconstruction, z_mu, z_sigma)`` against ``target`` images.

        A reconstruction alone (what the decoder's adversarial fine-tune scores) has no KL term.
        """
        if isinstance(output, torch.Tensor):
            reconstruction, z_mu, z_sigma = output, None, None
        else:
            reconstruction, z_mu, z_sigma = output
        reconstruction = reconstruction.float()
        loss = torch.nn.functional.l1_loss(reconstruction, target)
        if self.spectral_weight:
            loss = loss + self.spectral_weight * self.spectral(reconstruction, target)
        if self.kl_weight and z_mu is not None:
            mu, sigma = z_mu.float(), z_sigma.float()
            kl = 0.5 * (mu.pow(2) + sigma.pow(2) - torch.log(sigma.pow(2) + 1e-12) - 1).sum(dim=(1, 2, 3)).mean()
            loss = loss + self.kl_weight * kl
        return loss


class LatentPrepareBatch(MaskConditionedPrepareBatch):
    """Latents, their noise target and the mask condition for ``DiffusionInferer`` (``concat`` mode).

    Images ``[B, 1, H, W]`` in [-1, 1] are encoded by the frozen ``autoencoder`` (a sample of the
    posterior) and multiplied by ``scale_factor``. The condition channel is the mask at latent size, or
    ``fill_value`` when the batch has no ``mask_key`` (unlabelled images: the prior) and, with
    probability ``condition_dropout``, per image (classifier-free guidance). The target follows the
    scheduler's ``prediction_type``, as in :class:`MaskConditionedPrepareBatch`.

    Args:
        autoencoder: the trained ``AutoencoderKL`` (frozen, on the training device).
        settings: the latent generator settings (latent size).
        scale_factor: multiplies the latents.
        num_train_timesteps: steps of the noise schedule.
        scheduler: the training scheduler: its ``prediction_type`` decides the target (velocity or noise).
        condition_dropout: probability of dropping an image's mask, in [0, 1).
        fill_value: the value of an absent or dropped mask.
        image_key: batch key of the images.
        mask_key: batch key of the masks; ``None`` for unlabelled images.
        autocast: encode under bfloat16 autocast (the training stages' ``autocast`` switch, see
            :mod:`monai_fetal.engines.mixed_precision`); the latents are float32 either way.
    """

    def __init__(
        self,
        autoencoder: AutoencoderKL,
        settings: Mapping,
        scale_factor: float,
        num_train_timesteps: int,
        scheduler: Scheduler | None = None,
        condition_dropout: float = 0.1,
        fill_value: float = CONDITION_FILL,
        image_key: str = "image",
        mask_key: str | None = "label",
        autocast: bool = False,
    ) -> None:
        super().__init__(num_train_timesteps, "concat", condition_dropout, fill_value, image_key, mask_key, scheduler)
        self.autoencoder = autoencoder.eval().requires_grad_(False)
        self.settings = settings
        self.scale_factor = float(scale_factor)
        self.autocast = bool(autocast)

    def __call__(
        self,
        batchdata: Mapping[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple, dict]:
        """``(latents, target, (), inferer kwargs)`` as ``SupervisedTrainer`` expects."""
        images = convert_to_tensor(batchdata[self.image_key], track_meta=False).to(device, non_blocking=non_blocking, **kwargs)
        with torch.no_grad(), bfloat16_autocast(images.device, self.autocast):
            latents = self.autoencoder.encode_stage_2_inputs(images.float()).float() * self.scale_factor
        _, rows, cols = latent_shape(self.settings)
        condition = torch.full((latents.shape[0], 1, rows, cols), self.fill_value, device=latents.device)
        if self.mask_key is not None and self.mask_key in batchdata:
            masks = convert_to_tensor(batchdata[self.mask_key], track_meta=False).to(latents.device)
            kept = torch.rand(masks.shape[0], device=latents.device) >= self.condition_dropout
            condition = torch.where(kept[:, None, None, None], mask_to_latent(masks, self.settings), condition)
        noise = self.get_noise(latents)
        timesteps = self.get_timesteps(latents)
        target = self.get_target(latents, noise, timesteps)
        return latents, target, (), {"noise": noise, "timesteps": timesteps, "condition": condition, "mode": "concat"}


@torch.no_grad()
def latent_scale_factor(autoencoder: AutoencoderKL, batches: Iterable[Mapping], device: str | torch.device, image_key: str = "image") -> float:
    """``1 / std`` of the latent means of the images in ``batches`` (rounded to 4 significant digits).

    Deterministic for a deterministic loader (posterior means, no sampling), so a resumed run computes
    the same factor.
    """
    autoencoder = autoencoder.eval()
    means = [autoencoder.encode(convert_to_tensor(b[image_key], track_meta=False).to(device).float())[0] for b in batches]
    if not means:
        raise ConfigError("dataset", 0, "at least one image to scale the latents")
    std = float(torch.cat([m.flatten() for m in means]).std())
    return float(f"{1.0 / std:.4g}")


def stored_or_new_scale_factor(
    settings_path: str | Path, autoencoder: AutoencoderKL, batches: Iterable[Mapping], device: str | torch.device
) -> float:
    """The scale factor of the settings already at ``settings_path`` (a resumed run), else one from ``batches``."""
    settings_path = Path(settings_path)
    if settings_path.is_file():
        return float(read_latent_settings(settings_path)["scale_factor"])
    return latent_scale_factor(autoencoder, batches, device)


def latent_inferer(settings: Mapping, sampler: str = "ddim", steps: int = 25, x0_clip: float = LATENT_X0_CLIP) -> LatentDiffusionInferer:
    """MONAI's ``LatentDiffusionInferer`` with the generator's noise schedule and scale factor, set to ``steps``.

    ``x0_clip`` bounds the predicted clean latent at each step (0: no bound; :data:`LATENT_X0_CLIP` by default).
    """
    return LatentDiffusionInferer(make_scheduler(settings, sampler, steps, x0_clip), scale_factor=settings["scale_factor"])


@torch.no_grad()
def sample_latent_images(
    generator: LatentGenerator,
    inferer: LatentDiffusionInferer,
    seeds: Sequence[int],
    masks: torch.Tensor | None = None,
    guidance: float = 1.0,
    autocast: bool = False,
) -> torch.Tensor:
    """One image per seed, ``[B, 1, rows, cols]`` in [0, 1], conditioned on ``masks`` when given.

    Args:
        generator: the trained latent generator (eval mode); sampling runs on its device.
        inferer: from :func:`latent_inferer` (DDIM: image ``i`` depends only on its seed and mask).
        seeds: one seed per image: its starting noise depends only on it.
        masks: ``[B, 1, rows, cols]`` head masks in {0, 1} at the generator's size, or ``None`` (the prior).
        guidance: classifier-free guidance scale (1: conditional prediction only).
        autocast: run the UNet and the decoder under bfloat16 autocast (on a CPU with native bfloat16 1.2-2.1
            times faster, images within about 3 grey levels of float32's; ``benchmarks/latent_speed.py``). A CPU
            without it emulates bfloat16, far slower than float32, and an image may then differ by bfloat16's
            rounding with the batch it is sampled in.
    """
    settings = generator.settings
    device = next(generator.parameters()).device
    channels, rows, cols = latent_shape(settings)
    if masks is not None and (masks.ndim != 4 or masks.shape[0] != len(seeds) or tuple(masks.shape[2:]) != tuple(settings["image_size"])):
        raise ConfigError("masks", tuple(masks.shape), f"[{len(seeds)}, 1, {settings['image_size'][0]}, {settings['image_size'][1]}]")
    noise = torch.stack([torch.randn((channels, rows, cols), generator=torch.Generator().manual_seed(int(s))) for s in seeds]).to(device)
    if masks is None:
        condition = torch.full((len(seeds), 1, rows, cols), CONDITION_FILL, device=device)
    else:
        condition = mask_to_latent(masks.to(device), settings)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), bfloat16_autocast(device, autocast):
        torch.manual_seed(int(seeds[0]))
        images = inferer.sample(
            input_noise=noise,
            autoencoder_model=generator.autoencoder,
            diffusion_model=generator.unet,
            conditioning=condition,
            mode="concat",
            verbose=False,
            cfg=None if masks is None or guidance == 1.0 else float(guidance),
            cfg_fill_value=CONDITION_FILL,
        )
    return ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)


class TimeLimit:
    """Stop training after ``seconds`` of wall time (checked after each iteration); ``None`` never stops.

    The trainer then ends as if completed (final model saved); the epoch checkpoints let a later run go on.
    """

    def __init__(self, seconds: float | None = None) -> None:
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0):
            raise ConfigError("time_limit", seconds, "a number of seconds > 0, or null for no limit")
        self.seconds = seconds
        self.start = time.monotonic()

    def attach(self, engine: Engine) -> None:
        if self.seconds is not None:
            engine.add_event_handler(Events.STARTED, self.restart)
            engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def restart(self, engine: Engine) -> None:
        self.start = time.monotonic()

    def __call__(self, engine: Engine) -> None:
        if time.monotonic() - self.start > self.seconds:
            logger.info("time limit of %.0f s reached at epoch %d, iteration %d", self.seconds, engine.state.epoch, engine.state.iteration)
            engine.terminate()


class LatentSampleGrid(SampleGrid):
    """Every ``interval`` epochs and at the end, sample images with the (EMA) UNet and save a grid PNG.

    Files are ``output_dir/epoch_NNNN.png``; with ``masks``, their contours are drawn over the images.
    """

    def __init__(
        self,
        autoencoder: AutoencoderKL,
        unet: DiffusionModelUNet,
        settings: Mapping,
        output_dir: str | Path,
        count: int = 8,
        masks: Sequence[np.ndarray] | None = None,
        interval: int = 5,
        steps: int = 25,
        seed: int = 0,
    ) -> None:
        super().__init__(unet, output_dir, interval, seed)
        self.generator = LatentGenerator(autoencoder, unet, settings)
        self.inferer = latent_inferer(settings, "ddim", steps)
        self.masks = None if masks is None else torch.stack([torch.as_tensor(np.asarray(m, np.float32))[None] for m in masks])
        self._count = count if masks is None else len(masks)

    @property
    def count(self) -> int:
        """``count``, or one sample per mask."""
        return self._count

    def sample(self, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The images for ``seeds`` (conditioned on ``masks`` where given) and those masks (empty without)."""
        images = sample_latent_images(self.generator, self.inferer, seeds, self.masks)[:, 0].cpu().numpy()
        masks = self.masks[:, 0].numpy() if self.masks is not None else np.zeros((self.count, *images.shape[1:]), np.uint8)
        return images, masks
