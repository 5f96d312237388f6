"""Figures: a grid of greyscale images with their mask contours, a measurement review overlay, and a few pairs
read from a cohort folder.

Matplotlib is used through its Agg canvas directly (no pyplot state), so figures can be drawn from any thread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from monai_fetal.atomic import atomic_path
from monai_fetal.data.cohort import Cohort
from monai_fetal.data.io import read_image
from monai_fetal.errors import ConfigError
from monai_fetal.shape.ellipse import Ellipse

__all__ = ["save_pair_grid", "save_measurement_overlay", "load_cohort_pairs"]

PANEL_INCHES = 3.0
DPI = 100


def save_pair_grid(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    path: str | Path,
    titles: Sequence[str] | None = None,
    columns: int = 4,
) -> Path:
    """Save a PNG grid of greyscale images ``(rows, cols)`` with each mask's contour drawn over its image.

    Args:
        images: 2-D greyscale arrays (any range; each shown from its own min to max).
        masks: 2-D masks of the images' shapes (non-zero is foreground); an empty mask draws no contour.
        path: the PNG to write (atomically).
        titles: one title per panel, or None.
        columns: panels per row (fewer when there are fewer images).

    Returns:
        ``path``.

    Raises:
        ConfigError: no images, counts that differ, shapes that differ, or ``columns`` < 1.
    """
    if len(images) == 0:
        raise ConfigError("images", len(images), "at least one image")
    if len(masks) != len(images):
        raise ConfigError("masks", len(masks), f"one mask per image ({len(images)})")
    if titles is not None and len(titles) != len(images):
        raise ConfigError("titles", len(titles), f"one title per image ({len(images)})")
    if columns < 1:
        raise ConfigError("columns", columns, "an integer >= 1")
    for k, (image, mask) in enumerate(zip(images, masks)):
        if np.ndim(image) != 2 or np.shape(image) != np.shape(mask):
            raise ConfigError(f"images[{k}]", np.shape(image), f"a 2-D image of its mask's shape {np.shape(mask)}")
    ncols = min(columns, len(images))
    nrows = math.ceil(len(images) / ncols)
    aspect = max(np.shape(image)[0] / np.shape(image)[1] for image in images)
    figure = Figure(figsize=(PANEL_INCHES * ncols, PANEL_INCHES * aspect * nrows + 0.3 * nrows), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=False)
    for k, axis in enumerate(axes.ravel()):
        axis.set_axis_off()
        if k >= len(images):
            continue
        axis.imshow(np.asarray(images[k]), cmap="gray", interpolation="antialiased")
        mask = np.asarray(masks[k]) > 0
        if mask.any() and not mask.all():
            axis.contour(mask.astype(np.float32), levels=[0.5], colors="#ffcc00", linewidths=0.8)
        if titles is not None:
            axis.set_title(str(titles[k]), fontsize=8)
    figure.tight_layout(pad=0.3)
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    return path


def save_measurement_overlay(
    image: np.ndarray, mask: np.ndarray, path: str | Path, ellipse: Ellipse | None = None, text: str = "", flagged: bool = False
) -> Path:
    """Save a review PNG: ``image`` with the outline of ``mask`` (yellow), the fitted ``ellipse`` (cyan, dashed)
    and ``text`` (e.g. the HC in mm; red when ``flagged``), at most 800 pixels wide.

    Args:
        image: 2-D greyscale array ``(rows, cols)``.
        mask: head mask of ``image``'s shape (non-zero is head).
        path: the PNG to write (atomically).
        ellipse: the ellipse in ``image``'s pixel coordinates, or None.
        text: caption drawn in the top-left corner.
        flagged: draw the caption in red (a person should look).

    Raises:
        ConfigError: ``image`` is not 2-D or ``mask`` has another shape.
    """
    from matplotlib.patches import Ellipse as EllipsePatch

    if np.ndim(image) != 2 or np.shape(image) != np.shape(mask):
        raise ConfigError("image", np.shape(image), f"a 2-D image of its mask's shape {np.shape(mask)}")
    rows, cols = np.shape(image)
    scale = min(1.0, 800 / cols)
    figure = Figure(figsize=(cols * scale / DPI, rows * scale / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    axis = figure.add_axes((0, 0, 1, 1))
    axis.set_axis_off()
    axis.imshow(np.asarray(image), cmap="gray", interpolation="antialiased")
    head = np.asarray(mask) > 0
    if head.any() and not head.all():
        axis.contour(head.astype(np.float32), levels=[0.5], colors="#ffcc00", linewidths=1.0)
    if ellipse is not None:
        axis.add_patch(
            EllipsePatch(
                (ellipse.cx, ellipse.cy), 2 * ellipse.a, 2 * ellipse.b, angle=np.degrees(ellipse.theta),
                fill=False, edgecolor="#00e5ff", linestyle="--", linewidth=1.0,
            )
        )
    if text:
        axis.text(
            0.01, 0.99, text, transform=axis.transAxes, va="top", ha="left", fontsize=9,
            color="#ff4040" if flagged else "white", bbox={"facecolor": "black", "alpha": 0.6, "pad": 2},
        )
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    return path


def load_cohort_pairs(
    cohort_dir: str | Path, n: int, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Up to ``n`` (image, mask) pairs of a cohort folder, chosen at random (by ``seed``) from its datalist.

    Returns:
        images (``float32`` ``(rows, cols)``), masks (``bool``, same shape) and their ids, in datalist order.

    Raises:
        ConfigError: ``n`` < 1.
        InputDataError: no ``datalist.json`` in ``cohort_dir``, or an unreadable file it names.
    """
    if n < 1:
        raise ConfigError("n", n, "an integer >= 1")
    root = Path(cohort_dir)
    items = Cohort(root).entries()
    chosen = sorted(np.random.default_rng(seed).permutation(len(items))[:n].tolist())
    images, masks, ids = [], [], []
    for index in chosen:
        item = items[index]
        images.append(read_image(root / item["image"]))
        masks.append(read_image(root / item["label"]) > 0)
        ids.append(str(item.get("id", Path(item["image"]).stem)))
    return images, masks, ids
