"""How a :class:`PromptedSam` runs: encoder precision, OpenVINO for frozen parts, and the embedding cache.

segment-anything keeps the model (``Sam``) apart from what runs it (``SamPredictor``, the ONNX export
wrapper); :class:`SamRuntime` is that runner here. It is a module wrapping the model, so that a bundle's
``network_def`` builds the fast path (MONAI Label and the bundle tools read ``network_def`` only), the
trainer and ``DistributedDataParallel`` run it like any network, and its state dict is the model's, key
for key: ``model.pt`` files load into either.
"""

from __future__ import annotations

from pathlib import Path

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder
from torch import nn

from monai_fetal.config_checks import CHOICES, check_choice
from monai_fetal.errors import ConfigError
from monai_fetal.networks.bfloat16 import native_bfloat16
from monai_fetal.networks.embedding_cache import EmbeddingCache, module_fingerprint
from monai_fetal.networks.locator import HeadLocator
from monai_fetal.networks.openvino_runtime import OpenVinoModel, openvino_available, phantom_frames
from monai_fetal.networks.prompted_sam import PromptedSam
from monai_fetal.networks.tiny_vit_export import export_friendly

__all__ = ["SamRuntime", "PRECISIONS", "default_precision"]

OPENVINO_HINTS = {"ov-fp32": "f32", "ov-bf16": "bf16", "ov-int8": "bf16"}  # int8 encoder: the rest, and the decoder, in bf16
PRECISIONS = CHOICES["precision"]
_MODEL_PREFIX = "model."


def default_precision(device: str | torch.device) -> str:
    """The fastest encoder path that keeps fp32's Dice (benchmarks/README.md) on ``device``.

    On a CPU: OpenVINO int8 (``ov-int8``) when ``openvino`` and ``nncf`` are installed (they are
    dependencies of the package), else torch ``bf16`` with native bfloat16 support (AVX512-BF16 or
    AMX) or ``fp32``. On CUDA ``fp32``: the bundles' ``amp`` switch governs mixed precision there.
    """
    if torch.device(device).type != "cpu":
        return "fp32"
    if openvino_available(int8=True):
        return "ov-int8"
    return "bf16" if native_bfloat16() else "fp32"


def _rename_keys(state: dict, old: str, new: str) -> None:
    for key in [key for key in state if key.startswith(old)]:
        state[new + key[len(old) :]] = state.pop(key)


def _write_model_keys(module: SamRuntime, state: dict, prefix: str, metadata: dict) -> None:
    """``state_dict`` post-hook: the model's keys, without ``model.``."""
    _rename_keys(state, prefix + _MODEL_PREFIX, prefix)


def _read_model_keys(module: SamRuntime, state: dict, prefix: str, *args) -> None:
    """``load_state_dict`` pre-hook: the model's keys under ``model.``; what the old weights made is dropped."""
    _rename_keys(state, prefix, prefix + _MODEL_PREFIX)
    module._cache, module._openvino = None, {}


class SamRuntime(nn.Module):
    """A :class:`PromptedSam` run fast: its interface (``encode``, ``decode``, ``locate``, ``forward``) over the chosen path.

    ``precision`` picks how frozen parts run: torch ``fp32``; torch ``bf16`` autocast with a channels-last
    encoder (roughly half the CPU encoder time with AVX512-BF16); OpenVINO ``ov-fp32`` / ``ov-bf16`` /
    ``ov-int8`` (the encoder int8-quantised once on procedural phantoms), faster still on a CPU
    (benchmarks/README.md). The ``ov-`` paths need the ``openvino`` package (and ``nncf`` for
    ``ov-int8``) and a CPU model, and serve frozen parts only: a trainable encoder runs in torch fp32;
    a frozen prompt encoder and mask decoder (policy ``none``) run box prompts in OpenVINO (fp32 for
    ``ov-fp32``, else bf16), other prompts in torch fp32. bf16 embeddings differ from fp32 ones by ~1e-2
    at no measured Dice cost.

    With ``embedding_cache_dir`` a frozen encoder's embeddings are cached by input content
    (:class:`EmbeddingCache`, fp16 on disk) under a fingerprint of the encoder's weights, name, frame size
    and precision, so precisions never mix; a trainable encoder bypasses the cache.

    Converted parts and the cache fingerprint follow the weights: they are rebuilt at next use after a
    ``load_state_dict`` (as MONAI Label and resuming trainers load weights after building the network).

    Args:
        model: the model (this module's only child; its freezing policy decides what may be converted or cached).
        precision: one of :data:`PRECISIONS` (see :func:`default_precision`).
        embedding_cache_dir: folder of the on-disk embedding cache; ``None``: no cache.
        memory_items: embeddings also kept in memory.

    Raises:
        ConfigError: an unknown ``precision``, or an ``ov-`` one without ``openvino`` (and ``nncf``).
    """

    def __init__(
        self, model: PromptedSam, precision: str = "fp32", embedding_cache_dir: str | Path | None = None, memory_items: int = 256
    ) -> None:
        super().__init__()
        self.precision = check_choice("precision", precision, PRECISIONS)
        if precision in OPENVINO_HINTS and not openvino_available(int8=precision == "ov-int8"):
            raise ConfigError("precision", precision, "'fp32' or 'bf16', or install openvino and nncf (pip install openvino nncf)")
        self.model = model
        self.embedding_cache_dir = embedding_cache_dir
        self.memory_items = memory_items
        self._cache: EmbeddingCache | None = None
        self._openvino: dict[str, OpenVinoModel] = {}
        model.image_encoder.to(memory_format=torch.channels_last if precision == "bf16" else torch.contiguous_format)
        self.register_state_dict_post_hook(_write_model_keys)
        self.register_load_state_dict_pre_hook(_read_model_keys)

    @property
    def locator(self) -> HeadLocator:
        """The model's head locator."""
        return self.model.locator

    @property
    def frame_size(self) -> int:
        """The model's frame size ``S``."""
        return self.model.frame_size

    @property
    def embedding_cache(self) -> EmbeddingCache | None:
        """The embedding cache for the encoder's current weights (``None`` without ``embedding_cache_dir``)."""
        if self._cache is None and self.embedding_cache_dir is not None:
            model = self.model
            fingerprint = module_fingerprint(model.image_encoder, f"{model.name}:{model.frame_size}:{self.precision}")
            self._cache = EmbeddingCache(self.embedding_cache_dir, fingerprint, self.memory_items)
        return self._cache

    def _in_openvino(self, *parts: str) -> bool:
        frozen = not any(p.requires_grad for name in parts for p in getattr(self.model, name).parameters())
        if not (self.precision in OPENVINO_HINTS and frozen):
            return False
        if self.model.pixel_mean.device.type != "cpu":
            raise ConfigError("precision", self.precision, "'fp32' or 'bf16' on a GPU (OpenVINO runs on the CPU here)")
        return True

    def _calibration_inputs(self) -> list[torch.Tensor]:
        return [self.model.normalize(frame) for frame in phantom_frames(self.frame_size)]

    def _openvino_encoder(self) -> OpenVinoModel:
        if "encoder" not in self._openvino:
            model, int8 = self.model, self.precision == "ov-int8"
            self._openvino["encoder"] = OpenVinoModel(
                export_friendly(model.image_encoder),
                (torch.zeros(1, 3, model.frame_size, model.frame_size),),
                f"{module_fingerprint(model.image_encoder, model.name)}-encoder-{model.frame_size}-{'int8' if int8 else 'float'}",
                OPENVINO_HINTS[self.precision],
                self._calibration_inputs if int8 else None,
            )
        return self._openvino["encoder"]

    def _openvino_box_decoder(self, multimask: bool) -> OpenVinoModel:
        key = "multimask_box_decoder" if multimask else "box_decoder"
        if key not in self._openvino:
            decoder = _BoxDecoder(self.model.prompt_encoder, self.model.mask_decoder, multimask)
            height, width = self.model.prompt_encoder.image_embedding_size
            examples = (torch.zeros(1, self.model.prompt_encoder.embed_dim, height, width), torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
            name = f"{module_fingerprint(decoder, self.model.name)}-{key.replace('_', '-')}-{self.frame_size}"
            self._openvino[key] = OpenVinoModel(decoder, examples, name, OPENVINO_HINTS[self.precision])
        return self._openvino[key]

    def _encode(self, image: torch.Tensor) -> torch.Tensor:
        if self._in_openvino("image_encoder"):
            return self._openvino_encoder()(self.model.normalize(image))[0]
        bf16 = self.precision == "bf16"
        with torch.autocast(image.device.type, dtype=torch.bfloat16, enabled=bf16):
            embeddings = self.model.encode(image.contiguous(memory_format=torch.channels_last) if bf16 else image)
        return embeddings.float().contiguous()

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Image embeddings ``[B, 256, 64, 64]`` of ``image`` ``[B, 3, S, S]`` on this path (cached when the encoder is frozen)."""
        self.model.check_image(image)
        image = image.as_subclass(torch.Tensor)
        cache = self.embedding_cache if self.model.encoder_frozen else None
        return cache.encode(image, self._encode) if cache is not None else self._encode(image)

    def decode(
        self, embeddings: torch.Tensor, boxes: torch.Tensor | None = None, multimask: bool = False, return_iou: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """:meth:`PromptedSam.decode`; box prompts without gradient run in OpenVINO under ``ov-*`` when the decoder is frozen
        (one graph for the single mask, one for the three multimask outputs)."""
        embeddings = embeddings.as_subclass(torch.Tensor)
        if boxes is None or embeddings.requires_grad or not self._in_openvino("prompt_encoder", "mask_decoder"):
            return self.model.decode(embeddings, boxes, multimask, return_iou)
        logits, ious = self._openvino_box_decoder(multimask)(embeddings, self.model.check_boxes(embeddings, boxes))
        logits = self.model.to_frame(logits)
        return (logits, ious) if return_iou else logits

    def locate(self, embeddings: torch.Tensor) -> torch.Tensor:
        """:meth:`PromptedSam.locate`."""
        return self.model.locate(embeddings)

    def forward(self, image: torch.Tensor, boxes: torch.Tensor | None = None, with_locator: bool = False) -> torch.Tensor:
        """:meth:`PromptedSam.forward` on this path: ``[B, 1, S, S]`` mask logits (``[B, 2, S, S]`` with the locator's)."""
        embeddings = self.encode(image)
        logits = self.decode(embeddings, boxes)
        return torch.cat([logits, self.locate(embeddings)], dim=1) if with_locator else logits


class _BoxDecoder(nn.Module):
    """Prompt encoder + mask decoder for one box, with the single mask or the three multimask outputs: the part
    of :meth:`PromptedSam.decode` that OpenVINO runs (a traceable, fixed-shape graph)."""

    def __init__(self, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder, multimask: bool = False) -> None:
        super().__init__()
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.multimask = multimask

    def forward(self, embeddings: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sparse, dense = self.prompt_encoder(points=None, boxes=boxes, masks=None)
        return self.mask_decoder(
            image_embeddings=embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=self.multimask,
        )
