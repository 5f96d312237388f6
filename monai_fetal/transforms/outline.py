"""Outline annotations to filled head masks, as a MONAI dictionary transform."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import convert_to_dst_type

from monai_fetal.shape.outline import fill_head_annotation

__all__ = ["OutlineToFilledMaskd"]


class OutlineToFilledMaskd(MapTransform):
    """Fill head annotations ``[1, H, W]``: outlines (gaps allowed) by ellipse fit, filled masks by hole filling.

    The output is 0/1 of the input's type; geometry is unchanged, so no inverse is needed.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            annotation = np.asarray(d[key])
            if annotation.ndim != 3 or annotation.shape[0] != 1:
                raise ValueError(f"'{key}' must be [1, H, W], got shape {annotation.shape}")
            filled = fill_head_annotation(annotation[0])[None].astype(np.float32)
            d[key] = convert_to_dst_type(filled, d[key], dtype=torch.float32)[0]
        return d
