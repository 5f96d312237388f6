"""Reading and writing 2-D images and masks with ITK: greyscale conversion, validation, atomic writes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import itk
import numpy as np

from monai_fetal.atomic import atomic_path
from monai_fetal.errors import InputDataError

__all__ = ["IMAGE_SUFFIXES", "read_image", "read_mask", "write_png", "to_uint8", "strip_suffix"]

IMAGE_SUFFIXES = (".png", ".nii.gz", ".nii", ".nrrd", ".mha", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the empty IEND chunk that ends every complete PNG


def strip_suffix(name: str) -> str:
    """File name without its image suffix (``.nii.gz`` counts as one)."""
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def read_image(path: str | Path) -> np.ndarray:
    """Read a 2-D image as a ``float32`` greyscale array ``(rows, cols)``.

    RGB(A) is converted to luminance, 16-bit and float images keep their values; a 3-D volume with
    a single slice is squeezed.

    Raises:
        InputDataError: the file is missing, unreadable, corrupt or not 2-D.
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError(path, "file not found", "check the path, or remove the entry that names it")
    try:
        array = itk.array_from_image(itk.imread(str(path), itk.F))
    except RuntimeError as err:
        first_line = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown reader error"
        raise InputDataError(
            path,
            f"cannot be read as an image ({first_line.strip()})",
            "re-export it as PNG, NIfTI or NRRD, or remove it from the cohort",
        ) from err
    array = np.squeeze(array)
    if array.ndim != 2:
        raise InputDataError(path, f"is not a 2-D image (shape {array.shape})", "give one 2-D ultrasound frame per file")
    return array.astype(np.float32, copy=False)


def read_mask(path: str | Path, expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a binary mask (any two levels, e.g. 0/1 or 0/255) as a ``bool`` array.

    Raises:
        InputDataError: missing or corrupt file, more than two levels, no foreground,
            or a shape different from ``expected_shape`` (the image's).
    """
    array = read_image(path)
    levels = np.unique(array)
    if len(levels) > 2:
        raise InputDataError(
            path,
            f"is not a binary mask ({len(levels)} distinct values, e.g. {levels[:5].tolist()})",
            "save the head as one value (1 or 255) on a background of 0",
        )
    mask = array > levels.min() if len(levels) == 2 else np.zeros(array.shape, bool)
    if not mask.any():
        raise InputDataError(path, "the mask is empty (no head pixels)", "annotate the head, or remove this case")
    if expected_shape is not None and mask.shape != tuple(expected_shape):
        raise InputDataError(
            path,
            f"mask size {mask.shape[1]}x{mask.shape[0]} differs from its image's {expected_shape[1]}x{expected_shape[0]}",
            "export the mask at the image's size",
        )
    return mask


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Greyscale array as ``uint8``: 8-bit ranges are kept, wider ones are scaled min-max to 0-255."""
    if image.min() >= 0 and image.max() <= 255 and np.all(np.mod(image, 1) == 0):
        return image.astype(np.uint8)
    low, high = float(image.min()), float(image.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.clip(np.round((image - low) * scale), 0, 255).astype(np.uint8)


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Write a ``uint8`` 2-D array to PNG atomically (temporary file in the same folder, then rename).

    Raises:
        DiskFullError: the disk is full (also where ITK wrote a short file without saying so).
    """
    with atomic_path(path) as tmp:
        itk.imwrite(itk.image_from_array(np.ascontiguousarray(array, dtype=np.uint8)), str(tmp))
        _check_complete_png(tmp)


def _check_complete_png(path: Path) -> None:
    """Raise ``OSError`` unless ``path`` ends as a PNG does: ITK ignores writes that fail on closing (a full disk)."""
    with path.open("rb") as file:
        file.seek(0, os.SEEK_END)
        file.seek(max(0, file.tell() - len(_PNG_END)))
        if file.read() != _PNG_END:
            raise OSError(errno.EIO, "ITK wrote an incomplete PNG", str(path))
