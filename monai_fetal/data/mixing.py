"""Training datalists that mix real and synthetic cohorts at a chosen ratio."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from monai_fetal.data.cohort import Cohort
from monai_fetal.errors import ConfigError

__all__ = ["mix_real_synthetic"]


def mix_real_synthetic(real: list[dict], synthetic_dir: str | Path | None, ratio: float, seed: int = 0) -> list[dict]:
    """``real`` plus ``round(ratio * len(real))`` synthetic items drawn (seeded) from ``synthetic_dir``.

    ``ratio`` is synthetic images per real image; ``ratio < 0`` takes every synthetic item; with no
    ``synthetic_dir`` (``None`` or ``""``) the real items are returned unchanged.

    Raises:
        ConfigError: ``ratio`` is not a number.
        InputDataError: ``synthetic_dir`` is not a prepared cohort.
    """
    if not synthetic_dir:
        return list(real)
    if not isinstance(ratio, (int, float)):
        raise ConfigError("synthetic_ratio", ratio, "a number of synthetic images per real image, or -1 for all")
    synthetic = Cohort(synthetic_dir).items()
    count = len(synthetic) if ratio < 0 else min(len(synthetic), int(round(ratio * len(real))))
    chosen = np.random.default_rng(seed).permutation(len(synthetic))[:count]
    return list(real) + [synthetic[i] for i in sorted(chosen)]
