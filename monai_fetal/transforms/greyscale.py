"""Greyscale conversion of channel-first images (RGB ultrasound exports become one channel)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["Greyscaled"]

_LUMINANCE = (0.2125, 0.7154, 0.0721)


class Greyscaled(MapTransform):
    """Reduce a channel-first image ``[C, H, W]`` to ``[1, H, W]``.

    One channel is kept; 3 or 4 channels (RGB, RGBA) become luminance; any other count is averaged.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key] if isinstance(d[key], torch.Tensor) else torch.as_tensor(d[key])
            if image.ndim != 3:
                raise ValueError(f"'{key}' must be channel-first [C, H, W], got shape {tuple(image.shape)}")
            if image.shape[0] in (3, 4):
                weights = torch.tensor(_LUMINANCE, dtype=torch.float32, device=image.device)[:, None, None]
                d[key] = (image[:3].float() * weights).sum(dim=0, keepdim=True)
            elif image.shape[0] > 1:
                d[key] = image.float().mean(dim=0, keepdim=True)
            else:
                d[key] = image
        return d
