"""A box-prompted SAM: image encoder + segment-anything's prompt encoder and mask decoder, in the SAM frame.

This is the model and its freezing policy only; how it runs (encoder precision, OpenVINO, the embedding
cache) is :class:`~monai_fetal.networks.sam_runtime.SamRuntime`'s, as segment-anything keeps ``Sam`` and
``SamPredictor`` apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder, PromptEncoder
from torch import nn

from monai_fetal.config_checks import check_choice
from monai_fetal.networks.locator import HeadLocator

__all__ = ["PromptedSam", "PARTS", "TRAINABLE"]

PARTS = ("image_encoder", "prompt_encoder", "mask_decoder", "locator")
TRAINABLE: dict[str, tuple[str, ...]] = {
    "none": (),
    "decoder": ("mask_decoder", "locator"),
    "decoder+prompt": ("prompt_encoder", "mask_decoder", "locator"),
    "full": PARTS,
}
LOCATOR_PREFIX = "locator."


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
        name: the builder name (part of the runtime's cache fingerprints).
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

    @property
    def encoder_frozen(self) -> bool:
        """True when no image-encoder parameter requires a gradient."""
        return not any(p.requires_grad for p in self.image_encoder.parameters())

    def set_trainable(self, trainable: str) -> PromptedSam:
        """Freeze all but ``decoder`` (mask decoder and locator), ``decoder+prompt`` (and prompt encoder), nothing
        (``full``) or everything (``none``: inference)."""
        check_choice("trainable", trainable, tuple(TRAINABLE))
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

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` in [0, 1] -> the encoder's input scale."""
        return (image - self.pixel_mean) / self.pixel_std

    def check_image(self, image: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``image`` is ``[B, 3, S, S]`` in this model's frame."""
        size = self.frame_size
        if image.ndim != 4 or image.shape[1] != 3 or tuple(image.shape[-2:]) != (size, size):
            raise ValueError(f"image must be [B, 3, {size}, {size}] in the SAM frame, got shape {tuple(image.shape)}")

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Image embeddings ``[B, 256, 64, 64]`` of ``image`` ``[B, 3, S, S]`` (with gradients only into a trainable encoder)."""
        self.check_image(image)
        image = image.as_subclass(torch.Tensor)  # MONAI MetaTensor bookkeeping costs more than the network
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.encoder_frozen):
            return self.image_encoder(self.normalize(image))

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
        logits, ious = self._decode_low_res(embeddings, self.check_boxes(embeddings, boxes), multimask)
        logits = self.to_frame(logits)
        return (logits, ious) if return_iou else logits

    def check_boxes(self, embeddings: torch.Tensor, boxes: torch.Tensor | None) -> torch.Tensor | None:
        """``boxes`` as a float32 ``[B, 4]`` tensor beside ``embeddings`` ``[B, ...]`` (``None`` stays ``None``); ``ValueError`` otherwise."""
        if boxes is None:
            return None
        boxes = torch.as_tensor(boxes, dtype=torch.float32, device=embeddings.device).as_subclass(torch.Tensor)
        if boxes.shape != (embeddings.shape[0], 4):
            raise ValueError(f"boxes must be [B, 4] with B = {embeddings.shape[0]}, got shape {tuple(boxes.shape)}")
        return boxes

    def to_frame(self, logits: torch.Tensor) -> torch.Tensor:
        """The mask decoder's low-resolution logits ``[B, K, h, w]`` resized to the frame, ``[B, K, S, S]``."""
        if logits.shape[-1] == self.frame_size:
            return logits
        return F.interpolate(logits, (self.frame_size, self.frame_size), mode="bilinear", align_corners=False)

    def _decode_low_res(self, embeddings: torch.Tensor, boxes: torch.Tensor | None, multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
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

