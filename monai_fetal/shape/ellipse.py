"""Ellipse fit of head masks and outlines, and rasterisation of ellipses to filled masks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.draw import ellipse as draw_ellipse

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


def _conic_through_points(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficients ``(A, B, C, D, E, F)`` of the conic ``A x^2 + B xy + C y^2 + D x + E y + F = 0`` that fits the
    points best in the algebraic least-squares sense under the ellipse constraint ``4AC - B^2 = 1`` (Halir and
    Flusser, 1998), returned up to scale.

    Written out rather than taken from ``skimage.measure.EllipseModel``, whose scikit-image 0.26 breaks under
    NumPy 2.5 (``np.linalg.eig`` returns complex arrays there; scikit-image issue 8235).

    Raises:
        ValueError: no ellipse fits the points (collinear or otherwise degenerate).
    """
    quadratic = np.column_stack([x * x, x * y, y * y])
    linear = np.column_stack([x, y, np.ones_like(x)])
    s1, s2, s3 = quadratic.T @ quadratic, quadratic.T @ linear, linear.T @ linear
    try:
        linear_of_quadratic = -np.linalg.solve(s3, s2.T)
    except np.linalg.LinAlgError as err:
        raise ValueError("no ellipse fits these points") from err
    reduced = s1 + s2 @ linear_of_quadratic
    reduced = np.stack([reduced[2] / 2, -reduced[1], reduced[0] / 2])  # inv([[0, 0, 2], [0, -1, 0], [2, 0, 0]]) @ reduced
    _, vectors = np.linalg.eig(reduced)
    vectors = np.real(vectors)
    constraint = 4 * vectors[0] * vectors[2] - vectors[1] ** 2
    if not np.any(constraint > 0):
        raise ValueError("no ellipse fits these points")
    quadratic_part = vectors[:, int(np.argmax(constraint))]
    return np.concatenate([quadratic_part, linear_of_quadratic @ quadratic_part])


def fit_ellipse_to_points(x: np.ndarray, y: np.ndarray) -> Ellipse:
    """Least-squares (algebraic, Halir-Flusser) ellipse through points ``(x, y)``.

    Raises:
        ValueError: fewer than 5 points, or points that no ellipse fits.
    """
    if len(x) < 5:
        raise ValueError(f"an ellipse needs at least 5 points, got {len(x)}")
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    mx, my = x.mean(), y.mean()
    scale = math.sqrt(((x - mx) ** 2 + (y - my) ** 2).mean()) or 1.0
    a, b, c, d, e, f = _conic_through_points((x - mx) / scale, (y - my) / scale)
    disc = b * b - 4 * a * c
    if disc >= 0:
        raise ValueError("no ellipse fits these points")
    x0, y0 = (2 * c * d - b * e) / disc, (2 * a * e - b * d) / disc
    level = 2 * (a * e * e + c * d * d - b * d * e + disc * f)
    spread = math.hypot(a - c, b)
    major = -math.sqrt(max(level * (a + c + spread), 0.0)) / disc
    minor = -math.sqrt(max(level * (a + c - spread), 0.0)) / disc
    theta = 0.5 * math.atan2(-b, c - a)
    cx, cy, semi_a, semi_b = mx + x0 * scale, my + y0 * scale, major * scale, minor * scale
    if not all(np.isfinite([cx, cy, semi_a, semi_b, theta])) or min(semi_a, semi_b) <= 0:
        raise ValueError("the ellipse fit is degenerate")
    return Ellipse(float(cx), float(cy), float(semi_a), float(semi_b), float(theta))


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
