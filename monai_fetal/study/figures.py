"""The study's figures (PNG, Agg canvas, written atomically): Dice per image, and Dice against real shots."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from monai_fetal.atomic import atomic_path
from monai_fetal.errors import ConfigError

__all__ = ["save_dice_per_image", "save_dice_vs_shots"]

DPI = 100


def _save(figure: Figure, path: str | Path) -> Path:
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    return path


def save_dice_per_image(panels: Mapping[str, Mapping[str, Mapping[str, float]]], path: str | Path) -> Path:
    """Dice of each test image for several models, one panel per prompt.

    Args:
        panels: ``{prompt: {model: {image id: dice}}}``; images are ordered by the first model's Dice.
        path: the PNG to write.

    Raises:
        ConfigError: no panels, or a panel without models.
    """
    if not panels or any(not models for models in panels.values()):
        raise ConfigError("panels", list(panels), "at least one prompt, each with at least one model")
    figure = Figure(figsize=(5.0 * len(panels), 3.6), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, (prompt, models) in zip(axes, panels.items()):
        first = next(iter(models.values()))
        order = sorted(first, key=first.get)
        for k, (model, dice) in enumerate(models.items()):
            values = [dice.get(case, np.nan) for case in order]
            axis.plot(range(len(order)), values, marker="os^d"[k % 4], linestyle="", label=model, alpha=0.8)
        axis.set_xticks(range(len(order)))
        axis.set_xticklabels(order, rotation=90, fontsize=6)
        axis.set_ylim(0.0, 1.02)
        axis.set_xlabel("test image")
        axis.set_ylabel("Dice")
        axis.set_title(f"prompt: {prompt}")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower right")
    return _save(figure, path)


def save_dice_vs_shots(rows: Sequence[Mapping[str, object]], path: str | Path) -> Path:
    """Mean Dice (band: min to max over seeds) against real training images, one line per synthetic count.

    One panel per test cohort and prompt. ``rows`` are results-table rows (``shots``, ``synthetic``,
    ``seed``, ``cohort``, ``prompt``, ``dice_mean``); rows of 0 shots (the pretrained model, not
    fine-tuned) are drawn as a dashed horizontal line at their mean.

    Raises:
        ConfigError: no rows.
    """
    if not rows:
        raise ConfigError("rows", 0, "at least one result row")
    grouped: dict[tuple[str, str], dict[int, dict[int, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for row in rows:
        grouped[(str(row["cohort"]), str(row["prompt"]))][int(row["synthetic"])][int(row["shots"])].append(
            float(row["dice_mean"])
        )
    figure = Figure(figsize=(4.8 * len(grouped), 3.8), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(grouped), squeeze=False)[0]
    for axis, ((cohort, prompt), lines) in zip(axes, sorted(grouped.items())):
        baseline = lines.get(0, {}).pop(0, None)
        if baseline is not None:
            axis.axhline(float(np.mean(baseline)), color="grey", linestyle="--", label="pretrained (0 shots)")
        lines = {synthetic: points for synthetic, points in lines.items() if points}
        all_shots = sorted({shots for line in lines.values() for shots in line})
        for synthetic, points in sorted(lines.items()):
            shots = sorted(points)
            values = [np.asarray(points[s]) for s in shots]
            mean = [v.mean() for v in values]
            line = axis.plot(shots, mean, marker="o", label=f"+{synthetic} synthetic")[0]
            low, high = [v.min() for v in values], [v.max() for v in values]
            axis.fill_between(shots, low, high, color=line.get_color(), alpha=0.2)
        axis.set_xscale("log")
        axis.set_xticks(all_shots)
        axis.set_xticklabels([str(s) for s in all_shots])
        axis.minorticks_off()
        axis.set_xlabel("real training images (shots)")
        axis.set_ylabel("mean Dice on test images")
        axis.set_title(f"{cohort}, prompt {prompt}", fontsize=10)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower right")
    return _save(figure, path)
