"""The SAM frame: greyscale in [0, 1], longest side resized to the model's size, padded to a square, 3 channels."""

from __future__ import annotations

from monai.config import KeysCollection
from monai.transforms import Compose, EnsureTyped, RepeatChanneld, Resized, ScaleIntensityd, SpatialPadd, Transposed
from monai.utils import ensure_tuple

from monai_fetal.transforms.greyscale import Greyscaled

__all__ = ["SamFramed"]


class SamFramed(Compose):
    """Frame images (and their masks) for SAM; invertible, so predictions map back to the original size.

    Inputs are in MONAI's loading convention for 2-D files, ``[C, W, H]`` (what ``LoadImaged`` gives);
    they are transposed to the ``[C, H, W]`` (rows, columns) layout that SAM was trained on. Images
    become ``[3, S, S]`` in [0, 1]; masks under ``label_keys`` become ``[1, S, S]`` (nearest neighbour).
    Content sits at the top-left; padding is added bottom and right; boxes in the frame are
    ``x0, y0, x1, y1`` with x along the last axis. ``monai.transforms.Invertd`` with this transform
    (or a Compose holding it) maps a prediction ``[1, S, S]`` back to ``[1, W, H]``.

    Args:
        keys: image keys.
        frame_size: S, 256 for LiteMedSAM, 1024 for SAM ViT models.
        label_keys: mask keys framed with the same geometry (may be absent, e.g. when inverting
            a prediction with ``Invertd(orig_keys=image)``).
    """

    def __init__(self, keys: KeysCollection, frame_size: int = 256, label_keys: KeysCollection = (), allow_missing_keys: bool = False):
        if frame_size < 16:
            raise ValueError(f"frame_size must be at least 16, got {frame_size}")
        images, labels = ensure_tuple(keys), ensure_tuple(label_keys)
        self.frame_size = frame_size
        square = (frame_size, frame_size)
        transforms = [
            EnsureTyped(images, track_meta=True, allow_missing_keys=allow_missing_keys),
            Transposed(images, (0, 2, 1), allow_missing_keys),
            Greyscaled(images, allow_missing_keys),
            ScaleIntensityd(images, minv=0.0, maxv=1.0, allow_missing_keys=allow_missing_keys),
            Resized(images, frame_size, "longest", "bilinear", anti_aliasing=True, allow_missing_keys=allow_missing_keys),
            SpatialPadd(images, square, method="end", allow_missing_keys=allow_missing_keys),
            RepeatChanneld(images, repeats=3, allow_missing_keys=allow_missing_keys),
        ]
        if labels:
            transforms += [
                EnsureTyped(labels, track_meta=True, allow_missing_keys=True),
                Transposed(labels, (0, 2, 1), allow_missing_keys=True),
                Resized(labels, frame_size, "longest", "nearest", allow_missing_keys=True),
                SpatialPadd(labels, square, method="end", allow_missing_keys=True),
            ]
        super().__init__(transforms)
