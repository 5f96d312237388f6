"""Head-circumference error between a predicted and a reference head mask."""

from __future__ import annotations

import math

import numpy as np

from monai_fetal.shape.ellipse import fit_ellipse_to_mask

__all__ = ["head_circumference_px", "hc_errors"]


def head_circumference_px(mask: np.ndarray) -> float:
    """HC in pixels of the ellipse fitted to the mask's largest component; NaN for an empty mask."""
    try:
        return fit_ellipse_to_mask(np.asarray(mask) > 0).circumference()
    except ValueError:
        return math.nan


def hc_errors(pred: np.ndarray, reference: np.ndarray, spacing: float | None = None) -> tuple[float, float]:
    """Relative HC error ``|hc_pred - hc_ref| / hc_ref`` and absolute error in mm (NaN without spacing).

    Args:
        pred: predicted mask ``[H, W]`` (or ``[1, H, W]``).
        reference: reference mask of the same shape.
        spacing: mm per pixel, when known.
    """
    hc_pred = head_circumference_px(np.squeeze(pred))
    hc_ref = head_circumference_px(np.squeeze(reference))
    difference = abs(hc_pred - hc_ref)
    absolute = difference * spacing if spacing is not None and spacing > 0 else math.nan
    return difference / hc_ref, absolute
