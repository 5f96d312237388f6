"""The latent generator: MONAI's ``AutoencoderKL`` and a mask-conditioned latent ``DiffusionModelUNet``.

Two stages, as in MONAI's latent-diffusion model-zoo bundles:

1. the **autoencoder** maps images ``[B, 1, 256, 384]`` in [-1, 1] to latents ``[B, 3, 64, 96]`` and back;
2. the **UNet** denoises scaled latents. It has one input channel more than the latents: the head mask at
   latent size (area-downsampled, in [0, 1]) or ``CONDITION_FILL`` where there is none. The in-domain
   *prior* is this UNet trained on unlabelled images, the mask channel always ``CONDITION_FILL``;
   few-shot conditioning adapts the same UNet to labelled pairs (by default through low-rank updates of
   its weights, :mod:`monai_fetal.networks.latent_conditioning`), dropping masks at random, so
   classifier-free guidance is available and no network surgery is needed between the stages.

A latent generator is described by a JSON-able *settings* dict (``latent_generator.json``) beside its
weights (``autoencoder.pt``, ``unet.pt``). Settings with a ``controlnet`` entry describe a generator
conditioned by a MONAI ``ControlNet`` instead (:class:`MaskControlledUNet`: the prior's UNet frozen, its
mask channel always ``CONDITION_FILL``, steered by a copy of its encoder that reads the mask); its
``unet.pt`` holds both networks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.networks.nets import AutoencoderKL, ControlNet, DiffusionModelUNet
from torch import nn

from monai_fetal.atomic import write_json_atomic
from monai_fetal.errors import ConfigError, InputDataError

__all__ = [
    "CONDITION_FILL",
    "LATENT_SETTINGS_NAME",
    "AUTOENCODER_NAME",
    "UNET_NAME",
    "latent_settings",
    "build_autoencoder",
    "build_latent_unet",
    "MaskControlledUNet",
    "build_generator_unet",
    "latent_shape",
    "mask_to_latent",
    "save_latent_settings",
    "read_latent_settings",
    "load_state",
    "LatentGenerator",
    "load_latent_generator",
]

CONDITION_FILL = -1.0
LATENT_SETTINGS_NAME = "latent_generator.json"
AUTOENCODER_NAME = "autoencoder.pt"
UNET_NAME = "unet.pt"
_FORMAT = "monai_fetal.LatentGenerator"
_VERSION = 1

DEFAULT_AUTOENCODER: dict = {
    "channels": [32, 64, 128],
    "num_res_blocks": 1,
    "attention_levels": [False, False, False],
    "latent_channels": 3,
    "norm_num_groups": 16,
    "with_encoder_nonlocal_attn": False,
    "with_decoder_nonlocal_attn": False,
}
"""Three levels (4x downsampling), no attention: 1.0 M parameters, fast on a CPU at 256 x 384."""

DEFAULT_UNET: dict = {
    "channels": [32, 64, 128, 128],
    "attention_levels": [False, False, True, True],
    "num_res_blocks": 1,
    "num_head_channels": 32,
    "norm_num_groups": 16,
}
"""UNet on the 64 x 96 latents, attention at 16 x 24 and 8 x 12: small enough to fine-tune and sample on a CPU."""


def _check_size(size: object) -> list[int]:
    if isinstance(size, int) and not isinstance(size, bool):
        size = [size, size]
    ok = isinstance(size, (list, tuple)) and len(size) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 and v % 16 == 0 for v in size
    )
    if not ok:
        raise ConfigError("image_size", size, "[rows, cols], each a positive multiple of 16, e.g. [256, 384]")
    return [int(size[0]), int(size[1])]


def latent_settings(
    image_size: int | list[int] | None = None,
    autoencoder: Mapping | None = None,
    unet: Mapping | None = None,
    num_train_timesteps: int = 1000,
    schedule: str = "scaled_linear_beta",
    prediction_type: str = "v_prediction",
    scale_factor: float = 1.0,
) -> dict:
    """The JSON-able description of a latent generator.

    Args:
        image_size: ``[rows, cols]`` of the generated images (default 256 x 384, HC18's aspect ratio).
        autoencoder: overrides of ``DEFAULT_AUTOENCODER`` (``AutoencoderKL`` arguments).
        unet: overrides of ``DEFAULT_UNET`` (``DiffusionModelUNet`` arguments).
        num_train_timesteps: diffusion steps of the noise schedule.
        schedule: MONAI noise schedule name.
        prediction_type: ``v_prediction`` or ``epsilon``.
        scale_factor: multiplies the autoencoder's latents to unit variance (set from data by the prior stage).

    Raises:
        ConfigError: a bad size, step count, prediction type or scale factor.
    """
    if prediction_type not in ("v_prediction", "epsilon"):
        raise ConfigError("prediction_type", prediction_type, "'v_prediction' or 'epsilon'")
    if isinstance(num_train_timesteps, bool) or not isinstance(num_train_timesteps, int) or num_train_timesteps < 2:
        raise ConfigError("num_train_timesteps", num_train_timesteps, "an integer >= 2")
    if isinstance(scale_factor, bool) or not isinstance(scale_factor, (int, float)) or not scale_factor > 0:
        raise ConfigError("scale_factor", scale_factor, "a number > 0")
    ae = {**DEFAULT_AUTOENCODER, **(autoencoder or {})}
    latent_channels = int(ae["latent_channels"])
    return {
        "format": _FORMAT,
        "version": _VERSION,
        "image_size": _check_size([256, 384] if image_size is None else image_size),
        "autoencoder": {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, **ae},
        "unet": {
            "spatial_dims": 2,
            "in_channels": latent_channels + 1,
            "out_channels": latent_channels,
            **{**DEFAULT_UNET, **(unet or {})},
        },
        "scheduler": {"num_train_timesteps": num_train_timesteps, "schedule": schedule, "prediction_type": prediction_type},
        "scale_factor": float(scale_factor),
        "condition_fill": CONDITION_FILL,
    }


def build_autoencoder(settings: Mapping) -> AutoencoderKL:
    """The (untrained) ``AutoencoderKL`` of ``settings``: ``[B, 1, H, W]`` -> ``(recon, z_mu, z_sigma)``."""
    return AutoencoderKL(**settings["autoencoder"])


def build_latent_unet(settings: Mapping) -> DiffusionModelUNet:
    """The (untrained) latent UNet of ``settings``: ``[B, latent + 1 (mask), h, w]`` -> ``[B, latent, h, w]``."""
    return DiffusionModelUNet(**settings["unet"])


class MaskControlledUNet(nn.Module):
    """A latent UNet steered by a MONAI ``ControlNet`` that reads the mask channel; same interface as the UNet.

    The UNet sees the noisy latents with its mask channel at ``CONDITION_FILL`` (as the prior was trained);
    the ControlNet sees the same input and the mask channel as its condition, and adds its residuals to the
    UNet's encoder outputs.
    """

    def __init__(self, unet: DiffusionModelUNet, controlnet: ControlNet) -> None:
        super().__init__()
        self.unet = unet
        self.controlnet = controlnet

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """The prediction for ``x`` ``[B, latent + 1, h, w]`` (noisy latents and the mask channel); ``context`` unused."""
        mask = x[:, -1:]
        unconditional = torch.cat([x[:, :-1], torch.full_like(mask, CONDITION_FILL)], dim=1)
        down, middle = self.controlnet(x=unconditional, timesteps=timesteps, controlnet_cond=mask)
        return self.unet(unconditional, timesteps, down_block_additional_residuals=down, mid_block_additional_residual=middle)


def build_generator_unet(settings: Mapping) -> DiffusionModelUNet | MaskControlledUNet:
    """The (untrained) noise predictor of a generator: :func:`build_latent_unet`, with its ControlNet if ``settings`` has one."""
    unet = build_latent_unet(settings)
    if settings.get("controlnet"):
        return MaskControlledUNet(unet, ControlNet(**settings["controlnet"]))
    return unet


def latent_shape(settings: Mapping) -> tuple[int, int, int]:
    """``(channels, rows, cols)`` of the latents."""
    factor = 2 ** (len(settings["autoencoder"]["channels"]) - 1)
    rows, cols = settings["image_size"]
    return int(settings["autoencoder"]["latent_channels"]), rows // factor, cols // factor


def mask_to_latent(masks: torch.Tensor, settings: Mapping) -> torch.Tensor:
    """Head masks ``[B, 1, H, W]`` in {0, 1} to the UNet's condition channel ``[B, 1, h, w]`` (area mean, in [0, 1])."""
    _, rows, cols = latent_shape(settings)
    return F.interpolate(masks.float(), size=(rows, cols), mode="area")


def save_latent_settings(settings: Mapping, path: str | Path) -> Path:
    """Write ``settings`` to ``path`` (JSON, atomic); refuse to replace different settings of earlier training.

    Raises:
        ConfigError: ``path`` holds another generator's settings (the folder belongs to it).
    """
    path = Path(path)
    if path.is_file():
        previous = read_latent_settings(path)
        if previous != json.loads(json.dumps(dict(settings))):
            changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
            raise ConfigError(
                "output_dir", str(path.parent), f"a new folder: it holds a generator with other settings ({', '.join(changed)} differ)"
            )
    write_json_atomic(path, dict(settings))
    return path


def read_latent_settings(path: str | Path) -> dict:
    """Latent generator settings from ``latent_generator.json`` or from the folder holding it.

    Raises:
        InputDataError: the file is missing or is not latent generator settings.
    """
    path = Path(path)
    if path.is_dir():
        path = path / LATENT_SETTINGS_NAME
    if not path.is_file():
        raise InputDataError(path, "not found", "give a folder written by the diffusion bundle's train_prior or train_conditioning")
    try:
        settings = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputDataError(path, f"is not JSON ({err})", "give a latent_generator.json written by the bundle") from err
    if not isinstance(settings, dict) or settings.get("format") != _FORMAT or settings.get("version") != _VERSION:
        raise InputDataError(path, "is not latent generator settings", f"give a file with format '{_FORMAT}' version {_VERSION}")
    return settings


def load_state(module: torch.nn.Module, path: str | Path, key: str | None = None) -> torch.nn.Module:
    """Load a state dict (or a checkpoint's ``key`` entry, e.g. ``ema``) into ``module`` with ``weights_only=True``.

    Half-precision files (how the shipped prior is stored) are cast to the module's dtype.

    Raises:
        InputDataError: the file is missing, unreadable, or does not fit ``module``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError(path, "not found", "train this stage first, or give the folder that holds it")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if key is not None and isinstance(state, Mapping) and key in state:
            state = state[key]
        module.load_state_dict(state)
    except (RuntimeError, TypeError, KeyError, EOFError, ValueError) as err:
        raise InputDataError(path, f"does not hold weights of this network ({str(err).splitlines()[0]})", "give weights written with these settings") from err
    return module


class LatentGenerator(nn.Module):
    """A trained latent generator: its autoencoder, its UNet and its settings, as one module.

    ``mode`` is ``"latent"`` (the pixel-space generators' modes are ``concat``, ``controlnet`` and ``joint``).
    """

    mode = "latent"

    def __init__(self, autoencoder: AutoencoderKL, unet: DiffusionModelUNet | MaskControlledUNet, settings: Mapping) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.unet = unet
        self.settings = dict(settings)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor | None = None, context: torch.Tensor | None = None) -> torch.Tensor:
        """The UNet's prediction for ``x`` ``[B, latent + 1, h, w]`` (noisy latents and the mask channel)."""
        if timesteps is None:
            timesteps = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        return self.unet(x, timesteps)


def load_latent_generator(folder: str | Path, device: str | torch.device = "cpu") -> LatentGenerator:
    """The latent generator in ``folder`` (``latent_generator.json``, ``autoencoder.pt``, ``unet.pt``), in eval mode."""
    folder = Path(folder)
    settings = read_latent_settings(folder)
    autoencoder = load_state(build_autoencoder(settings), folder / AUTOENCODER_NAME)
    unet = load_state(build_generator_unet(settings), folder / UNET_NAME)
    return LatentGenerator(autoencoder, unet, settings).to(device).eval()
