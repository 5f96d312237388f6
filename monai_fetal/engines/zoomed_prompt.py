"""Postprocessing of ``inference.json`` that runs the automatic prompt again in a zoomed crop of a doubtful head.

A head of the first trimester is small in a large dark sac: in the whole 256 x 256 frame it spans a few
dozen pixels, and its mask leaks into the sac. :class:`ZoomedPromptd` cuts a square of the image as read around
the locator's head, twice its size, frames it so that the head is about as large as the heads the model was
fine-tuned on, runs the whole automatic prompt there, and keeps that head where its quality is higher.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.utils import convert_to_dst_type

from monai_fetal.engines.crop_refine import ImageCropTransform, crop_probabilities
from monai_fetal.errors import ConfigError
from monai_fetal.shape.measure import MIN_HEAD_PIXELS, measure_head
from monai_fetal.transforms.holes import fill_binary_holes

__all__ = ["ZOOM_BELOW", "ZOOM_SIDE", "ZoomedPromptd", "checked_zoom_below"]

ZOOM_BELOW = 0.92
"""Heads of quality below this are tried again in a zoomed crop (see :class:`ZoomedPromptd`)."""
ZOOM_SIDE = 2.0
"""The zoomed crop's side, in multiples of the locator head box's longer side."""
SIDE_RANGE = (0.3, 0.8)
"""Bounds of the zoomed crop's side, as fractions of the image's longer side."""


def checked_zoom_below(below: float) -> float:
    """``below`` when it is a quality in [0, 1] (0 switches the zoom off), else a :class:`~monai_fetal.errors.ConfigError`."""
    if isinstance(below, bool) or not isinstance(below, (int, float)) or not 0.0 <= below <= 1.0:
        raise ConfigError("zoom_below", below, "a quality in [0, 1] (0 switches the zoomed automatic prompt off)")
    return float(below)


def _head_quality(probabilities: torch.Tensor, sam_iou: float) -> float:
    """:func:`~monai_fetal.shape.measure.measure_head`'s quality of the head in probabilities ``[W, H]``, as
    ``mask_postprocessing`` would clean it (threshold, largest region, holes filled)."""
    mask = fill_binary_holes(probabilities.numpy().T > 0.5)
    return measure_head(mask, None, sam_iou).quality.score if mask.sum() >= MIN_HEAD_PIXELS else 0.0


class ZoomedPromptd(ImageCropTransform):
    """Run the automatic prompt again in a zoomed crop for a head whose quality is below ``below``.

    Only a head whose box the automatic prompt chose, with a trained locator, is tried (the inferer's
    ``last_located``). The crop is a square around the centre of the locator's head box, its side ``ZOOM_SIDE``
    times that box's longer side within :data:`SIDE_RANGE` of the image's longer side, moved inside the image. It
    is framed like the whole image, the inferer's :class:`~monai_fetal.engines.AutoBoxPrompt` segments it, and its
    head replaces the whole image's where its quality (as ``segment`` scores it) is higher. The inferer's ``last_iou``
    is then the zoomed head's, and ``last_searched`` is set: the better of two qualities is biased upwards like a
    searched head's, so ``segment`` flags it below the higher ``flag_searched_below``.

    Chosen on the ``hc18_subset`` images that the 5-shot models of seeds 0/1/2 never trained on (150, no protocol
    test image): see ``benchmarks/README.md`` ("The automatic prompt again in a zoomed crop").

    Args:
        keys: head probabilities at the image's size (``[1, W, H]``, after ``Invertd``).
        network: the inference's :class:`~monai_fetal.networks.SamRuntime`.
        inferer: the inference's :class:`~monai_fetal.engines.SamInferer` (its automatic prompt and last results).
        image_key: the image as read (``[1, W, H]``, the prediction's size).
        below: the quality under which a head is tried again (0: never).
        frame_size: SAM's frame size S.

    Raises:
        ConfigError: a bad ``below``, or a batch of more than one image.
        ValueError: the image under ``image_key`` is missing or not the prediction's size.
    """

    def __init__(
        self,
        keys: KeysCollection,
        network: torch.nn.Module,
        inferer: object,
        image_key: str = "image_as_read",
        below: float = ZOOM_BELOW,
        frame_size: int = 256,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, network, inferer, image_key, frame_size, allow_missing_keys)
        self.below = checked_zoom_below(below)

    def _crop(self, box: torch.Tensor, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        """The crop ``(x0, y0, x1, y1)`` around ``box``: a square moved inside an image of ``shape`` ``(W, H)``, cut
        to the image along an axis shorter than its side."""
        low, high = (fraction * max(shape) for fraction in SIDE_RANGE)
        side = float(np.clip(ZOOM_SIDE * float((box[2:] - box[:2]).max()), low, high))
        corners = []
        for centre, size in zip(((box[:2] + box[2:]) / 2).tolist(), shape):
            extent = min(side, float(size))
            start = int(min(max(0.0, centre - extent / 2), size - extent))
            corners.append((start, min(size - 1, start + math.ceil(extent) - 1)))
        (x0, x1), (y0, y1) = corners
        return x0, y0, x1, y1

    @torch.no_grad()
    def _zoomed(self, image: torch.Tensor, corners: tuple[int, int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Head probabilities ``[1, W, H]`` of the automatic prompt in the crop, and SAM's IoU estimate of its mask."""
        results = []
        device = self._device()

        def logits_of(framed: torch.Tensor) -> torch.Tensor:
            results.append(self.inferer.auto_prompt.segment(self.network, framed[None].to(device)))
            return results[0].logits[0]

        probabilities = crop_probabilities(self.frame, image, corners, logits_of)
        return probabilities, results[0].iou

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        if self.below == 0:
            return d
        for key in self.key_iterator(d):
            probabilities = torch.as_tensor(d[key]).cpu()
            shape = tuple(probabilities.shape[-2:])
            box = self._last_box("last_located", shape)
            if box is None:
                continue
            quality = _head_quality(probabilities.reshape(shape), float(self.inferer.last_iou[0, 0]))
            if quality >= self.below:
                continue
            zoomed, iou = self._zoomed(self._image(d, shape), self._crop(box, shape))
            if _head_quality(zoomed[0], float(iou[0, 0])) > quality:
                d[key] = convert_to_dst_type(zoomed.reshape(probabilities.shape), dst=d[key])[0]
                self.inferer.last_iou, self.inferer.last_searched = iou, torch.tensor([True])
        return d
