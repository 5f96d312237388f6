"""Loading 2-D images for SAM as ``prepare`` stores them: one reader for ``segment``, ``evaluate`` and MONAI Label."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from monai_fetal.data.io import read_image_reduced, to_uint8

__all__ = ["LoadGreyscaled"]


class LoadGreyscaled(MapTransform):
    """Read image files under ``keys`` as greyscale ``[1, W, H]`` ``MetaTensor`` s (MONAI's 2-D loading layout).

    Values are what :func:`monai_fetal.data.prepare.prepare_case` writes into a cohort folder
    (:func:`~monai_fetal.data.io.read_image`, then :func:`~monai_fetal.data.io.to_uint8`), so a raw image
    and its prepared copy give the same SAM input. A single-slice volume is squeezed. Images whose longest
    side exceeds ``max_side`` are reduced on read by an integer factor (block mean): a huge image then costs
    a few hundred MB, not several GB. The meta data carry ``filename_or_obj``, ``original_shape``
    (rows, cols of the file) and ``reduction`` (the factor; 1 for images read as they are).

    Args:
        keys: keys holding image paths; values that are already arrays pass through.
        max_side: longest side kept on read (None: never reduce); four times the SAM frame is ample.
    """

    def __init__(self, keys: KeysCollection, max_side: int | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if max_side is not None and max_side < 16:
            raise ValueError(f"max_side must be at least 16 (or None), got {max_side}")
        self.max_side = max_side

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            if not isinstance(d[key], (str, Path)):
                continue
            image, factor, shape = read_image_reduced(d[key], self.max_side)
            array = to_uint8(image).astype(np.float32).T[None]  # (rows, cols) -> [1, W, H]
            meta = {
                "filename_or_obj": str(d[key]),
                "original_shape": list(shape),
                "reduction": factor,
                "spatial_shape": np.asarray(array.shape[1:]),
            }
            d[key] = MetaTensor(torch.from_numpy(np.ascontiguousarray(array)), meta=meta)
        return d
