"""The mask-conditioned diffusion generator: MONAI's ``DiffusionModelUNet`` (and ``ControlNet``) per mode.

Modes (one switch, see ``MODES``):

``concat``
    the head mask is concatenated to the noisy image at the UNet input (2 channels in, noise of
    the image out); masks replaced by ``CONDITION_FILL`` in training allow classifier-free guidance.
``controlnet``
    an unconditional UNet on images (trained first, then frozen) steered by a MONAI ``ControlNet``
    that reads the mask.
``joint``
    image and mask are denoised together as two channels (2 in, 2 out); no condition.

Every mode is wrapped in :class:`MaskConditionedDiffusion`, whose input is always ``[B, 2, H, W]``
(noisy image + mask, or noisy image + noisy mask), so MONAI's ``DiffusionInferer`` in ``concat``
conditioning drives all of them, classifier-free guidance included. A generator is described by a
JSON-able *settings* dict (mode, size, network arguments, noise schedule) written beside its weights.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from monai.networks.nets import ControlNet, DiffusionModelUNet
from monai.networks.utils import copy_model_state
from torch import nn

from monai_fetal.atomic import write_json_atomic
from monai_fetal.checkpoint_files import latest_checkpoint
from monai_fetal.errors import ConfigError, InputDataError

__all__ = [
    "MODES",
    "PREDICTION_TYPES",
    "PRESETS",
    "CONDITION_FILL",
    "SETTINGS_NAME",
    "WEIGHTS_NAME",
    "MaskConditionedDiffusion",
    "generator_settings",
    "build_generator",
    "save_settings",
    "read_settings",
    "settings_or_default",
    "find_generator_files",
    "load_generator",
    "load_generator_weights",
    "start_controlnet",
]

logger = logging.getLogger(__name__)

MODES = ("concat", "controlnet", "joint")
PREDICTION_TYPES = ("v_prediction", "epsilon")
CONDITION_FILL = -1.0
SETTINGS_NAME = "generator.json"
WEIGHTS_NAME = "model.pt"
CHECKPOINT_DIR = "checkpoints"
_FORMAT = "monai_fetal.MaskConditionedDiffusion"
_VERSION = 1

PRESETS: dict[str, dict] = {
    "cpu": {
        "image_size": [64, 96],
        "unet": {
            "channels": [16, 32, 64],
            "attention_levels": [False, False, True],
            "num_res_blocks": 1,
            "num_head_channels": 16,
            "norm_num_groups": 8,
        },
        "controlnet_embedding": [16],
    },
    "gpu": {
        "image_size": [256, 384],
        "unet": {
            "channels": [64, 128, 256, 256],
            "attention_levels": [False, False, False, True],
            "num_res_blocks": 2,
            "num_head_channels": 64,
            "norm_num_groups": 32,
        },
        "controlnet_embedding": [32],
    },
}
"""Network presets: image size ``[rows, cols]`` (HC18's aspect ratio), UNet arguments, ControlNet mask embedding."""

_UNET_KEYS = ("channels", "attention_levels", "num_res_blocks", "num_head_channels", "norm_num_groups")


def _check_mode(mode: object) -> str:
    if mode not in MODES:
        raise ConfigError("mode", mode, "one of " + ", ".join(repr(m) for m in MODES))
    return str(mode)


def _check_image_size(size: object, multiple: int) -> list[int]:
    """``[rows, cols]`` from an int (square) or two ints, each positive and divisible by ``multiple``."""
    if isinstance(size, (int,)) and not isinstance(size, bool):
        size = [size, size]
    ok = (
        isinstance(size, (list, tuple))
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 and v % multiple == 0 for v in size)
    )
    if not ok:
        raise ConfigError("image_size", size, f"a positive size divisible by {multiple} (the UNet's downsampling), e.g. 64 or [64, 96]")
    return [int(size[0]), int(size[1])]


def generator_settings(
    mode: str = "concat",
    preset: str = "cpu",
    image_size: int | list[int] | None = None,
    unet: Mapping | None = None,
    num_train_timesteps: int = 1000,
    schedule: str = "linear_beta",
    prediction_type: str = "v_prediction",
) -> dict:
    """The JSON-able description of a generator: ``preset``'s network with ``image_size`` and ``unet`` overrides.

    Args:
        mode: one of ``MODES``.
        preset: a key of ``PRESETS`` (``cpu``: 64 x 96, small UNet; ``gpu``: 256 x 384, larger UNet).
        image_size: ``[rows, cols]`` or one int for a square; default the preset's.
        unet: overrides of the preset's UNet arguments (keys of ``_UNET_KEYS``).
        num_train_timesteps: diffusion steps of the noise schedule.
        schedule: MONAI noise schedule name (``linear_beta``, ``scaled_linear_beta``, ``sigmoid_beta``, ``cosine``).
        prediction_type: what the network predicts: ``v_prediction`` (default; its image estimate at high noise
            is not divided by the signal level, so a briefly trained network samples far cleaner images than
            with ``epsilon``) or ``epsilon`` (the noise).

    Raises:
        ConfigError: unknown mode, preset or UNet argument, bad size or step count.
    """
    mode = _check_mode(mode)
    if preset not in PRESETS:
        raise ConfigError("preset", preset, "one of " + ", ".join(repr(p) for p in PRESETS))
    unknown = sorted(set(unet or {}) - set(_UNET_KEYS))
    if unknown:
        raise ConfigError("unet_args", unknown, "keys among " + ", ".join(_UNET_KEYS))
    if prediction_type not in PREDICTION_TYPES:
        raise ConfigError("prediction_type", prediction_type, "one of " + ", ".join(repr(p) for p in PREDICTION_TYPES))
    if isinstance(num_train_timesteps, bool) or not isinstance(num_train_timesteps, int) or num_train_timesteps < 2:
        raise ConfigError("num_train_timesteps", num_train_timesteps, "an integer >= 2")
    network = {**PRESETS[preset]["unet"], **(unet or {})}
    levels = len(network["channels"])
    size = _check_image_size(PRESETS[preset]["image_size"] if image_size is None else image_size, 2 ** (levels - 1))
    image_channels = 2 if mode == "joint" else 1
    base = {"spatial_dims": 2, **{k: list(v) if isinstance(v, (list, tuple)) else v for k, v in network.items()}}
    settings = {
        "format": _FORMAT,
        "version": _VERSION,
        "mode": mode,
        "preset": preset,
        "image_size": size,
        "unet": {**base, "in_channels": 2 if mode != "controlnet" else 1, "out_channels": image_channels},
        "controlnet": None,
        "scheduler": {"num_train_timesteps": num_train_timesteps, "schedule": schedule, "prediction_type": prediction_type},
        "condition_fill": CONDITION_FILL,
    }
    if mode == "controlnet":
        settings["controlnet"] = {
            **base,
            "in_channels": 1,
            "conditioning_embedding_in_channels": 1,
            "conditioning_embedding_num_channels": list(PRESETS[preset]["controlnet_embedding"]),
        }
    return settings


class MaskConditionedDiffusion(nn.Module):
    """A noise predictor for head image-mask pairs; one interface for every mode.

    Args:
        mode: ``concat``, ``controlnet`` or ``joint``.
        unet: the UNet: 2 channels in and 1 out (``concat``), 1 in and 1 out (``controlnet``), 2 in and 2 out (``joint``).
        controlnet: the ControlNet reading the mask (``controlnet`` mode only).
    """

    def __init__(self, mode: str, unet: DiffusionModelUNet, controlnet: ControlNet | None = None) -> None:
        super().__init__()
        self.mode = _check_mode(mode)
        if (controlnet is None) == (mode == "controlnet"):
            raise ConfigError("controlnet", type(controlnet).__name__, "a ControlNet in controlnet mode only")
        self.unet = unet
        self.controlnet = controlnet

    @property
    def image_channels(self) -> int:
        """Channels that are generated: 2 (image and mask) in ``joint`` mode, else 1 (image)."""
        return 2 if self.mode == "joint" else 1

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor | None = None, context: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted noise ``[B, image_channels, H, W]``.

        Args:
            x: ``[B, 2, H, W]``: the noisy image and the mask in [0, 1] (``CONDITION_FILL`` where dropped),
                or in ``joint`` mode the noisy image and the noisy mask.
            timesteps: ``[B]`` or ``[1]`` diffusion steps; default 0 (the last denoising step), so that the
                module can be probed with an input alone (as ``verify_net_in_out`` does).
            context: unused (MONAI's inferers pass ``None``).
        """
        if x.ndim != 4 or x.shape[1] != 2:
            raise ValueError(f"expected input [B, 2, H, W] (image and mask channels), got {tuple(x.shape)}")
        if timesteps is None:
            timesteps = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        if self.controlnet is None:
            return self.unet(x, timesteps)
        image, mask = x[:, :1], x[:, 1:]
        down, middle = self.controlnet(x=image, timesteps=timesteps, controlnet_cond=mask)
        return self.unet(image, timesteps, down_block_additional_residuals=down, mid_block_additional_residual=middle)


def _check_settings(settings: object, source: str) -> Mapping:
    if not isinstance(settings, Mapping) or settings.get("format") != _FORMAT or settings.get("version") != _VERSION:
        found = settings.get("format") if isinstance(settings, Mapping) else type(settings).__name__
        raise ConfigError(source, found, f"generator settings with format '{_FORMAT}' version {_VERSION}")
    return settings


def build_generator(settings: Mapping) -> MaskConditionedDiffusion:
    """The (untrained) generator described by ``settings`` (from :func:`generator_settings`)."""
    settings = _check_settings(settings, "settings")
    controlnet = ControlNet(**settings["controlnet"]) if settings["controlnet"] else None
    return MaskConditionedDiffusion(settings["mode"], DiffusionModelUNet(**settings["unet"]), controlnet)


def start_controlnet(generator: MaskConditionedDiffusion, base: nn.Module) -> MaskConditionedDiffusion:
    """Second stage of ``controlnet`` mode: ``base``'s weights into the UNet (frozen), the ControlNet from them.

    ``base`` is the trained unconditional UNet (its EMA). The ControlNet starts as a copy of the UNet's
    encoder with zero output convolutions, as in the ControlNet paper. Returns ``generator``.
    """
    if generator.controlnet is None:
        raise ConfigError("mode", generator.mode, "'controlnet' for a ControlNet stage")
    generator.unet.load_state_dict(base.state_dict())
    generator.unet.requires_grad_(False)
    copy_model_state(generator.controlnet, generator.unet.state_dict())
    return generator


def save_settings(settings: Mapping, path: str | Path) -> Path:
    """Write ``settings`` to ``path`` (JSON, atomic); refuse to replace different settings of earlier training.

    Raises:
        ConfigError: ``path`` holds settings of another generator (the run folder belongs to it).
    """
    path = Path(path)
    if path.is_file():
        previous = read_settings(path)
        if previous != json.loads(json.dumps(settings)):
            changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
            raise ConfigError(
                "output_dir",
                str(path.parent),
                f"a new folder: it holds a generator trained with other settings ({', '.join(changed)} differ)",
            )
    write_json_atomic(path, dict(settings))
    return path


def read_settings(path: str | Path) -> dict:
    """Generator settings from a ``generator.json`` or from a generator folder.

    Raises:
        InputDataError: the file is missing or is not generator settings.
    """
    path = Path(path)
    if path.is_dir():
        path = path / SETTINGS_NAME
    if not path.is_file():
        raise InputDataError(path, "not found", "train a generator first: monai-fetal train-generator --out DIR")
    try:
        return dict(_check_settings(json.loads(path.read_text()), "settings"))
    except (json.JSONDecodeError, ConfigError) as err:
        raise InputDataError(path, f"is not generator settings ({err})", "give a folder written by train-generator") from err


def settings_or_default(path: str | Path) -> dict:
    """Settings of the generator at ``path`` (folder or checkpoint), or the default ones while there is none.

    Lets a bundle build its ``network_def`` before any training (``verify_net_in_out`` does); loading
    weights from ``path`` still fails with a clear error when nothing was trained there.
    """
    try:
        settings_path, _ = find_generator_files(path)
    except InputDataError:
        return generator_settings()
    return read_settings(settings_path)


def find_generator_files(path: str | Path) -> tuple[Path, Path]:
    """``(settings, weights)`` of a generator folder or of a checkpoint file in it (or in its ``checkpoints/``).

    A folder gives its ``model.pt`` (the final EMA weights) or, while training is unfinished, its newest
    ``checkpoints/checkpoint_epoch=N.pt``.

    Raises:
        InputDataError: no settings beside the weights, or no weights at all.
    """
    path = Path(path)
    if path.is_dir():
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            weights = latest_checkpoint(path / CHECKPOINT_DIR)
        if weights is None:
            raise InputDataError(path, "holds no model.pt and no checkpoint", "train the generator (or wait for its first epoch)")
        folder = path
    elif path.is_file():
        weights = path
        folder = path.parent if (path.parent / SETTINGS_NAME).is_file() else path.parent.parent
    else:
        raise InputDataError(path, "not found", "give a generator folder from train-generator or a checkpoint in it")
    settings = folder / SETTINGS_NAME
    if not settings.is_file():
        raise InputDataError(weights, f"has no {SETTINGS_NAME} beside it", "give the generator folder that train-generator wrote")
    return settings, weights


def load_generator_weights(
    generator: MaskConditionedDiffusion, weights: str | Path, device: str | torch.device = "cpu"
) -> MaskConditionedDiffusion:
    """Load EMA weights from ``model.pt`` or from a training checkpoint (its ``ema`` entry) into ``generator``.

    Returns ``generator`` on ``device`` in eval mode.

    Raises:
        InputDataError: the file is not a state dict of this generator.
    """
    weights = Path(weights)
    state = torch.load(weights, map_location=device, weights_only=True)
    if isinstance(state, Mapping) and "ema" in state:
        state = state["ema"]
    try:
        generator.load_state_dict(state)
    except (RuntimeError, TypeError) as err:
        raise InputDataError(weights, f"does not match the generator settings ({err})", "give weights of this generator") from err
    return generator.to(device).eval()


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[MaskConditionedDiffusion, dict]:
    """The trained generator (EMA weights, eval mode, on ``device``) and its settings, from a folder or checkpoint."""
    settings_path, weights = find_generator_files(path)
    settings = read_settings(settings_path)
    logger.info("generator %s (%s mode) from %s", settings_path.parent, settings["mode"], weights)
    return load_generator_weights(build_generator(settings), weights, device), settings
