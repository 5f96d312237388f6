"""The HC18 images that ship with the package: the demo's embedded real default (no download, no data folder)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEMO_HC18", "demo_hc18_folder"]

DEMO_HC18 = Path(__file__).resolve().parents[1] / "demo_data" / "hc18_demo"
"""30 HC18 images of 30 patients in the HC18 layout (``images/``, ``annotations/``, the pixel-size CSV), CC BY 4.0."""


def demo_hc18_folder() -> Path:
    """The packaged HC18 demo folder (an HC18 layout that ``prepare`` and every command read as it is)."""
    if not (DEMO_HC18 / "images").is_dir():
        raise FileNotFoundError(f"{DEMO_HC18} is missing: reinstall monai-fetal (the package data holds the demo images)")
    return DEMO_HC18
