"""Ellipse fit of head masks and outlines, and rasterisation of ellipses to filled masks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.draw import ellipse as draw_ellipse
from skimage.measure import EllipseModel

__all__ = ["Ellipse", "fit_ellipse_to_points", "fit_ellipse_to_outline", "fit_ellipse_to_mask", "ellipse_to_mask"]


@dataclass(frozen=True)
class Ellipse:
    """An ellipse in pixel coordinates of a 2-D array indexed ``[row, col]``.

    Attributes:
        cx: centre column (x).
        cy: centre row (y).
        a: semi-axis along the direction ``theta`` (pixels).
        b: the other semi-axis (pixels).
        theta: angle of the ``a`` axis from the x axis towards the y axis, radians.
    """

    cx: float
    cy: float
    a: float
    b: float
    theta: float

    @property
    def semi_major(self) -> float:
        return max(self.a, self.b)

    @property
    def semi_minor(self) -> float:
        return min(self.a, self.b)

    @property
    def area(self) -> float:
        return math.pi * self.a * self.b

    @property
    def major_angle(self) -> float:
        """Angle of the major axis in ``[0, pi)``, radians."""
        angle = self.theta if self.a >= self.b else self.theta + math.pi / 2
        return angle % math.pi

    def circumference(self) -> float:
        """Perimeter by Ramanujan's second approximation (pixels)."""
        a, b = self.a, self.b
        h = ((a - b) / (a + b)) ** 2
        return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


def fit_ellipse_to_points(x: np.ndarray, y: np.ndarray) -> Ellipse:
    """Least-squares (algebraic, Halir-Flusser) ellipse through points ``(x, y)``.

    Raises:
        ValueError: fewer than 5 points, or points that no ellipse fits.
    """
    if len(x) < 5:
        raise ValueError(f"an ellipse needs at least 5 points, got {len(x)}")
    model = EllipseModel.from_estimate(np.column_stack([x, y]).astype(np.float64))
    if not model:
        raise ValueError("no ellipse fits these points")
    (cx, cy), (a, b), theta = model.center, model.axis_lengths, model.theta
    if not all(np.isfinite([cx, cy, a, b, theta])) or min(a, b) <= 0:
        raise ValueError("the ellipse fit is degenerate")
    return Ellipse(float(cx), float(cy), float(a), float(b), float(theta))


def fit_ellipse_to_outline(outline: np.ndarray) -> Ellipse:
    """Fit an ellipse to the foreground pixels of an outline annotation (gaps allowed)."""
    rows, cols = np.nonzero(outline)
    return fit_ellipse_to_points(cols, rows)


def fit_ellipse_to_mask(mask: np.ndarray) -> Ellipse:
    """Ellipse with the same area and second moments as the largest component of a filled mask."""
    labels, count = ndimage.label(mask > 0)
    if count == 0:
        raise ValueError("the mask is empty")
    sizes = np.bincount(labels.ravel())[1:]
    rows, cols = np.nonzero(labels == int(np.argmax(sizes)) + 1)
    if len(rows) < 5:
        raise ValueError(f"the mask's largest component has only {len(rows)} pixels")
    cy, cx = rows.mean(), cols.mean()
    cov = np.cov(np.stack([cols - cx, rows - cy]), bias=True)
    evals, evecs = np.linalg.eigh(cov + np.eye(2) / 12.0)
    b, a = 2.0 * np.sqrt(np.maximum(evals, 1e-12))
    theta = math.atan2(evecs[1, 1], evecs[0, 1])
    return Ellipse(float(cx), float(cy), float(a), float(b), float(theta))


def ellipse_to_mask(ellipse: Ellipse, shape: tuple[int, int]) -> np.ndarray:
    """Filled ellipse as a ``uint8`` 0/1 array of ``shape`` (rows, cols), clipped to the array."""
    mask = np.zeros(shape, dtype=np.uint8)
    rr, cc = draw_ellipse(ellipse.cy, ellipse.cx, ellipse.b, ellipse.a, shape=shape, rotation=-ellipse.theta)
    mask[rr, cc] = 1
    return mask
