"""Procedural fetal-head ultrasound phantom: B-mode-looking head planes with their filled head masks.

An image is rendered the way a scanner forms one: an echogenicity map (maternal tissue layers,
amniotic fluid, scalp, skull, brain with midline, cavum, thalami and choroid plexus) is sampled on
the beam grid of a sector probe (depth x beam angle), attenuated along each beam (so the skull
shadows what lies beyond it), turned into speckle by convolving complex scatterers with an
anisotropic point-spread function, log-compressed and scan-converted to a fan. The mask is the
ellipse on the skull's outer border, as HC18 annotators draw it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage, signal
from tqdm import tqdm

from monai_fetal.data.cohort import Cohort, CohortItem, write_pair
from monai_fetal.errors import ConfigError, InputDataError
from monai_fetal.shape.ellipse import Ellipse, ellipse_to_mask, fit_ellipse_to_mask
from monai_fetal.staging import check_no_overlap, output_lock, staged_folder

__all__ = ["render_phantom", "make_phantom_cohort", "COHORT_NAME", "SPACING_RANGE_MM"]

logger = logging.getLogger(__name__)

COHORT_NAME = "phantom"
SPACING_RANGE_MM = (0.052, 0.326)
MIN_SIDE = 64
_EPS = 1e-6


@dataclass(frozen=True)
class _Fan:
    """Sector field of view: apex ``(x0, y0)`` in pixels (above the image), depths and half-opening angle."""

    x0: float
    y0: float
    r_min: float
    r_max: float
    half_angle: float

    def polar(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Depth and beam angle (from straight down, positive towards +x) of points ``(x, y)``."""
        dx, dy = x - self.x0, y - self.y0
        return np.hypot(dx, dy), np.arctan2(dx, dy)

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether points ``(x, y)`` lie in the field of view."""
        r, phi = self.polar(x, y)
        return (r >= self.r_min) & (r <= self.r_max) & (np.abs(phi) <= self.half_angle)


def _sample_fan(rng: np.random.Generator, rows: int, cols: int) -> _Fan:
    """A whole sector seen from a convex probe, or a zoomed part of one whose edges cut the image corners."""
    x0 = cols / 2 + rng.normal(0, 0.01 * cols)
    if rng.random() < 0.35:
        top_y, top_half = rows * rng.uniform(0.0, 0.04), cols * rng.uniform(0.1, 0.2)
        low_y, low_half = rows * 0.87, cols * rng.uniform(0.4, 0.55)
        bottom_y = rows * rng.uniform(0.86, 1.0)
    else:
        top_y, top_half = -rows * rng.uniform(0.0, 0.05), cols * rng.uniform(0.3, 0.46)
        low_y, low_half = float(rows), cols * rng.uniform(0.52, 0.75)
        bottom_y = rows * rng.uniform(1.02, 1.1)
    slope = (low_half - top_half) / (low_y - top_y)
    y0 = top_y - top_half / slope
    return _Fan(x0, y0, top_y - y0, bottom_y - y0, math.atan(slope))


def _sample_head(rng: np.random.Generator, fan: _Fan, rows: int, cols: int) -> Ellipse:
    """Outer skull ellipse: about 7-49 % of the image, inside it, and at least 98 % inside the fan where it can be."""
    grid_y, grid_x = np.mgrid[0:rows:4, 0:cols:4]
    inside_fan = fan.contains(grid_x.astype(float), grid_y.astype(float))
    best, best_score = None, -1.0
    for attempt in range(80):
        fraction = 0.07 + rng.beta(2.2, 3.0) * 0.42 * (1 - attempt / 80)
        ratio = rng.uniform(0.72, 0.92)
        a = math.sqrt(fraction * rows * cols / (math.pi * ratio))
        b = a * ratio
        theta = float(np.clip(rng.normal(0.0, 0.3), -1.2, 1.2)) + (math.pi / 2 if rng.random() < 0.08 else 0.0)
        half_w = math.sqrt((a * math.cos(theta)) ** 2 + (b * math.sin(theta)) ** 2)
        half_h = math.sqrt((a * math.sin(theta)) ** 2 + (b * math.cos(theta)) ** 2)
        margin = 4.0
        shrink = min(1.0, (cols / 2 - margin) / half_w, (rows / 2 - margin) / half_h)
        a, b, half_w, half_h = a * shrink, b * shrink, half_w * shrink, half_h * shrink
        cx = rng.uniform(half_w + margin, cols - half_w - margin)
        cx = 0.5 * cx + 0.5 * float(np.clip(fan.x0, half_w + margin, cols - half_w - margin))
        cy = rng.uniform(half_h + margin, rows - half_h - margin)
        head = Ellipse(cx, cy, a, b, theta)
        mask = ellipse_to_mask(head, (rows, cols))[0:rows:4, 0:cols:4] > 0
        score = float(inside_fan[mask].mean()) if mask.any() else 0.0
        if score >= 0.98:
            return head
        if score > best_score:
            best, best_score = head, score
    return best


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: tuple[float, float]) -> np.ndarray:
    """Gaussian-filtered white noise scaled to unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return field / (field.std() + _EPS)


def _coarse_field(
    rng: np.random.Generator, x: np.ndarray, y: np.ndarray, cell: float, extent: tuple[int, int]
) -> np.ndarray:
    """Smooth unit-variance random field with features about ``cell`` pixels wide, sampled at ``(x, y)``."""
    rows, cols = extent
    coarse = _smooth_noise(rng, (int(rows / cell) + 4, int(cols / cell) + 4), (1.0, 1.0))
    return ndimage.map_coordinates(coarse, [y / cell + 1.5, x / cell + 1.5], order=1, mode="nearest")


def _periodic_noise(rng: np.random.Generator, angle: np.ndarray, harmonics: int = 6) -> np.ndarray:
    """Smooth random function of an angle (period 2 pi), about unit amplitude: a random Fourier series."""
    table = np.linspace(-np.pi, np.pi, 721)
    k = np.arange(1, harmonics + 1)[:, None]
    weights = rng.normal(0, 1, (2, harmonics, 1)) / k
    values = np.sum(weights[0] * np.cos(k * table) + weights[1] * np.sin(k * table), axis=0)
    values /= np.sqrt(np.sum(weights**2) / 2) + _EPS
    return np.interp(angle, table, values, period=2 * np.pi)


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Angle wrapped to ``[-pi, pi)``."""
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _specular(
    normal_x: np.ndarray,
    normal_y: np.ndarray,
    beam_x: np.ndarray,
    beam_y: np.ndarray,
    power: float,
    floor: float = 0.06,
) -> np.ndarray:
    """Angle dependence of a specular echo: 1 where the beam meets the surface head on, ``floor`` where it grazes."""
    cos = np.abs(normal_x * beam_x + normal_y * beam_y) / (np.hypot(normal_x, normal_y) + _EPS)
    return floor + (1 - floor) * cos**power


def _brain(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, head: Ellipse, beam: tuple[np.ndarray, np.ndarray]):
    """Echogenicity of the brain (diffuse, relative) and of its specular lines, in head coordinates.

    ``u`` runs along the major axis and ``v`` across it, both in pixels from the head's centre.

    Returns:
        ``(diffuse, specular)`` arrays of ``u``'s shape, meant for points inside the skull.
    """
    a, b = head.a, head.b
    c, s = math.cos(head.theta), math.sin(head.theta)
    beam_u, beam_v = beam[0] * c + beam[1] * s, -beam[0] * s + beam[1] * c
    across = _specular(np.zeros_like(u), np.ones_like(u), beam_u, beam_v, 2.0)
    front = 1.0 if rng.random() < 0.5 else -1.0
    p, q = u / a, v / b
    width = max(1.0, 0.005 * a)
    diffuse = np.ones_like(u)

    wobble = 0.012 * b * np.sin(p * rng.uniform(2, 5) + rng.uniform(0, 2 * np.pi))
    midline = np.exp(-0.5 * ((v - wobble) / (1.5 * width)) ** 2) * (np.abs(p) < rng.uniform(0.8, 0.95))
    gaps = 0.5 + 0.5 * np.tanh(2.5 * _periodic_noise(rng, p * np.pi * 0.9, 12) + 0.5)
    csp_c, csp_len, csp_w = front * rng.uniform(0.3, 0.42), rng.uniform(0.07, 0.12), rng.uniform(0.025, 0.045) * b
    csp = np.sqrt(((p - csp_c) / csp_len) ** 4 + (v / csp_w) ** 4)
    csp_walls = np.exp(-0.5 * ((np.abs(v) - csp_w) / width) ** 2) * (np.abs(p - csp_c) < csp_len)
    specular = rng.uniform(4, 14) * midline * gaps * (csp > 1.3) * across
    specular += rng.uniform(2, 8) * csp_walls * across
    diffuse *= 1 - 0.85 * np.exp(-0.5 * csp**4)

    for side in (-1.0, 1.0):
        thalamus = ((p + front * 0.08) / 0.17) ** 2 + ((q - side * 0.16) / 0.15) ** 2
        diffuse *= 1.0 - 0.5 * np.exp(-0.5 * thalamus**2)
        horn_p, horn_q = -front * rng.uniform(0.45, 0.6), side * rng.uniform(0.18, 0.28)
        horn = ((p - horn_p) / 0.2) ** 2 + ((q - horn_q) / 0.09) ** 2
        diffuse = np.where(horn < 1.0, 0.15 + 0.5 * horn, diffuse)
        plexus = ((p - horn_p * 1.04) / 0.13) ** 2 + ((q - horn_q) / 0.045) ** 2
        far = side * c > 0
        diffuse += (rng.uniform(3.0, 10.0) if far else rng.uniform(0.5, 3.0)) * np.exp(-0.5 * plexus**2)

    radius, angle = np.hypot(p, q), np.arctan2(q, p)
    for _ in range(int(rng.integers(1, 6))):
        at, span = rng.uniform(-np.pi, np.pi), rng.uniform(0.15, 0.5)
        off = _wrap(angle - at)
        arc = np.exp(-0.5 * ((radius - rng.uniform(0.45, 0.85)) * b / width) ** 2) * np.exp(-0.5 * (off / span) ** 4)
        specular += rng.uniform(0.5, 3.0) * arc * _specular(p, q, beam_u, beam_v, 2.0)
    return diffuse, specular


def _interfaces(
    rng: np.random.Generator, x: np.ndarray, y: np.ndarray, beam: tuple[np.ndarray, np.ndarray], extent: tuple[int, int]
) -> np.ndarray:
    """Specular echo of a few long curved tissue boundaries (uterine wall, placenta, limbs) crossing the view."""
    rows, cols = extent
    echo = np.zeros_like(x)
    for _ in range(int(rng.integers(1, 5))):
        px, py = rng.uniform(0.1, 0.9) * cols, rng.uniform(0.1, 0.95) * rows
        tangent = rng.normal(0.0, 0.5)
        radius = rng.uniform(0.3, 1.5) * rows * (1 if rng.random() < 0.5 else -1)
        xc, yc = px - radius * math.sin(tangent), py + radius * math.cos(tangent)
        dx, dy = x - xc, y - yc
        off = np.hypot(dx, dy) - abs(radius)
        along = _wrap(np.arctan2(dy, dx) - math.atan2(py - yc, px - xc)) * abs(radius)
        half_length = rng.uniform(0.1, 0.45) * cols
        line = np.exp(-0.5 * (off / rng.uniform(2.5, 6.0)) ** 2) * np.exp(-0.5 * (along / half_length) ** 4)
        echo += rng.uniform(1.0, 4.0) * line * _specular(dx, dy, beam[0], beam[1], 2.0)
    return echo


def _echo_maps(
    rng: np.random.Generator, fan: _Fan, head: Ellipse, r: np.ndarray, phi: np.ndarray, extent: tuple[int, int]
):
    """Echogenicity and attenuation on the beam grid ``(r, phi)``.

    Returns:
        ``(diffuse, specular, skull_attenuation, tissue_attenuation, inside)``: scatterer power, coherent
        echo power, attenuation per pixel of depth through bone and through soft tissue, and the brain's extent.
    """
    x = fan.x0 + r * np.sin(phi)
    y = fan.y0 + r * np.cos(phi)
    beam = (np.sin(phi), np.cos(phi))
    depth = r - fan.r_min

    layers = _smooth_noise(rng, (r.shape[0], 1), (rng.uniform(3, 10), 0))
    texture = _coarse_field(rng, x, y, rng.uniform(25, 60), extent)
    blobs = _coarse_field(rng, x, y, rng.uniform(8, 16), extent)
    tissue = np.exp(0.4 * layers * np.exp(-depth / (0.3 * depth.max())) + 0.55 * texture + 0.4 * blobs)
    wall = rng.uniform(25, 70) * extent[0] / 540
    wall_bands = np.exp(1.2 * _smooth_noise(rng, (r.shape[0], 1), (rng.uniform(1.5, 3), 0)))
    tissue *= 1 + (1.5 * wall_bands - 0.3) * np.exp(-0.5 * (depth / wall) ** 2)

    c, s = math.cos(head.theta), math.sin(head.theta)
    u = (x - head.cx) * c + (y - head.cy) * s
    v = -(x - head.cx) * s + (y - head.cy) * c
    gu, gv = u / head.a**2, v / head.b**2
    rho = np.sqrt((u / head.a) ** 2 + (v / head.b) ** 2)
    dist = (rho - 1.0) * rho / (np.hypot(gu, gv) + _EPS)
    around = np.arctan2(v / head.b, u / head.a)
    normal_x, normal_y = gu * c - gv * s, gu * s + gv * c

    fluid_field = _coarse_field(rng, x, y, rng.uniform(40, 90), extent)
    near_head = np.exp(-np.maximum(dist, 0) / (0.3 * head.b))
    fluid = 1 / (1 + np.exp(-(fluid_field + rng.uniform(-1.0, 2.0) * near_head - 1.2) * 4)) * (dist > 0)
    outside = 1 / (1 + np.exp(-dist / 2.0))
    echo = tissue * (1 - fluid) + 0.01 * fluid
    interfaces = _interfaces(rng, x, y, beam, extent) * (1 - fluid) * outside

    thick = max(5.0, rng.uniform(0.07, 0.11) * head.b) * (1 + 0.2 * _periodic_noise(rng, around))
    skull = np.exp(-0.5 * ((dist + 0.5 * thick) / (0.3 * thick)) ** 4)
    sutures = 1 - 0.8 * np.exp(-0.5 * ((_periodic_noise(rng, around, 3) - 1.8) / 0.25) ** 2)
    patchy = 0.3 * _periodic_noise(rng, around * 2) + 0.3 * _periodic_noise(rng, around * 7, 12)
    brightness = rng.uniform(120, 400) * np.exp(patchy) * sutures
    bone = brightness * _specular(normal_x, normal_y, beam[0], beam[1], rng.uniform(2.0, 4.0), 0.015) * skull
    scalp = np.exp(-0.5 * ((dist - 0.5 * thick) / (0.4 * thick)) ** 2) * rng.uniform(0.5, 3.0)

    brain_diffuse, brain_specular = np.ones_like(u), np.zeros_like(u)
    rows_in, cols_in = np.nonzero((rho < 1.0).any(axis=1))[0], np.nonzero((rho < 1.0).any(axis=0))[0]
    if len(rows_in):
        box = (slice(rows_in[0], rows_in[-1] + 1), slice(cols_in[0], cols_in[-1] + 1))
        brain_diffuse[box], brain_specular[box] = _brain(rng, u[box], v[box], head, (beam[0][box], beam[1][box]))
    inside = 1 / (1 + np.exp((dist + thick) / 1.5))
    brain_level = rng.uniform(0.4, 1.1) * np.exp(0.45 * blobs + 0.3 * texture)
    bone_diffuse = rng.uniform(0.5, 0.8)
    decay = math.exp(-(r[1, 0] - r[0, 0]) / (0.3 * float(np.mean(thick))))
    bone = bone + 0.5 * signal.lfilter([1 - decay], [1, -decay], bone, axis=0)
    diffuse = echo * (1 - inside) * (1 - skull) + inside * brain_level * brain_diffuse + scalp + bone_diffuse * bone
    specular = (1 - bone_diffuse) * bone + inside * brain_specular * brain_level + interfaces

    skull_attenuation = -np.log(rng.uniform(0.3, 0.7)) / (2 * 0.63 * thick) * skull
    tissue_attenuation = math.log(10) * rng.uniform(0.8, 1.6) / (2 * depth.max()) * (1 - fluid) * (1 - 0.4 * inside)
    return diffuse, specular, skull_attenuation, tissue_attenuation, inside


def _reverberation(rng: np.random.Generator, specular: np.ndarray, inside: np.ndarray, decay_px: float) -> np.ndarray:
    """Haze under bright echoes: a leaky running sum of the echoes above along each beam (axis 0), blurred across."""
    decay = math.exp(-1.0 / decay_px)
    haze = signal.lfilter([1.0 - decay], [1.0, -decay], specular, axis=0)
    haze = ndimage.gaussian_filter1d(haze, 6.0, axis=1)
    return rng.uniform(0.01, 0.1) * haze * inside


def _speckle(
    rng: np.random.Generator, diffuse: np.ndarray, specular: np.ndarray, psf: tuple[float, float], looks: int
) -> np.ndarray:
    """Echo power: complex scatterers of power ``diffuse`` convolved with a Gaussian PSF, plus coherent ``specular``.

    ``looks`` independent speckle patterns are averaged and the power is smoothed a little, as spatial
    compounding and the scanner's speckle reduction do.
    """
    scatter = np.sqrt(diffuse)
    power = np.zeros_like(diffuse)
    for _ in range(looks):
        sigma = (psf[0] * rng.uniform(0.9, 1.1), psf[1] * rng.uniform(0.8, 1.2))
        norm = 2.0 / (4 * math.pi * sigma[0] * sigma[1])
        for _part in range(2):
            field = ndimage.gaussian_filter(scatter * rng.standard_normal(diffuse.shape), sigma, truncate=3.0)
            power += field**2 / (norm * looks)
    coherent = ndimage.gaussian_filter(np.sqrt(specular), (psf[0], psf[1] * 0.7), truncate=3.0)
    return ndimage.gaussian_filter(power + coherent**2, (0.6 * psf[0], 0.5 * psf[1]), truncate=2.5)


def _gain_db(rng: np.random.Generator, depth: np.ndarray) -> np.ndarray:
    """Net gain along depth (dB): attenuation left after time-gain compensation, a gentle ripple, a far fade."""
    span = depth.max() + _EPS
    slope = rng.uniform(2, 8) * depth / span
    ripple = 1.5 * _smooth_noise(rng, depth.shape, (depth.shape[0] / 8, 0))
    fade = 12 * np.clip((depth / span - 0.85) / 0.15, 0, 1) ** 2
    return -slope + ripple - fade


def _scan_convert(
    polar: np.ndarray, fan: _Fan, r_axis: np.ndarray, phi_axis: np.ndarray, rows: int, cols: int
) -> np.ndarray:
    """Beam-grid image ``(depth, angle)`` to the display grid ``(rows, cols)``, 0 outside the fan."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    r, phi = fan.polar(x, y)
    ri = (r - r_axis[0]) / (r_axis[1] - r_axis[0])
    pi = (phi - phi_axis[0]) / (phi_axis[1] - phi_axis[0])
    image = ndimage.map_coordinates(polar, [ri, pi], order=1, mode="constant", cval=0.0)
    edge = np.minimum.reduce([r - fan.r_min, fan.r_max - r, (fan.half_angle - np.abs(phi)) * r])
    return image * np.clip(edge, 0.0, 1.0)


def _grey_bar(image: np.ndarray) -> None:
    """The scanner's grey-scale bar at the left edge, as on the HC18 screenshots (in place)."""
    rows, cols = image.shape
    top, bottom = int(0.045 * rows), int(0.33 * rows)
    left, width = max(1, int(0.004 * cols)), max(2, int(0.008 * cols))
    ramp = np.linspace(255.0, 0.0, bottom - top)[:, None]
    image[top:bottom, left : left + width] = np.maximum(image[top:bottom, left : left + width], ramp)


def render_phantom(
    rng: np.random.Generator, size: tuple[int, int] = (540, 800)
) -> tuple[np.ndarray, np.ndarray, float]:
    """Render one phantom fetal-head plane.

    Args:
        rng: the random generator that decides everything about the image.
        size: ``(rows, cols)``, each at least 64.

    Returns:
        ``(image, mask, mm_per_pixel)``: a ``uint8`` B-mode image ``(rows, cols)``, the filled head mask
        (``uint8`` 0/1, the outer skull ellipse) and the pixel size in mm, within HC18's 0.052-0.326 mm and
        chosen so that, at HC18's image size, the head circumference is a plausible 55-340 mm.

    Raises:
        ConfigError: a side shorter than 64 pixels.
    """
    rows, cols = _check_size(size)
    fan = _sample_fan(rng, rows, cols)
    head = _sample_head(rng, fan, rows, cols)

    beam_step = 1.3 * math.sqrt(rows * cols / (540 * 800))
    n_depth = int(math.ceil((fan.r_max - fan.r_min) / beam_step)) + 2
    n_beams = int(math.ceil(2 * fan.half_angle * fan.r_max / (1.6 * beam_step))) + 2
    r_axis = fan.r_min + beam_step * np.arange(n_depth)
    phi_axis = np.linspace(-fan.half_angle, fan.half_angle, n_beams)
    r, phi = np.meshgrid(r_axis, phi_axis, indexing="ij")

    diffuse, specular, skull_loss, tissue_loss, inside = _echo_maps(rng, fan, head, r, phi, (rows, cols))
    diffuse = diffuse + _reverberation(rng, specular, inside, rng.uniform(0.1, 0.3) * head.b / beam_step)
    depth_loss = np.cumsum(tissue_loss, axis=0) * beam_step
    compensation = rng.uniform(0.7, 1.0) * depth_loss.mean(axis=1, keepdims=True)
    bone_loss = np.minimum(np.cumsum(skull_loss, axis=0) * beam_step, 0.7)
    transmission = np.exp(-2 * (bone_loss + depth_loss - compensation))
    gain = 10 ** (_gain_db(rng, r - fan.r_min) / 10) * transmission
    psf = (rng.uniform(0.8, 1.3), rng.uniform(1.6, 2.8))
    power = _speckle(rng, diffuse * gain, specular * gain, psf, int(rng.integers(2, 4)))

    dynamic_range = rng.uniform(28, 38)
    level = 10 * np.log10(power + 1e-12) + rng.uniform(-1.5, 2.5)
    display = np.clip((level + 0.35 * dynamic_range) / dynamic_range, 0.0, 1.0) ** rng.uniform(0.9, 1.2)
    image = _scan_convert(display, fan, r_axis, phi_axis, rows, cols)
    image = ndimage.gaussian_filter(image, rng.uniform(0.4, 1.0))
    image = np.clip(255.0 * image, 0, 255)
    _grey_bar(image)

    mask = ellipse_to_mask(head, (rows, cols))
    hc_px = head.circumference()
    hc_mm = float(np.clip(rng.normal(178, 55), 55, 340))
    spacing = float(np.clip(hc_mm / hc_px, *SPACING_RANGE_MM))
    return np.round(image).astype(np.uint8), mask, round(spacing, 6)


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    """``size`` as two ints, or ``ConfigError`` unless it is ``(rows, cols)`` with both at least 64."""
    try:
        rows, cols = (int(side) for side in size)
        valid = (rows, cols) == tuple(size) and min(rows, cols) >= MIN_SIDE
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ConfigError("size", size, f"(rows, cols), both integers >= {MIN_SIDE}")
    return rows, cols


def make_phantom_cohort(
    out: str | Path,
    n: int,
    seed: int = 0,
    size: tuple[int, int] = (540, 800),
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write ``n`` phantoms as the cohort folder ``out`` (cohort name ``phantom``) and return its datalist path.

    Case ``k`` (id ``phantom_kkkk``, its own patient) depends only on ``(seed, k)``: the same seed gives
    byte-identical files and a smaller ``n`` gives a prefix of a larger one. The folder is built in a
    staging folder and renamed at the end, under a lock on ``out`` (:mod:`monai_fetal.staging`); an
    existing complete ``out`` is kept unless ``overwrite``, which replaces only what ``monai-fetal`` wrote.

    Raises:
        ConfigError: ``n`` < 1, a negative ``seed``, or a bad ``size``.
        InputDataError: ``out`` exists and is not a cohort folder (with ``overwrite``: holds files
            ``monai-fetal`` did not write), or is the current folder.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError("n", n, "an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError("seed", seed, "an integer >= 0")
    _check_size(size)
    out = Path(out)
    check_no_overlap(out, [], replaced=True)
    datalist = Cohort(out).datalist
    with output_lock(out):
        if out.is_dir() and not overwrite:
            if datalist.is_file():
                logger.info("%s is already written; pass overwrite to redo it", out)
                return datalist
            if any(out.iterdir()):
                raise InputDataError(
                    out, "exists and is not a cohort folder", "choose a new output folder or empty this one"
                )
        with staged_folder(out, "phantom") as staging:
            items = []
            for k in tqdm(range(n), desc="phantom", disable=not progress, unit="img"):
                image, mask, spacing = render_phantom(np.random.default_rng([seed, k]), size)
                case_id = f"phantom_{k:04d}"
                write_pair(staging, case_id, image, mask)
                hc_mm = round(fit_ellipse_to_mask(mask).circumference() * spacing, 2)
                items.append(CohortItem(case_id, case_id, COHORT_NAME, spacing, hc_mm))
            Cohort.write(staging, items, COHORT_NAME)
    return datalist
