"""Fetal head biometry from an ellipse: head circumference (HC), biparietal (BPD) and occipitofrontal (OFD) diameters.

The measures follow the HC18 convention: HC is the perimeter of the ellipse fitted to the head
(Ramanujan's approximation), BPD its minor axis and OFD its major axis (full lengths, not semi-axes).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from monai_fetal.errors import ConfigError
from monai_fetal.shape.ellipse import Ellipse, fit_ellipse_to_mask, fit_ellipse_to_outline

__all__ = ["Biometry", "biometry_from_ellipse", "biometry_from_mask", "biometry_from_outline"]


@dataclass(frozen=True)
class Biometry:
    """Head measures in pixels, and in mm where the pixel spacing is known (else ``None``).

    Attributes:
        hc: head circumference, pixels.
        bpd: biparietal diameter (minor axis), pixels.
        ofd: occipitofrontal diameter (major axis), pixels.
        spacing: mm per pixel, or ``None``.
        hc_mm, bpd_mm, ofd_mm: the same in mm, or ``None`` without spacing.
        ellipse: the ellipse the measures come from.
    """

    hc: float
    bpd: float
    ofd: float
    ellipse: Ellipse
    spacing: float | None = None
    hc_mm: float | None = None
    bpd_mm: float | None = None
    ofd_mm: float | None = None

    def to_dict(self) -> dict:
        """JSON-serialisable measures (the ellipse as a nested dict)."""
        return asdict(self)


def _check_spacing(spacing: float | None) -> float | None:
    if spacing is None:
        return None
    if isinstance(spacing, bool) or not isinstance(spacing, (int, float, np.floating, np.integer)):
        raise ConfigError("spacing", spacing, "mm per pixel as a positive number, or None")
    if not math.isfinite(spacing) or spacing <= 0:
        raise ConfigError("spacing", spacing, "mm per pixel as a positive finite number, or None")
    return float(spacing)


def biometry_from_ellipse(ellipse: Ellipse, spacing: float | None = None) -> Biometry:
    """HC, BPD and OFD of ``ellipse`` (pixels; mm too when ``spacing`` in mm/pixel is given).

    Raises:
        ConfigError: ``spacing`` is not a positive finite number.
    """
    spacing = _check_spacing(spacing)
    hc, bpd, ofd = ellipse.circumference(), 2.0 * ellipse.semi_minor, 2.0 * ellipse.semi_major
    if spacing is None:
        return Biometry(hc, bpd, ofd, ellipse)
    return Biometry(hc, bpd, ofd, ellipse, spacing, hc * spacing, bpd * spacing, ofd * spacing)


def biometry_from_mask(mask: np.ndarray, spacing: float | None = None) -> Biometry:
    """Biometry of a filled head mask ``(rows, cols)`` (any non-zero value is head).

    The ellipse has the area and second moments of the mask's largest component.

    Raises:
        ValueError: the mask is not 2-D, or is empty.
        ConfigError: bad ``spacing``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a head mask must be 2-D (rows, cols), got shape {mask.shape}")
    return biometry_from_ellipse(fit_ellipse_to_mask(mask > 0), spacing)


def biometry_from_outline(outline: np.ndarray, spacing: float | None = None) -> Biometry:
    """Biometry of a head outline annotation ``(rows, cols)`` (HC18 style; gaps allowed).

    The ellipse is the least-squares fit to the outline pixels, as the HC18 reference values are.

    Raises:
        ValueError: the outline is not 2-D, has fewer than 5 pixels, or no ellipse fits it.
        ConfigError: bad ``spacing``.
    """
    outline = np.asarray(outline)
    if outline.ndim != 2:
        raise ValueError(f"a head outline must be 2-D (rows, cols), got shape {outline.shape}")
    return biometry_from_ellipse(fit_ellipse_to_outline(outline > 0), spacing)
