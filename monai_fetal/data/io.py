"""Reading and writing 2-D images and masks with ITK: greyscale conversion, validation, atomic writes.

PNGs whose pixels Pillow decodes exactly as ITK does (8-bit grey or RGB, 16-bit grey, no transparency) are
read, and PNGs are written, with Pillow: ITK's first use loads all of its image-IO modules and torch (which its
Python wrapping imports), about 800 MB and 10 s, which ``prepare`` and ``segment`` of PNGs would otherwise pay
for nothing. Values are the same either way (RGB to grey with ITK's luminance weights and arithmetic);
anything Pillow does not read cleanly goes to ITK, which names the problem as before.
"""

from __future__ import annotations

from pathlib import Path

import itk
import numpy as np
from PIL import Image

from monai_fetal.atomic import atomic_path
from monai_fetal.errors import InputDataError

__all__ = [
    "IMAGE_SUFFIXES",
    "read_image",
    "read_image_reduced",
    "image_spacing",
    "reduction_factor",
    "read_mask",
    "write_png",
    "to_uint8",
    "strip_suffix",
]

IMAGE_SUFFIXES = (".png", ".nii.gz", ".nii", ".nrrd", ".mha", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_HEADER_SPACING_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
_LUMINANCE = (0.2125, 0.7154, 0.0721)  # ITK's RGB to grey weights (what itk.imread(path, itk.F) uses)
_PILLOW_PNG_LAYOUTS = ("L", "RGB", "I;16B")  # PNG pixel layouts (Pillow's raw modes) that Pillow decodes as ITK does


def strip_suffix(name: str) -> str:
    """File name without its image suffix (``.nii.gz`` counts as one)."""
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise InputDataError(
            path, "is a folder, not an image file", "give the image files in it, or the folder itself where a folder is accepted"
        )
    if not path.is_file():
        raise InputDataError(path, "file not found", "check the path, or remove the entry that names it")


def _unreadable(path: Path, err: RuntimeError) -> InputDataError:
    first_line = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown reader error"
    return InputDataError(
        path,
        f"cannot be read as an image ({first_line.strip()})",
        "re-export it as PNG, NIfTI or NRRD, or remove it from the cohort",
    )


def _not_2d(path: Path, shape: tuple[int, ...]) -> InputDataError:
    return InputDataError(path, f"is not a 2-D image (shape {shape})", "give one 2-D ultrasound frame per file")


def _pillow_png(path: Path) -> Image.Image | None:
    """``path`` opened by Pillow (header only) where it is a PNG of :data:`_PILLOW_PNG_LAYOUTS`, else ``None`` (read it with ITK)."""
    if not path.name.lower().endswith(".png"):
        return None
    try:
        image = Image.open(path)
    except (OSError, ValueError):
        return None
    tile = image.tile[0] if len(image.tile) == 1 else None
    if image.format != "PNG" or tile is None or tile.args not in _PILLOW_PNG_LAYOUTS or "transparency" in image.info:
        image.close()
        return None
    return image


def _pillow_pixels(path: Path) -> np.ndarray | None:
    """The native pixels ``(rows, cols[, 3])`` of a PNG that Pillow reads as ITK does; ``None``: read it with ITK."""
    image = _pillow_png(path)
    if image is None:
        return None
    try:
        with image:
            return np.asarray(image)
    except (OSError, ValueError, SyntaxError):  # a truncated or corrupt PNG: ITK names the problem
        return None


def _itk_grey(native: np.ndarray) -> np.ndarray:
    """``float32`` greyscale of native pixels as ``itk.imread(path, itk.F)`` gives it (RGB: ITK's luminance arithmetic)."""
    if native.ndim == 3:
        red, green, blue = (native[..., k].astype(np.float64) for k in range(3))
        return ((2125.0 * red + 7154.0 * green + 721.0 * blue) / 10000.0).astype(np.float32)
    return native.astype(np.float32)


def read_image(path: str | Path) -> np.ndarray:
    """Read a 2-D image as a ``float32`` greyscale array ``(rows, cols)``.

    RGB(A) is converted to luminance, 16-bit and float images keep their values; a 3-D volume with
    a single slice is squeezed.

    Raises:
        InputDataError: the file is missing, a folder, unreadable, corrupt or not 2-D.
    """
    path = Path(path)
    _check_file(path)
    native = _pillow_pixels(path)
    if native is not None:
        return _itk_grey(native)
    try:
        array = itk.array_from_image(itk.imread(str(path), itk.F))
    except RuntimeError as err:
        raise _unreadable(path, err) from err
    array = np.squeeze(array)
    if array.ndim != 2:
        raise _not_2d(path, array.shape)
    return array.astype(np.float32, copy=False)


def _image_info(path: Path) -> tuple[tuple[int, ...], tuple[float, ...], int]:
    """Size (ITK order: x first), spacing and component count from the header only."""
    try:
        io = itk.ImageIOFactory.CreateImageIO(str(path), itk.CommonEnums.IOFileMode_ReadMode)
        if io is None:
            raise RuntimeError("no ITK reader recognises this file")
        io.SetFileName(str(path))
        io.ReadImageInformation()
    except RuntimeError as err:
        raise _unreadable(path, err) from err
    dims = range(io.GetNumberOfDimensions())
    return tuple(io.GetDimensions(d) for d in dims), tuple(io.GetSpacing(d) for d in dims), io.GetNumberOfComponents()


def reduction_factor(shape: tuple[int, int], max_side: int | None) -> int:
    """Integer factor by which an image of ``shape`` is reduced on read so its longest side stays >= ``max_side``."""
    return max(1, max(shape) // max_side) if max_side else 1


def read_image_reduced(
    path: str | Path, max_side: int | None = None, factor: int | None = None
) -> tuple[np.ndarray, int, tuple[int, int]]:
    """:func:`read_image` with the image reduced on read by an integer factor where its longest side exceeds ``max_side``.

    The reduction is a block mean of ``factor x factor`` pixels (edge blocks padded by replication), taken
    row block by row block on the file's own pixel type, so an 8000 x 6000 image costs its file's pixels
    (twice for a moment where Pillow decodes it: its buffer and the array) and a small float image, not
    several full-size float copies. Pixel ``(r, c)`` of the result covers
    rows ``r * factor ...`` and columns ``c * factor ...`` of the original. ``factor`` forces a factor
    (e.g. to read an image again as it was read before).

    Returns:
        the ``float32`` greyscale array, the factor (1: read as it is), and the original ``(rows, cols)``.

    Raises:
        InputDataError: as :func:`read_image`.
    """
    path = Path(path)
    _check_file(path)
    png = _pillow_png(path)
    if png is not None:
        with png:
            size = png.size
    else:
        size, _, _ = _image_info(path)
    planar = tuple(s for s in size if s > 1)
    if len(planar) != 2:
        raise _not_2d(path, tuple(reversed(size)))
    shape = (planar[1], planar[0])
    factor = factor or reduction_factor(shape, max_side)
    if factor == 1:
        return read_image(path), 1, shape
    native = _pillow_pixels(path)
    if native is None:
        try:
            native = np.squeeze(itk.array_view_from_image(itk.imread(str(path))))
        except RuntimeError as err:
            raise _unreadable(path, err) from err
    return _block_mean_grey(native, factor), factor, shape


def _block_mean_grey(native: np.ndarray, factor: int) -> np.ndarray:
    """Greyscale block mean ``(ceil(rows / f), ceil(cols / f))`` of ``(rows, cols[, channels])`` pixels."""
    rows, cols = native.shape[:2]
    out_rows, out_cols = -(-rows // factor), -(-cols // factor)
    col_index = np.minimum(np.arange(out_cols * factor), cols - 1)
    out = np.empty((out_rows, out_cols), np.float32)
    for r in range(out_rows):
        block = native[np.minimum(np.arange(r * factor, (r + 1) * factor), rows - 1)][:, col_index].astype(np.float32)
        if block.ndim == 3:
            block = _grey(block)
        out[r] = block.reshape(factor, out_cols, factor).mean(axis=(0, 2))
    return out


def _grey(block: np.ndarray) -> np.ndarray:
    """RGB(A) to luminance (ITK's weights), any other channel count averaged."""
    if block.shape[-1] in (3, 4):
        return block[..., :3] @ np.array(_LUMINANCE, np.float32)
    return block.mean(axis=-1)


def image_spacing(path: str | Path) -> float | None:
    """Pixel size in mm from the header of a NIfTI, NRRD or MetaImage file; ``None`` for other formats.

    Raises:
        InputDataError: unreadable header, or pixels that are not square (HC needs one pixel size).
    """
    path = Path(path)
    if not path.name.lower().endswith(_HEADER_SPACING_SUFFIXES):
        return None
    size, spacing, _ = _image_info(path)
    planar = [s for s, n in zip(spacing, size) if n > 1][:2]
    if len(planar) != 2 or not all(np.isfinite(planar)) or min(planar) <= 0:
        return None
    if abs(planar[0] - planar[1]) > 0.01 * max(planar):
        raise InputDataError(
            path,
            f"has non-square pixels ({planar[0]:g} x {planar[1]:g} mm) in its header",
            "resample it to square pixels before measuring the head",
        )
    return float(f"{planar[0]:.6g}")  # the header's float32, without its binary tail


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
    """Write a ``uint8`` 2-D array to PNG (8-bit grey) atomically (temporary file in the same folder, then rename).

    Pillow writes it: ITK would load all of its image-IO modules (and torch, which its Python wrapping imports),
    about 800 MB, for a file Pillow writes with the same pixels.

    Raises:
        DiskFullError: the disk is full.
    """
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(tmp, format="PNG")
