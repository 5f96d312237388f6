"""Turning head annotations (filled masks, closed outlines, outlines with gaps) into filled masks."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from monai_fetal.shape.ellipse import ellipse_to_mask, fit_ellipse_to_outline

__all__ = ["is_outline", "fill_head_annotation"]

# A filled head covers its fitted ellipse almost entirely; an outline covers a thin ring of it.
_FILLED_COVERAGE = 0.5


def is_outline(annotation: np.ndarray) -> bool:
    """True when the foreground is a thin ring (open or closed) rather than a filled region."""
    foreground = annotation > 0
    count = int(foreground.sum())
    if count < 5:
        return False
    try:
        ellipse_area = fit_ellipse_to_outline(foreground).area
    except ValueError:
        return False
    return count < _FILLED_COVERAGE * ellipse_area


def fill_head_annotation(annotation: np.ndarray) -> np.ndarray:
    """Filled ``uint8`` 0/1 head mask from a filled mask or an outline.

    Outlines (with or without gaps) are filled by a least-squares ellipse fitted to their pixels;
    filled masks are returned with their holes closed.

    Raises:
        ValueError: the annotation is empty or no ellipse fits its outline.
    """
    foreground = annotation > 0
    if not foreground.any():
        raise ValueError("the annotation is empty")
    if is_outline(foreground):
        return ellipse_to_mask(fit_ellipse_to_outline(foreground), foreground.shape)
    return ndimage.binary_fill_holes(foreground).astype(np.uint8)
