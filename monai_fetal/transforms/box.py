"""Box prompts: from a mask (exact or jittered), and user boxes mapped into the SAM frame."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform

__all__ = ["box_from_mask", "field_of_view_box", "widen_box", "BoxFromMaskd", "ScaleBoxd"]


def box_from_mask(mask: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Tight box ``[x0, y0, x1, y1]`` (float32; x along the last axis, inclusive pixel indices) of ``mask > 0``.

    Args:
        mask: ``[..., H, W]``; leading axes are merged.

    Raises:
        ValueError: the mask is empty.
    """
    foreground = torch.as_tensor(np.asarray(mask) > 0).reshape(-1, *np.shape(mask)[-2:]).any(dim=0)
    rows = torch.nonzero(foreground.any(dim=1)).flatten()
    cols = torch.nonzero(foreground.any(dim=0)).flatten()
    if len(rows) == 0:
        raise ValueError("cannot take a box from an empty mask")
    return torch.tensor([cols[0], rows[0], cols[-1], rows[-1]], dtype=torch.float32)


def widen_box(box: torch.Tensor, fraction: float, limit: torch.Tensor) -> torch.Tensor:
    """``box`` ``[x0, y0, x1, y1]`` with each side moved out by ``fraction`` of its width or height (in when negative),
    clipped to ``[0, limit]`` (``limit``: ``[x_max, y_max, x_max, y_max]``)."""
    size = torch.stack([box[2] - box[0], box[3] - box[1]]).repeat(2)
    wider = box + fraction * size * torch.tensor([-1.0, -1.0, 1.0, 1.0])
    return torch.minimum(torch.clamp(wider, min=0.0), limit)


def field_of_view_box(image: torch.Tensor, threshold: float = 0.02) -> torch.Tensor:
    """Box of the ultrasound field of view: pixels of ``image[0]`` (``[C, H, W]``, in [0, 1]) above ``threshold``.

    The whole image when nothing is above it.
    """
    content = torch.as_tensor(image)[0] > threshold
    if not content.any():
        return torch.tensor([0.0, 0.0, image.shape[-1] - 1.0, image.shape[-2] - 1.0])
    return box_from_mask(content)


class BoxFromMaskd(RandomizableTransform, MapTransform):
    """Put the box of the mask under ``keys`` into ``box_key`` (``[4]``: x0, y0, x1, y1).

    Use it after the spatial augmentations, so the box follows the mask. ``margin`` widens each side
    by that fraction of the box's width or height (a clinician's box leaves room around the skull;
    LiteMedSAM under-segments with a tight box: 0.938 mean Dice on HC18 tight, 0.951 with 0.05). With ``jitter > 0`` each
    side moves by a uniform random amount of up to ``jitter`` times the box's width or height
    (seeded through MONAI's ``set_random_state``), clipped to the image: training boxes that mimic
    a clinician's imprecise box. An empty mask (head augmented out of view) gets the whole image.
    """

    def __init__(
        self, keys: KeysCollection, box_key: str = "box", margin: float = 0.0, jitter: float = 0.0, allow_missing_keys: bool = False
    ):
        for name, value in (("margin", margin), ("jitter", jitter)):
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=1.0)
        self.box_key = box_key
        self.margin = margin
        self.jitter = jitter

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            mask = d[key]
            height, width = mask.shape[-2:]
            try:
                box = box_from_mask(mask)
            except ValueError:
                box = torch.tensor([0.0, 0.0, width - 1.0, height - 1.0])
            size = torch.stack([box[2] - box[0], box[3] - box[1]]).repeat(2)
            box = box + self.margin * size * torch.tensor([-1.0, -1.0, 1.0, 1.0])
            if self.jitter > 0:
                noise = torch.as_tensor(self.R.uniform(-self.jitter, self.jitter, 4), dtype=torch.float32)
                box = box + noise * size
            upper = torch.tensor([width - 1.0, height - 1.0]).repeat(2)
            d[self.box_key] = torch.minimum(torch.clamp(box, min=0.0), upper)
        return d


class ScaleBoxd(MapTransform):
    """Map a box given on the original image into the SAM frame (resize longest side to ``frame_size``).

    Place it before the framing transforms: the scale is read from ``ref_key``'s spatial shape there.
    """

    def __init__(self, keys: KeysCollection, ref_key: str = "image", frame_size: int = 256, allow_missing_keys: bool = True):
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key
        self.frame_size = frame_size

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        scale = self.frame_size / max(d[self.ref_key].shape[-2:])
        for key in self.key_iterator(d):
            box = torch.as_tensor(d[key], dtype=torch.float32).flatten()
            if box.numel() != 4:
                raise ValueError(f"'{key}' must hold 4 numbers x0, y0, x1, y1, got {box.tolist()}")
            d[key] = box * scale
        return d

