"""Speckle texture for a latent generator's images: what its autoencoder cannot reconstruct, put back as noise.

A latent autoencoder trained with an L1 loss reconstructs an ultrasound image without its speckle (the
stochastic fine texture, about a tenth of the grey range): real images only encoded and decoded already
score 8x the real-vs-real floor of the LiteMedSAM-feature FID. The speckle cannot be predicted from the
latents, but its statistics can: :func:`fit_speckle` measures, on real images, the residual ``real -
reconstruction`` at the images' own resolution (its spatial spectrum, by Welch's method on tiles, and its
standard deviation as a function of the reconstruction's grey level), and :class:`SpeckleTexture` adds
Gaussian noise with that spectrum and that level-dependent deviation to a generated image, drawn from the
pair's seed. Fitted on unlabelled images only; no mask is read.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import AutoencoderKL

from monai_fetal.atomic import atomic_path, write_text_atomic
from monai_fetal.errors import ConfigError, InputDataError

__all__ = ["SPECKLE_NAME", "SpeckleTexture", "reconstruct", "fit_speckle", "speckle_of", "copy_speckle"]

SPECKLE_NAME = "speckle.json"
_FORMAT = "monai_fetal.SpeckleTexture"
_LEVELS = 16  # grey-level bins of the deviation table, over [0, 1]
_TILE = 64  # Welch tiles of the residual's spectrum
_KERNEL = 31


@dataclass(frozen=True)
class SpeckleTexture:
    """Gaussian texture with a fitted spectrum (``kernel``) and a deviation per grey level (``levels``), times ``scale``.

    Args:
        kernel: ``(k, k)`` filter (unit energy) that shapes white noise to the residual's spectrum, in pixels of
            the images it was fitted on (the generator's output size, that of the real images).
        levels: the residual's standard deviation, on [0, 1], in :data:`_LEVELS` equal bins of the
            reconstruction's grey level.
        scale: the share of that deviation added (1: the whole residual, which also holds misplaced structure).
    """

    kernel: np.ndarray
    levels: tuple[float, ...]
    scale: float

    def __post_init__(self) -> None:
        kernel = np.asarray(self.kernel, dtype=np.float32)
        if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0 or not np.isfinite(kernel).all():
            raise ConfigError("speckle kernel", list(kernel.shape), "a square filter of odd size with finite values")
        levels = tuple(float(v) for v in self.levels)
        if len(levels) != _LEVELS or not all(np.isfinite(v) and v >= 0 for v in levels):
            raise ConfigError("speckle levels", levels, f"{_LEVELS} finite deviations >= 0")
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) or not 0.0 <= self.scale <= 2.0:
            raise ConfigError("speckle scale", self.scale, "a number from 0 (no texture) to 2")
        object.__setattr__(self, "kernel", kernel)
        object.__setattr__(self, "levels", levels)

    def noise(self, shape: Sequence[int], seed: int) -> np.ndarray:
        """Unit-deviation noise of ``shape`` with the fitted spectrum; it depends only on ``seed``."""
        rows, cols = int(shape[0]), int(shape[1])
        white = torch.randn((rows, cols), generator=torch.Generator().manual_seed(int(seed)))
        half = self.kernel.shape[0] // 2
        placed = torch.zeros((rows, cols))
        placed[: self.kernel.shape[0], : self.kernel.shape[1]] = torch.from_numpy(self.kernel)[: rows, : cols]
        placed = torch.roll(placed, (-half, -half), dims=(0, 1))
        shaped = torch.fft.irfft2(torch.fft.rfft2(white) * torch.fft.rfft2(placed).conj(), s=(rows, cols))  # circular correlation
        return (shaped / shaped.std().clamp_min(1e-8)).numpy()

    def add_to(self, image: np.ndarray, seed: int) -> np.ndarray:
        """``image`` (``(rows, cols)`` on [0, 1]) with the texture added, clipped to [0, 1]."""
        image = np.asarray(image, dtype=np.float32)
        centres = (np.arange(_LEVELS) + 0.5) / _LEVELS
        deviation = np.interp(image, centres, np.asarray(self.levels, dtype=np.float32))
        return np.clip(image + self.scale * deviation * self.noise(image.shape, seed), 0.0, 1.0)

    def _json(self) -> str:
        data = {"format": _FORMAT, "scale": self.scale, "levels": [round(v, 6) for v in self.levels], "kernel": self.kernel.round(6).tolist()}
        return json.dumps(data) + "\n"

    def digest(self) -> str:
        """A short sha256 of the texture (what a synthetic set records, so it is never completed with another)."""
        return hashlib.sha256(self._json().encode()).hexdigest()[:16]

    def save(self, path: str | Path) -> Path:
        """Write the texture as JSON (atomically)."""
        write_text_atomic(Path(path), self._json())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> SpeckleTexture:
        """Read a texture written by :meth:`save`.

        Raises:
            InputDataError: the file is unreadable or not such a texture.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            if data.get("format") != _FORMAT:
                raise ValueError(f"format {data.get('format')!r}, not {_FORMAT}")
            return cls(np.asarray(data["kernel"], dtype=np.float32), tuple(data["levels"]), data["scale"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError, ConfigError) as err:
            raise InputDataError(path, f"is not a speckle texture ({err})", "restore it from the generator folder it came from, or delete it to sample without texture") from err


def reconstruct(autoencoder: AutoencoderKL, image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """``image`` on [0, 1] encoded and decoded at the autoencoder's ``size``, resized back (bilinear), on [0, 1]."""
    device = next(autoencoder.parameters()).device
    small = F.interpolate(torch.from_numpy(image)[None, None].to(device), size=tuple(size), mode="area") * 2.0 - 1.0
    with torch.no_grad():
        decoded = autoencoder.decode_stage_2_outputs(autoencoder.encode_stage_2_inputs(small)).float()
    back = F.interpolate(((decoded + 1.0) / 2.0).clamp(0.0, 1.0), size=image.shape, mode="bilinear", align_corners=False)
    return back[0, 0].cpu().numpy()


def _tiles(residual: np.ndarray) -> np.ndarray:
    """Hann-windowed ``_TILE`` x ``_TILE`` tiles of ``residual``, half overlapping."""
    rows, cols = residual.shape
    window = np.outer(np.hanning(_TILE), np.hanning(_TILE))
    return np.stack(
        [residual[r : r + _TILE, c : c + _TILE] * window for r in range(0, rows - _TILE + 1, _TILE // 2) for c in range(0, cols - _TILE + 1, _TILE // 2)]
    )


def fit_speckle(autoencoder: AutoencoderKL, size: Sequence[int], images: Iterable[np.ndarray], scale: float) -> SpeckleTexture:
    """The texture of what ``autoencoder`` (at ``size``) loses on ``images`` (``(rows, cols)`` on [0, 1], unlabelled).

    Raises:
        InputDataError: no image of at least the tile size was given.
    """
    spectrum, tiles = np.zeros((_TILE, _TILE)), 0
    squares, counts = np.zeros(_LEVELS), np.zeros(_LEVELS)
    autoencoder = autoencoder.eval()
    for image in images:
        image = np.asarray(image, dtype=np.float32)
        if min(image.shape) < _TILE:
            continue
        reconstruction = reconstruct(autoencoder, image, size)
        residual = image - reconstruction
        patches = _tiles(residual - residual.mean())
        spectrum += (np.abs(np.fft.fft2(patches)) ** 2).sum(axis=0)
        tiles += len(patches)
        bins = np.clip((reconstruction * _LEVELS).astype(int), 0, _LEVELS - 1).ravel()
        squares += np.bincount(bins, (residual**2).ravel(), _LEVELS)
        counts += np.bincount(bins, None, _LEVELS)
    if not tiles:
        raise InputDataError("speckle images", f"none of at least {_TILE} x {_TILE} pixels", "fit the texture on real ultrasound images")
    spectrum[0, 0] = 0.0
    kernel = np.fft.fftshift(np.real(np.fft.ifft2(np.sqrt(spectrum / tiles))))
    centre, half = _TILE // 2, _KERNEL // 2
    kernel = kernel[centre - half : centre + half + 1, centre - half : centre + half + 1]
    kernel /= np.sqrt((kernel**2).sum())
    levels = np.sqrt(squares / np.maximum(counts, 1.0))
    return SpeckleTexture(kernel.astype(np.float32), tuple(levels.tolist()), float(scale))


def speckle_of(generator_dir: str | Path, enabled: bool = True) -> SpeckleTexture | None:
    """The speckle texture of a generator folder (its ``speckle.json``); ``None`` when it has none or ``enabled`` is off."""
    if not isinstance(enabled, bool):
        raise ConfigError("texture", enabled, "true (add the generator's speckle texture when it has one) or false")
    path = Path(generator_dir) / SPECKLE_NAME
    return SpeckleTexture.load(path) if enabled and path.is_file() else None


def copy_speckle(prior_dir: str | Path, run_dir: str | Path) -> Path | None:
    """Copy the prior's ``speckle.json`` into a run that keeps its autoencoder (conditioning); ``None`` when it has none.

    A texture an earlier run left in ``run_dir`` is removed when the prior has none, so it never outlives its autoencoder.
    """
    source, target = Path(prior_dir) / SPECKLE_NAME, Path(run_dir) / SPECKLE_NAME
    if not source.is_file():
        target.unlink(missing_ok=True)
        return None
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return target
