"""Ellipse shape prior of fetal heads: fitted on real filled masks, sampled to make new plausible masks.

Each mask is summarised by the ellipse with its area and second moments, mapped to a reference
image size (the most common size of the fitted masks) and described by six numbers:

``cx``, ``cy``
    centre in units of the image width and height (0 to 1, pixel edges at 0 and 1);
``log_major``
    log of the semi-major axis in units of the reference image's shorter side;
``log_ratio``
    log of the axis ratio minor / major (at most 0);
``cos2t``, ``sin2t``
    the major axis angle doubled, as cosine and sine (an ellipse turned by pi is the same ellipse).

The prior is a Gaussian kernel density over these numbers: a sample is the parameters of one
fitted head plus correlated Gaussian noise whose covariance is ``bandwidth**2`` times the
covariance of all fitted parameters (their joint spread); samples outside the range seen in the
fit (per number, ``cx`` to ``log_ratio``) are rejected. A kernel density rather than one Gaussian
because head sizes are skewed (a tail of small heads, a ceiling where the head fills the frame):
one Gaussian on the log axes, cut to the fitted range, draws heads too small (mean area 0.4
standard deviations low on the 60 HC18 test masks; the kernel density: within 0.2).

Sampling at another image size maps the reference geometry by the per-axis scaling that an image
resize applies, so a mask sampled at ``size`` looks like a real mask resized to ``size`` (sample at
the reference aspect ratio to keep the heads' proportions).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from monai_fetal.atomic import write_json_atomic
from monai_fetal.errors import ConfigError, InputDataError
from monai_fetal.shape.ellipse import Ellipse, ellipse_to_mask, fit_ellipse_to_mask

__all__ = ["EllipseShapePrior", "PARAMETERS"]

PARAMETERS = ("cx", "cy", "log_major", "log_ratio", "cos2t", "sin2t")
_BOUNDED = 4  # the first four parameters are kept within the range seen in the fit
_FORMAT = "monai_fetal.EllipseShapePrior"
_VERSION = 1
_BATCH = 64  # draws per batch; fixed so a seed gives the same first samples for any n
_MAX_BATCHES = 1000


def _rescale(ellipse: Ellipse, sx: float, sy: float) -> Ellipse:
    """``ellipse`` under the map ``x -> (x + 0.5) * sx - 0.5``, ``y -> (y + 0.5) * sy - 0.5`` (an image resize)."""
    c, s = math.cos(ellipse.theta), math.sin(ellipse.theta)
    rotation = np.array([[c, -s], [s, c]])
    shape = rotation @ np.diag([ellipse.a**2, ellipse.b**2]) @ rotation.T
    scale = np.diag([sx, sy])
    evals, evecs = np.linalg.eigh(scale @ shape @ scale)
    b, a = np.sqrt(np.maximum(evals, 1e-12))
    theta = math.atan2(evecs[1, 1], evecs[0, 1])
    cx, cy = float((ellipse.cx + 0.5) * sx - 0.5), float((ellipse.cy + 0.5) * sy - 0.5)
    return Ellipse(cx, cy, float(a), float(b), theta)


def _check_size(size: object) -> tuple[int, int]:
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise ConfigError("size", size, "(rows, cols), two positive integers")
    return int(size[0]), int(size[1])


class EllipseShapePrior:
    """Kernel density over head ellipse parameters (see the module docstring).

    Build it with :meth:`fit` (on a cohort's masks: ``fit(monai_fetal.data.cohort.read_filled_masks(folder))``);
    restore it with :meth:`from_dict` or :meth:`load`.

    Args:
        points: ``(count, 6)`` parameters of the fitted masks, in the order of ``PARAMETERS``.
        cov: ``(6, 6)`` covariance of ``points``.
        bandwidth: kernel width as a fraction of that spread (positive).
        low: ``(4,)`` smallest ``cx, cy, log_major, log_ratio`` kept.
        high: ``(4,)`` largest of the same.
        size: reference image size ``(rows, cols)``, the default size of samples.
    """

    def __init__(
        self,
        points: Sequence[Sequence[float]],
        cov: Sequence[Sequence[float]],
        bandwidth: float,
        low: Sequence[float],
        high: Sequence[float],
        size: tuple[int, int],
    ) -> None:
        dims = len(PARAMETERS)
        self.points = np.asarray(points, dtype=np.float64)
        self.cov = np.asarray(cov, dtype=np.float64)
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        self.size = _check_size(size)
        if self.points.ndim != 2 or self.points.shape[1] != dims or not np.isfinite(self.points).all():
            raise ConfigError("points", f"array of shape {self.points.shape}", f"rows of {dims} finite numbers")
        if not len(self.points):
            raise ConfigError("points", "no rows", "the parameters of at least one fitted mask")
        if self.cov.shape != (dims, dims) or not np.isfinite(self.cov).all():
            raise ConfigError("cov", f"array of shape {self.cov.shape}", f"a {dims} x {dims} matrix of finite numbers")
        if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) or not 0 < bandwidth < math.inf:
            raise ConfigError("bandwidth", bandwidth, "a positive number (kernel width, fraction of the fitted spread)")
        if self.low.shape != (_BOUNDED,) or self.high.shape != (_BOUNDED,) or not (self.low <= self.high).all():
            raise ConfigError("low/high", (low, high), f"{_BOUNDED} lower bounds, each not above its upper bound")
        self.bandwidth = float(bandwidth)
        evals, evecs = np.linalg.eigh((self.cov + self.cov.T) / 2)
        self._factor = self.bandwidth * evecs * np.sqrt(np.clip(evals, 0.0, None))

    @property
    def count(self) -> int:
        """Number of masks fitted."""
        return len(self.points)

    @staticmethod
    def parameters_of(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The six parameters ``(6,)`` of a filled mask ``(rows, cols)``, mapped to the reference ``size``.

        Raises:
            ValueError: the mask is not 2-D or is empty.
        """
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"a head mask must be 2-D (rows, cols), got shape {mask.shape}")
        rows, cols = size
        ellipse = _rescale(fit_ellipse_to_mask(mask > 0), cols / mask.shape[1], rows / mask.shape[0])
        angle = 2.0 * ellipse.major_angle
        return np.array(
            [
                (ellipse.cx + 0.5) / cols,
                (ellipse.cy + 0.5) / rows,
                math.log(ellipse.semi_major / min(rows, cols)),
                math.log(ellipse.semi_minor / ellipse.semi_major),
                math.cos(angle),
                math.sin(angle),
            ]
        )

    @classmethod
    def fit(cls, masks: Sequence[np.ndarray], bandwidth: float = 0.5) -> EllipseShapePrior:
        """Fit the prior on filled head masks (2-D arrays, any non-zero value is head; sizes may differ).

        Args:
            masks: at least 2 filled masks ``(rows, cols)``.
            bandwidth: kernel width as a fraction of the fitted spread; 0.5 keeps the mean and spread
                of area, axis ratio and centre within 0.2 standard deviations and 15 % of the real ones
                on HC18 (Scott's rule, 0.66 for 60 masks, spreads more).

        Raises:
            ConfigError: fewer than 2 masks, a mask that is not 2-D or is empty (named by its index),
                or a bad ``bandwidth``.
        """
        masks = [np.asarray(mask) for mask in masks]
        if len(masks) < 2:
            raise ConfigError("masks", f"{len(masks)} mask(s)", "at least 2 filled head masks")
        for index, mask in enumerate(masks):
            if mask.ndim != 2 or int((mask > 0).sum()) < 5:
                raise ConfigError(
                    f"masks[{index}]",
                    f"array of shape {mask.shape} with {int((mask > 0).sum())} head pixels",
                    "a 2-D filled head mask with at least 5 head pixels",
                )
        size = Counter(mask.shape for mask in masks).most_common(1)[0][0]
        points = np.stack([cls.parameters_of(mask, size) for mask in masks])
        return cls(
            points=points,
            cov=np.cov(points, rowvar=False),
            bandwidth=bandwidth,
            low=points[:, :_BOUNDED].min(axis=0),
            high=points[:, :_BOUNDED].max(axis=0),
            size=size,
        )

    def _draw(self, n: int, seed: int) -> np.ndarray:
        """``(n, 6)`` parameters drawn from the kernel density, rejecting those outside the fitted range.

        Draws go in fixed batches, so the first rows for a seed do not depend on ``n``.
        """
        rng = np.random.default_rng(seed)
        accepted, total = [], 0
        for _ in range(_MAX_BATCHES):
            if total >= n:
                break
            centres = self.points[rng.integers(0, self.count, _BATCH)]
            noise = rng.standard_normal((_BATCH, len(PARAMETERS)))
            batch = centres + np.einsum("ij,kj->ik", noise, self._factor)  # row by row, no BLAS blocking
            inside = ((batch[:, :_BOUNDED] >= self.low) & (batch[:, :_BOUNDED] <= self.high)).all(axis=1)
            accepted.append(batch[inside][: n - total])
            total += len(accepted[-1])
        if total < n:
            raise RuntimeError(f"the shape prior kept {total} of {_BATCH * _MAX_BATCHES} draws; its range is narrow")
        return np.concatenate(accepted) if accepted else np.zeros((0, len(PARAMETERS)))

    def sample_ellipses(self, n: int, size: tuple[int, int] | None = None, seed: int = 0) -> list[Ellipse]:
        """``n`` head ellipses in pixel coordinates of an image of ``size`` (rows, cols; default: the reference size).

        Deterministic for a ``seed``; the first ``n`` ellipses of a larger draw with the same seed are the same.

        Raises:
            ConfigError: ``n`` is not a non-negative integer, ``seed`` not an integer, or ``size`` not two
                positive integers.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ConfigError("n", n, "a non-negative integer number of samples")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ConfigError("seed", seed, "an integer")
        rows, cols = _check_size(self.size if size is None else size)
        ref_rows, ref_cols = self.size
        ellipses = []
        for cx, cy, log_major, log_ratio, cos2t, sin2t in self._draw(int(n), seed):
            major = math.exp(log_major) * min(ref_rows, ref_cols)
            reference = Ellipse(
                cx * ref_cols - 0.5,
                cy * ref_rows - 0.5,
                major,
                major * math.exp(log_ratio),
                math.atan2(sin2t, cos2t) / 2.0,
            )
            ellipses.append(_rescale(reference, cols / ref_cols, rows / ref_rows))
        return ellipses

    def sample(self, n: int, size: tuple[int, int] | None = None, seed: int = 0) -> list[np.ndarray]:
        """``n`` filled head masks, each ``uint8`` 0/1 of shape ``size`` (rows, cols; default: the reference size).

        Raises:
            ConfigError: bad ``n``, ``seed`` or ``size``.
        """
        shape = _check_size(self.size if size is None else size)
        return [ellipse_to_mask(e, shape) for e in self.sample_ellipses(n, shape, seed)]

    def to_dict(self) -> dict:
        """JSON-serialisable description; :meth:`from_dict` restores it exactly."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "parameters": list(PARAMETERS),
            "size": list(self.size),
            "bandwidth": self.bandwidth,
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "cov": self.cov.tolist(),
            "points": self.points.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> EllipseShapePrior:
        """The prior described by ``data`` (from :meth:`to_dict`).

        Raises:
            ConfigError: ``data`` is not such a description.
        """
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ConfigError("shape_prior.format", found, f"a dict with format '{_FORMAT}'")
        if data.get("version") != _VERSION or data.get("parameters") != list(PARAMETERS):
            expected = f"version {_VERSION} with parameters {list(PARAMETERS)}"
            raise ConfigError("shape_prior.version", data.get("version"), expected)
        missing = [key for key in ("points", "cov", "bandwidth", "low", "high", "size") if key not in data]
        if missing:
            raise ConfigError("shape_prior", f"keys {sorted(data)}", f"also the keys {missing}")
        return cls(data["points"], data["cov"], data["bandwidth"], data["low"], data["high"], data["size"])

    def save(self, path: str | Path) -> Path:
        """Write the prior as JSON to ``path`` atomically and return the path."""
        path = Path(path)
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | Path) -> EllipseShapePrior:
        """Read a prior written by :meth:`save`.

        Raises:
            InputDataError: the file is missing, not JSON, or not a shape prior.
        """
        path = Path(path)
        if not path.is_file():
            raise InputDataError(path, "file not found", "fit a prior first: EllipseShapePrior.fit(masks).save(path)")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, ConfigError) as err:
            raise InputDataError(
                path, f"is not a shape prior ({err})", "give a file written by EllipseShapePrior.save"
            ) from err

    def __repr__(self) -> str:
        return f"EllipseShapePrior(count={self.count}, size={self.size}, bandwidth={self.bandwidth})"
