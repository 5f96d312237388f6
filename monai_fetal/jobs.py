"""Typed entry points of bundle workflows that the CLI, the study and the tutorials call (above the bundles layer)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from monai_fetal.bundles import run_bundle
from monai_fetal.engines.segment import MEASUREMENTS_NAME

__all__ = ["segment_images"]


def segment_images(
    images: Sequence[str | Path],
    out: str | Path,
    checkpoint: str | Path | None = None,
    model_name: str = "lite_medsam",
    boxes: Mapping[str, Sequence[float]] | None = None,
    spacing: float | None = None,
    overlay: bool = False,
    overwrite: bool = False,
    precision: str | None = None,
) -> Path:
    """Segment and measure ``images`` (files, folders, cohort or HC18 folders) into ``out``; the path of ``measurements.csv``.

    Runs the ``fetal_head_sam`` bundle's ``inference.json``: the same reading, inferer and postprocessing as
    ``evaluate.json``. See :func:`plan_segmentation` for ``boxes`` and ``spacing``.

    Raises:
        InputDataError: bad input (named, with the fix) before any output is written, or outputs that exist
            without ``overwrite``.
    """
    overrides: dict[str, object] = {
        "images": [str(p) for p in images],
        "boxes": dict(boxes or {}),
        "spacing": spacing,
        "output_dir": str(out),
        "model_name": model_name,
        "overlay": overlay,
        "overwrite": overwrite,
    }
    if checkpoint:
        overrides["checkpoint"] = str(checkpoint)
    if precision:
        overrides["precision"] = precision
    run_bundle("fetal_head_sam", "inference.json", overrides)
    return Path(out) / MEASUREMENTS_NAME
