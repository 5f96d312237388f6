"""What MONAI's engines need for mask-conditioned diffusion: the prepare-batch, sampling, and the sample grid.

Training uses MONAI's ``SupervisedTrainer`` with ``DiffusionInferer``; :class:`MaskConditionedPrepareBatch`
(a ``DiffusionPrepareBatch``) adds the mask: as the ``concat`` condition (dropped at random for
classifier-free guidance) or, in ``joint`` mode, as a second channel to denoise. EMA of the weights is
ignite's ``EMAHandler``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.engines import DiffusionPrepareBatch
from monai.inferers import DiffusionInferer
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, Scheduler
from monai.utils import convert_to_tensor

from monai_fetal.config_checks import CHOICES, check_option
from monai_fetal.engines.sample_grid import SampleGrid
from monai_fetal.errors import ConfigError
from monai_fetal.networks.diffusion import CONDITION_FILL, MODES, MaskConditionedDiffusion
from monai_fetal.shape.ellipse import ellipse_to_mask, fit_ellipse_to_mask

__all__ = [
    "SAMPLERS",
    "MaskConditionedPrepareBatch",
    "check_x0_clip",
    "make_scheduler",
    "sample_pairs",
    "clean_head_mask",
    "SampleGridHandler",
]

SAMPLERS = CHOICES["sampler"]
_PREPARE_MODES = (*MODES, "unconditional")


class MaskConditionedPrepareBatch(DiffusionPrepareBatch):
    """Noise, timesteps and the mask condition for ``DiffusionInferer`` from a batch of ``image`` and ``label``.

    Images are ``[B, 1, H, W]`` in [-1, 1], masks ``[B, 1, H, W]`` in {0, 1}. Per mode:

    - ``concat`` and ``controlnet``: the inferer gets ``condition`` (the mask, replaced by ``fill_value``
      with probability ``condition_dropout`` per image) and ``mode="concat"``; the target is the noise
      of the image.
    - ``joint``: the image and the mask scaled to [-1, 1] are stacked as ``[B, 2, H, W]`` and noised together.
    - ``unconditional``: the image alone (the base UNet of ``controlnet`` mode).

    Args:
        num_train_timesteps: steps of the noise schedule.
        mode: one of ``concat``, ``controlnet``, ``joint``, ``unconditional``.
        condition_dropout: probability of dropping an image's mask (classifier-free guidance), in [0, 1).
        fill_value: the value of a dropped mask.
        image_key: batch key of the images.
        mask_key: batch key of the masks.
        scheduler: the training noise scheduler; when its ``prediction_type`` is ``v_prediction`` the target
            is the velocity (as MONAI's ``VPredictionPrepareBatch``), else the noise.
    """

    def __init__(
        self,
        num_train_timesteps: int,
        mode: str = "concat",
        condition_dropout: float = 0.1,
        fill_value: float = CONDITION_FILL,
        image_key: str = "image",
        mask_key: str = "label",
        scheduler: Scheduler | None = None,
    ) -> None:
        if mode not in _PREPARE_MODES:
            raise ConfigError("mode", mode, "one of " + ", ".join(repr(m) for m in _PREPARE_MODES))
        if isinstance(condition_dropout, bool) or not isinstance(condition_dropout, (int, float)) or not 0 <= condition_dropout < 1:
            raise ConfigError("condition_dropout", condition_dropout, "a probability in [0, 1)")
        super().__init__(num_train_timesteps)
        self.mode = mode
        self.condition_dropout = float(condition_dropout)
        self.fill_value = float(fill_value)
        self.image_key = image_key
        self.mask_key = mask_key
        self.scheduler = scheduler

    def get_target(self, images: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The velocity for a ``v_prediction`` scheduler, else the noise."""
        if self.scheduler is not None and self.scheduler.prediction_type == "v_prediction":
            return self.scheduler.get_velocity(images, noise, timesteps)
        return noise

    def __call__(
        self,
        batchdata: Mapping[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple, dict]:
        """``(inputs, target noise, (), inferer kwargs)`` as ``SupervisedTrainer`` expects."""
        def fetch(key: str) -> torch.Tensor:
            return convert_to_tensor(batchdata[key], track_meta=False).to(device, non_blocking=non_blocking, **kwargs)

        images = fetch(self.image_key)
        masks = fetch(self.mask_key) if self.mode != "unconditional" else None
        if self.mode == "joint":
            images = torch.cat([images, masks * 2.0 - 1.0], dim=1)
        noise = self.get_noise(images)
        timesteps = self.get_timesteps(images)
        target = self.get_target(images, noise, timesteps)
        infer_kwargs: dict = {"noise": noise, "timesteps": timesteps}
        if self.mode in ("concat", "controlnet"):
            dropped = torch.rand(masks.shape[0], device=masks.device) < self.condition_dropout
            condition = torch.where(dropped[:, None, None, None], torch.full_like(masks, self.fill_value), masks)
            infer_kwargs.update(condition=condition, mode="concat")
        return images, target, (), infer_kwargs


def check_x0_clip(value: object) -> float:
    """``value`` as an x0 clip bound: a number > 0 clips the predicted clean sample to ``[-value, value]``, 0 does not clip.

    Raises:
        ConfigError: not a number >= 0.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError("x0_clip", value, "a number > 0 (the predicted clean sample is clipped to [-x0_clip, x0_clip]), or 0 for no clipping")
    return float(value)


def make_scheduler(settings: Mapping, sampler: str = "ddim", steps: int = 50, x0_clip: float = 1.0) -> Scheduler:
    """A MONAI DDIM or DDPM scheduler with the generator's noise schedule, set to ``steps`` sampling steps.

    ``x0_clip`` bounds the predicted clean sample at each step (see :func:`check_x0_clip`): 1, the pixel
    generators' image range, by default.

    Raises:
        ConfigError: unknown ``sampler``, ``steps`` not in 1..num_train_timesteps, or a bad ``x0_clip``.
    """
    check_option("sampler", sampler)
    total = int(settings["scheduler"]["num_train_timesteps"])
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= total:
        raise ConfigError("steps", steps, f"an integer from 1 to {total} (the training steps)")
    bound = check_x0_clip(x0_clip)
    kind = DDIMScheduler if sampler == "ddim" else DDPMScheduler
    scheduler = kind(
        num_train_timesteps=total,
        schedule=settings["scheduler"]["schedule"],
        prediction_type=settings["scheduler"]["prediction_type"],
        clip_sample=bound > 0,
        clip_sample_min=-bound,
        clip_sample_max=bound,
    )
    scheduler.set_timesteps(steps)
    return scheduler


def _noise(seeds: Sequence[int], shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """``[len(seeds), *shape]`` standard normal noise, one independent stream per seed."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]).to(device)


@torch.no_grad()
def sample_pairs(
    generator: MaskConditionedDiffusion,
    inferer: DiffusionInferer,
    size: Sequence[int],
    seeds: Sequence[int],
    masks: torch.Tensor | None = None,
    guidance: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one image (and, in ``joint`` mode, its mask) per seed.

    Args:
        generator: the trained generator (eval mode); sampling runs on its device.
        inferer: MONAI's ``DiffusionInferer`` holding the sampling scheduler (from :func:`make_scheduler`).
        size: ``(rows, cols)``, the generator's image size.
        seeds: one seed per sample: its starting noise (and DDPM's step noise) depends only on it.
        masks: ``[B, 1, rows, cols]`` head masks in {0, 1} to condition on (``concat``, ``controlnet``);
            ``None`` in ``joint`` mode.
        guidance: classifier-free guidance scale (1: conditional prediction only; > 1 follows the mask
            more strongly); not used in ``joint`` mode.

    Returns:
        ``(images, masks)``, both ``[B, 1, rows, cols]`` in [0, 1]: the given masks, or in ``joint``
        mode the generated mask channel (threshold it with :func:`clean_head_mask`).
    """
    device = next(generator.parameters()).device
    joint = generator.mode == "joint"
    if joint != (masks is None):
        raise ConfigError("masks", None if masks is None else tuple(masks.shape), "masks unless the mode is 'joint'")
    if masks is not None and (masks.ndim != 4 or masks.shape[0] != len(seeds) or tuple(masks.shape[2:]) != tuple(size)):
        raise ConfigError("masks", tuple(masks.shape), f"[{len(seeds)}, 1, {size[0]}, {size[1]}]")
    noise = _noise(seeds, (generator.image_channels, *size), device)
    cfg = None if joint or guidance == 1.0 else float(guidance)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(seeds[0]))
        sample = inferer.sample(
            input_noise=noise,
            diffusion_model=generator,
            conditioning=None if joint else masks.to(device, torch.float32),
            mode="crossattn" if joint else "concat",
            verbose=False,
            cfg=cfg,
            cfg_fill_value=CONDITION_FILL,
        )
    sample = ((sample.float() + 1.0) / 2.0).clamp(0.0, 1.0)
    return sample[:, :1], (sample[:, 1:] if joint else masks.to(device, torch.float32))


def clean_head_mask(probability: np.ndarray | torch.Tensor, shape: Sequence[int]) -> np.ndarray | None:
    """A generated mask channel ``(h, w)`` in [0, 1] to a head mask ``uint8`` 0/1 of ``shape`` (rows, cols).

    Upsampled bilinearly, thresholded at 0.5; the largest component is replaced by its ellipse
    (same area and second moments), as heads are annotated. ``None`` when no head was generated.
    """
    prob = torch.as_tensor(np.asarray(probability, dtype=np.float32))[None, None]
    up = F.interpolate(prob, size=tuple(int(s) for s in shape), mode="bilinear", align_corners=False)[0, 0].numpy()
    try:
        return ellipse_to_mask(fit_ellipse_to_mask(up > 0.5), tuple(int(s) for s in shape))
    except ValueError:
        return None


class SampleGridHandler(SampleGrid):
    """Every ``interval`` epochs and at the end, sample pairs with the (EMA) generator and save a grid PNG.

    Files are ``output_dir/epoch_NNNN.png``: images with their masks' contours (in ``joint`` mode the
    generated masks after cleaning).

    Args:
        generator: the generator to sample from (the EMA model).
        settings: its settings (size, noise schedule).
        output_dir: folder of the grids.
        masks: masks ``(rows, cols)`` at the generator's size to condition on (ignored in ``joint`` mode,
            where their number sets how many samples are drawn).
        interval: epochs between grids.
        steps: DDIM steps.
        guidance: classifier-free guidance scale.
        seed: seed of the first sample (the others follow it).
    """

    def __init__(
        self,
        generator: MaskConditionedDiffusion,
        settings: Mapping,
        output_dir: str | Path,
        masks: Sequence[np.ndarray],
        interval: int = 5,
        steps: int = 50,
        guidance: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(generator, output_dir, interval, seed)
        if not len(masks):
            raise ConfigError("masks", 0, "at least one mask for the sample grid")
        self.generator = generator
        self.size = tuple(settings["image_size"])
        self.inferer = DiffusionInferer(make_scheduler(settings, "ddim", steps))
        self.masks = torch.stack([torch.as_tensor(np.asarray(m, dtype=np.float32))[None] for m in masks])
        self.guidance = guidance

    @property
    def count(self) -> int:
        """One sample per mask."""
        return len(self.masks)

    def sample(self, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The generator's pairs for ``seeds``; in ``joint`` mode its masks after cleaning (empty where none is left)."""
        joint = self.generator.mode == "joint"
        images, masks = sample_pairs(self.generator, self.inferer, self.size, seeds, None if joint else self.masks, self.guidance)
        images, masks = images[:, 0].cpu().numpy(), masks[:, 0].cpu().numpy()
        if joint:
            cleaned = [clean_head_mask(m, self.size) for m in masks]
            masks = np.stack([np.zeros(self.size, np.uint8) if m is None else m for m in cleaned])
        return images, masks
