"""Distances between feature sets of real and synthetic images: FID, KID and linear-kernel MMD.

FID and MMD are MONAI's (``FIDMetric``, ``MMDMetric``); KID (Binkowski et al., ICLR 2018: the unbiased
MMD with the cubic polynomial kernel, averaged over random subsets) is not in MONAI and is computed here.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import FIDMetric, MMDMetric

from monai_fetal.errors import ConfigError

__all__ = ["frechet_distance", "kernel_inception_distance", "linear_mmd", "feature_distances"]


def _check(real: torch.Tensor, synthetic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    real, synthetic = torch.as_tensor(real).double(), torch.as_tensor(synthetic).double()
    if real.ndim != 2 or synthetic.ndim != 2 or real.shape[1] != synthetic.shape[1]:
        raise ConfigError("features", (tuple(real.shape), tuple(synthetic.shape)), "two [N, D] arrays with the same D")
    if len(real) < 2 or len(synthetic) < 2:
        raise ConfigError("features", (len(real), len(synthetic)), "at least 2 real and 2 synthetic feature vectors")
    return real, synthetic


def frechet_distance(real: torch.Tensor, synthetic: torch.Tensor) -> float:
    """FID between feature sets ``[N, D]`` and ``[M, D]`` (MONAI's ``FIDMetric``); biased upwards when N, M < D."""
    real, synthetic = _check(real, synthetic)
    return float(FIDMetric()(synthetic, real))


def _polynomial_mmd(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 with the kernel ``(x . y / D + 1)^3``."""
    dim = x.shape[1]
    kxx = (x @ x.T / dim + 1) ** 3
    kyy = (y @ y.T / dim + 1) ** 3
    kxy = (x @ y.T / dim + 1) ** 3
    m, n = len(x), len(y)
    return float((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1)) - 2 * kxy.mean())


def kernel_inception_distance(
    real: torch.Tensor, synthetic: torch.Tensor, subsets: int = 50, subset_size: int = 100, seed: int = 0
) -> tuple[float, float]:
    """KID mean and standard deviation over ``subsets`` random subsets of ``min(subset_size, N, M)`` vectors each."""
    real, synthetic = _check(real, synthetic)
    size = min(subset_size, len(real), len(synthetic))
    rng = np.random.default_rng(seed)
    values = [
        _polynomial_mmd(real[rng.choice(len(real), size, replace=False)], synthetic[rng.choice(len(synthetic), size, replace=False)])
        for _ in range(subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def linear_mmd(real: torch.Tensor, synthetic: torch.Tensor, seed: int = 0) -> float:
    """MONAI's unbiased MMD (linear kernel: the squared distance of the feature means) on equal-sized random subsets."""
    real, synthetic = _check(real, synthetic)
    size = min(len(real), len(synthetic))
    rng = np.random.default_rng(seed)
    real = real[rng.choice(len(real), size, replace=False)]
    synthetic = synthetic[rng.choice(len(synthetic), size, replace=False)]
    return float(MMDMetric()(real, synthetic))


def feature_distances(real: torch.Tensor, synthetic: torch.Tensor, seed: int = 0) -> dict:
    """FID, KID (mean and std) and linear MMD of two feature sets, with their sizes."""
    kid, kid_std = kernel_inception_distance(real, synthetic, seed=seed)
    return {
        "fid": frechet_distance(real, synthetic),
        "kid": kid,
        "kid_std": kid_std,
        "mmd_linear": linear_mmd(real, synthetic, seed),
        "n_real": len(real),
        "n_synthetic": len(synthetic),
    }
