"""No warning per evaluated image: MONAI's distance metrics pass a deprecated argument themselves (MONAI#9059)."""

from __future__ import annotations

import subprocess
import sys

import pytest

_SCRIPT = """
import torch
import monai_fetal
from monai.metrics import HausdorffDistanceMetric, SurfaceDistanceMetric
pred = torch.zeros(1, 1, 32, 32); pred[..., 8:20, 8:24] = 1
truth = torch.zeros(1, 1, 32, 32); truth[..., 10:22, 8:26] = 1
for _ in range(3):
    print(HausdorffDistanceMetric(percentile=95)(pred, truth).item(), SurfaceDistanceMetric()(pred, truth).item())
"""


def test_distance_metrics_on_three_images_print_no_deprecation_warning() -> None:
    result = subprocess.run([sys.executable, "-W", "default", "-c", _SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [[float(value) for value in line.split()] for line in result.stdout.splitlines()]
    assert rows == [[pytest.approx(2.059, abs=1e-3), 1.5]] * 3  # HD95 and mean surface distance, in pixels
    assert "deprecat" not in result.stderr.lower(), result.stderr
