"""Training datalists that mix real and synthetic cohorts at a chosen ratio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from monai.data import load_decathlon_datalist

from monai_fetal.data.cohort import DATALIST_NAME
from monai_fetal.errors import ConfigError, InputDataError

__all__ = ["load_cohort_items", "mix_real_synthetic"]


def load_cohort_items(cohort_dir: str | Path, key: str = "training") -> list[dict]:
    """Items of ``cohort_dir/datalist.json`` with absolute paths.

    Raises:
        InputDataError: the folder has no datalist (it was not prepared).
    """
    path = Path(cohort_dir) / DATALIST_NAME
    if not path.is_file():
        raise InputDataError(
            path, "not found", f"prepare the cohort first: monai-fetal prepare SRC {cohort_dir}"
        )
    return load_decathlon_datalist(str(path), data_list_key=key, base_dir=str(Path(cohort_dir)))


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
    synthetic = load_cohort_items(synthetic_dir)
    count = len(synthetic) if ratio < 0 else min(len(synthetic), int(round(ratio * len(real))))
    chosen = np.random.default_rng(seed).permutation(len(synthetic))[:count]
    return list(real) + [synthetic[i] for i in sorted(chosen)]
