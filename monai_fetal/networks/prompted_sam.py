"""A box-prompted SAM: image encoder + segment-anything's prompt encoder and mask decoder, in the SAM frame."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder, PromptEncoder
from torch import nn

from monai_fetal.config_checks import CHOICES, check_choice
from monai_fetal.errors import ConfigError
from monai_fetal.networks.embedding_cache import EmbeddingCache, module_fingerprint
from monai_fetal.networks.locator import HeadLocator
from monai_fetal.networks.openvino_runtime import OpenVinoModel, openvino_available, phantom_frames
from monai_fetal.networks.tiny_vit_export import export_friendly

__all__ = ["PromptedSam", "PARTS", "TRAINABLE", "PRECISIONS", "default_precision"]

PARTS = ("image_encoder", "prompt_encoder", "mask_decoder", "locator")
TRAINABLE: dict[str, tuple[str, ...]] = {
    "none": (),
    "decoder": ("mask_decoder", "locator"),
    "decoder+prompt": ("prompt_encoder", "mask_decoder", "locator"),
    "full": PARTS,
}
LOCATOR_PREFIX = "locator."
OPENVINO_HINTS = {"ov-fp32": "f32", "ov-bf16": "bf16", "ov-int8": "bf16"}  # int8 encoder: the rest, and the decoder, in bf16
PRECISIONS = CHOICES["precision"]


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
    bf16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return "bf16" if bf16 else "fp32"


class PromptedSam(nn.Module):
    """SAM with an optional box prompt, taking images in the SAM frame and returning mask logits there.

    Inputs are always ``[B, 3, S, S]`` in [0, 1] (greyscale replicated to 3 channels, longest side
    resized to ``S = frame_size``, zero-padded bottom/right); the module normalises them with its
    ``pixel_mean`` / ``pixel_std`` buffers, given in [0, 1] units (0 and 1 for LiteMedSAM, SAM's
    ImageNet statistics divided by 255 for the ViT models). The buffers are not saved in the state
    dict, so state dicts match the published LiteMedSAM and SAM files key for key.

    The mask decoder is Meta's, which takes one image per call, so :meth:`decode` loops over the
    batch as ``segment_anything.modeling.Sam.forward`` does. Parts whose parameters are all frozen
    stay in eval mode under ``train()``, so a frozen encoder's batch-norm statistics never drift.

    A :class:`HeadLocator` on the embeddings (trained with the decoder, under every policy) gives the
    automatic prompt its first box; published SAM weights do not have it, so builders load it only
    from fine-tuned checkpoints.

    Args:
        image_encoder: maps ``[B, 3, S, S]`` (normalised) to embeddings ``[B, 256, 64, 64]``.
        prompt_encoder: segment-anything ``PromptEncoder`` whose ``input_image_size`` is ``(S, S)``.
        mask_decoder: segment-anything ``MaskDecoder``.
        pixel_mean: per-channel mean in [0, 1] units.
        pixel_std: per-channel standard deviation in [0, 1] units.
        name: the builder name (part of the embedding-cache fingerprint).
    """

    def __init__(
        self,
        image_encoder: nn.Module,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        pixel_mean: Sequence[float] = (0.0, 0.0, 0.0),
        pixel_std: Sequence[float] = (1.0, 1.0, 1.0),
        name: str = "custom",
    ) -> None:
        super().__init__()
        height, width = prompt_encoder.input_image_size
        if height != width:
            raise ValueError(f"the prompt encoder's input_image_size must be square, got {(height, width)}")
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.locator = HeadLocator(prompt_encoder.embed_dim)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.frame_size = int(height)
        self.name = name
        self.precision = "fp32"
        self._cache: EmbeddingCache | None = None
        self._openvino: dict[str, OpenVinoModel] = {}

    @property
    def encoder_frozen(self) -> bool:
        """True when no image-encoder parameter requires a gradient."""
        return not any(p.requires_grad for p in self.image_encoder.parameters())

    def set_trainable(self, trainable: str) -> PromptedSam:
        """Freeze all but ``decoder`` (mask decoder and locator), ``decoder+prompt`` (and prompt encoder), nothing
        (``full``) or everything (``none``: inference)."""
        check_choice("trainable", trainable, tuple(TRAINABLE))
        self._openvino = {}
        for name in PARTS:
            getattr(self, name).requires_grad_(name in TRAINABLE[trainable])
        return self._set_mode(self.training)

    def train(self, mode: bool = True) -> PromptedSam:
        """Set training mode; fully frozen parts stay in eval mode.

        Asking for the mode the model is already in returns at once: MONAI's evaluators call ``eval()``
        every iteration, and walking every module and parameter costs 8 ms per image.
        """
        return self if mode == self.training else self._set_mode(mode)

    def _set_mode(self, mode: bool) -> PromptedSam:
        super().train(mode)
        for name in PARTS:
            if not any(p.requires_grad for p in getattr(self, name).parameters()):
                getattr(self, name).eval()
        return self

    def set_precision(self, precision: str) -> PromptedSam:
        """Run the frozen image encoder in torch ``fp32``, torch ``bf16`` autocast, or OpenVINO ``ov-fp32`` / ``ov-bf16``.

        torch ``bf16`` (channels-last) roughly halves the CPU encoder time on processors with
        AVX512-BF16; OpenVINO on the CPU is faster still (benchmarks/README.md). bf16 embeddings differ
        from fp32 ones by ~1e-2 at no measured Dice cost, and the cache keeps precisions apart. The
        ``ov-`` paths need the ``openvino`` package (and ``nncf`` for ``ov-int8``) and a CPU model, and
        serve frozen parts only: a trainable encoder runs in torch fp32; a frozen prompt encoder and mask
        decoder (policy ``none``) run box prompts in OpenVINO (fp32 for ``ov-fp32``, else bf16), other prompts in torch fp32. Call it
        before :meth:`use_embedding_cache`.
        """
        self.precision = check_choice("precision", precision, PRECISIONS)
        if precision in OPENVINO_HINTS and not openvino_available(int8=precision == "ov-int8"):
            raise ConfigError("precision", precision, "'fp32' or 'bf16', or install openvino and nncf (pip install openvino nncf)")
        if precision in OPENVINO_HINTS and self.pixel_mean.device.type != "cpu":
            raise ConfigError("precision", precision, "'fp32' or 'bf16' on a GPU (OpenVINO runs on the CPU here)")
        memory_format = torch.channels_last if precision == "bf16" else torch.contiguous_format
        self.image_encoder.to(memory_format=memory_format)
        self._openvino = {}
        return self

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``; OpenVINO parts are rebuilt from the new weights at next use."""
        self._openvino = {}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def use_embedding_cache(self, root: str | Path | None, memory_items: int = 256) -> PromptedSam:
        """Cache encoder embeddings by input content under ``root`` (``None``: no cache); returns ``self``.

        The cache only serves a frozen encoder; with a trainable encoder it is bypassed. Call it after
        the weights are loaded: the fingerprint (a hash of the encoder's weights) is taken now.
        """
        if root is None:
            self._cache = None
        else:
            fingerprint = module_fingerprint(self.image_encoder, f"{self.name}:{self.frame_size}:{self.precision}")
            self._cache = EmbeddingCache(root, fingerprint, memory_items)
        return self

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` in [0, 1] -> the encoder's input scale."""
        return (image - self.pixel_mean) / self.pixel_std

    def _check_image(self, image: torch.Tensor) -> None:
        size = self.frame_size
        if image.ndim != 4 or image.shape[1] != 3 or tuple(image.shape[-2:]) != (size, size):
            raise ValueError(f"image must be [B, 3, {size}, {size}] in the SAM frame, got shape {tuple(image.shape)}")

    def _calibration_inputs(self) -> list[torch.Tensor]:
        return [self.normalize(frame.to(self.pixel_mean.device)) for frame in phantom_frames(self.frame_size)]

    def _openvino_encoder(self) -> OpenVinoModel:
        if "encoder" not in self._openvino:
            int8 = self.precision == "ov-int8"
            fingerprint = module_fingerprint(self.image_encoder, self.name)
            self._openvino["encoder"] = OpenVinoModel(
                export_friendly(self.image_encoder),
                (torch.zeros(1, 3, self.frame_size, self.frame_size),),
                f"{fingerprint}-encoder-{self.frame_size}-{'int8' if int8 else 'float'}",
                OPENVINO_HINTS[self.precision],
                self._calibration_inputs if int8 else None,
            )
        return self._openvino["encoder"]

    def _openvino_box_decoder(self) -> OpenVinoModel:
        if "box_decoder" not in self._openvino:
            decoder = _BoxDecoder(self.prompt_encoder, self.mask_decoder)
            height, width = self.prompt_encoder.image_embedding_size
            examples = (torch.zeros(1, self.prompt_encoder.embed_dim, height, width), torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
            name = f"{module_fingerprint(decoder, self.name)}-box-decoder-{self.frame_size}"
            self._openvino["box_decoder"] = OpenVinoModel(decoder, examples, name, OPENVINO_HINTS[self.precision])
        return self._openvino["box_decoder"]

    def _in_openvino(self, *parts: str) -> bool:
        frozen = not any(p.requires_grad for name in parts for p in getattr(self, name).parameters())
        return self.precision in OPENVINO_HINTS and frozen

    def _encode(self, image: torch.Tensor) -> torch.Tensor:
        if self._in_openvino("image_encoder"):
            return self._openvino_encoder()(self.normalize(image))[0]
        bf16 = self.precision == "bf16"
        with (
            torch.set_grad_enabled(torch.is_grad_enabled() and not self.encoder_frozen),
            torch.autocast(image.device.type, dtype=torch.bfloat16, enabled=bf16),
        ):
            image = self.normalize(image)
            embeddings = self.image_encoder(image.contiguous(memory_format=torch.channels_last) if bf16 else image)
        return embeddings.float().contiguous()

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Image embeddings ``[B, 256, 64, 64]`` of ``image`` ``[B, 3, S, S]`` (through the cache when enabled)."""
        self._check_image(image)
        image = image.as_subclass(torch.Tensor)  # MONAI MetaTensor bookkeeping costs more than the network
        if self._cache is not None and self.encoder_frozen:
            return self._cache.encode(image, self._encode)
        return self._encode(image)

    def decode(
        self, embeddings: torch.Tensor, boxes: torch.Tensor | None = None, multimask: bool = False, return_iou: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Mask logits at the frame size from embeddings ``[B, 256, 64, 64]``.

        Args:
            embeddings: output of :meth:`encode`.
            boxes: ``[B, 4]`` (x0, y0, x1, y1 in the frame, x along the last axis), or ``None`` for no prompt.
            multimask: return SAM's three multimask outputs instead of the single-mask output.
            return_iou: also return SAM's predicted IoU of each mask.

        Returns:
            logits ``[B, K, S, S]`` with K = 3 if ``multimask`` else 1; with ``return_iou`` also ``[B, K]``.
        """
        embeddings = embeddings.as_subclass(torch.Tensor)
        if boxes is not None:
            boxes = torch.as_tensor(boxes, dtype=torch.float32, device=embeddings.device).as_subclass(torch.Tensor)
            if boxes.shape != (embeddings.shape[0], 4):
                raise ValueError(f"boxes must be [B, 4] with B = {embeddings.shape[0]}, got shape {tuple(boxes.shape)}")
        if boxes is not None and not multimask and not embeddings.requires_grad and self._in_openvino("prompt_encoder", "mask_decoder"):
            logits, ious = self._openvino_box_decoder()(embeddings, boxes)
        else:
            logits, ious = self._decode_in_torch(embeddings, boxes, multimask)
        if logits.shape[-1] != self.frame_size:
            logits = F.interpolate(logits, (self.frame_size, self.frame_size), mode="bilinear", align_corners=False)
        return (logits, ious) if return_iou else logits

    def _decode_in_torch(self, embeddings: torch.Tensor, boxes: torch.Tensor | None, multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
        image_pe = self.prompt_encoder.get_dense_pe()
        masks, ious = [], []
        for i, embedding in enumerate(embeddings):
            sparse, dense = self.prompt_encoder(points=None, boxes=None if boxes is None else boxes[i : i + 1], masks=None)
            low_res, iou = self.mask_decoder(
                image_embeddings=embedding[None],
                image_pe=image_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )
            masks.append(low_res)
            ious.append(iou)
        return torch.cat(masks), torch.cat(ious)

    def locate(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Coarse head logits ``[B, 1, S, S]`` from embeddings ``[B, 256, 64, 64]`` (the head locator)."""
        logits = self.locator(embeddings.as_subclass(torch.Tensor))
        return F.interpolate(logits, (self.frame_size, self.frame_size), mode="bilinear", align_corners=False)

    def forward(self, image: torch.Tensor, boxes: torch.Tensor | None = None, with_locator: bool = False) -> torch.Tensor:
        """Mask logits ``[B, 1, S, S]`` for ``image`` ``[B, 3, S, S]`` in [0, 1] and ``boxes`` ``[B, 4]`` or ``None``.

        With ``with_locator`` the head locator's logits follow as a second channel (``[B, 2, S, S]``,
        one encoding for both): the fine-tuning output, computed in ``forward`` so that
        ``DistributedDataParallel`` sees it.
        """
        embeddings = self.encode(image)
        logits = self.decode(embeddings, boxes)
        return torch.cat([logits, self.locate(embeddings)], dim=1) if with_locator else logits


class _BoxDecoder(nn.Module):
    """Prompt encoder + mask decoder for one box and one mask: the part of :meth:`PromptedSam.decode` that
    OpenVINO runs (a traceable, fixed-shape graph)."""

    def __init__(self, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder) -> None:
        super().__init__()
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder

    def forward(self, embeddings: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sparse, dense = self.prompt_encoder(points=None, boxes=boxes, masks=None)
        return self.mask_decoder(
            image_embeddings=embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
