"""The demo's ``report.md``: numbers per model and prompt, stage times, a pair grid and Dice per image."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from monai_fetal.atomic import write_text_atomic
from monai_fetal.study.figures import save_dice_per_image
from monai_fetal.study.stages import StageResult
from monai_fetal.visualize import load_cohort_pairs, save_pair_grid

__all__ = ["DICE_FIGURE", "PAIRS_FIGURE", "DemoResults", "read_per_image_dice", "write_demo_report"]

PAIRS_FIGURE = "pairs.png"
DICE_FIGURE = "dice_per_image.png"
GRID_PAIRS = 4


@dataclass(frozen=True)
class DemoResults:
    """Where a demo run put its parts: cohort, generator, synthetic cohort, evaluations by (model, prompt)."""

    out: Path
    cohort: Path
    synthetic: Path
    generator: Path
    evaluations: Mapping[tuple[str, str], Path]
    settings: Mapping[str, object]
    source: str


def read_per_image_dice(eval_dir: str | Path) -> dict[str, float]:
    """``{image id: dice}`` from an evaluation's ``per_image.csv``."""
    with (Path(eval_dir) / "per_image.csv").open(newline="") as handle:
        return {row["id"]: float(row["dice"]) for row in csv.DictReader(handle)}


def _number(value: object, digits: int) -> str:
    return "–" if value is None else f"{float(value):.{digits}f}"


def _metrics_table(results: DemoResults) -> list[str]:
    lines = [
        "| model | prompt | Dice mean | Dice median | HD95 mean (px) | HC relative error | HC abs. error (mm) | images |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (model, prompt), folder in results.evaluations.items():
        m = json.loads((folder / "metrics.json").read_text())
        lines.append(
            f"| {model} | {prompt} | {_number(m.get('dice_mean'), 3)} | {_number(m.get('dice_median'), 3)} "
            f"| {_number(m.get('hd95_mean'), 1)} | {_number(m.get('hc_rel_error_mean'), 3)} "
            f"| {_number(m.get('hc_abs_error_mm_mean'), 2)} | {m.get('n')} |"
        )
    return lines


def _stage_table(stages: Mapping[str, StageResult]) -> list[str]:
    lines = ["| stage | seconds | this run |", "|---|---|---|"]
    for name, result in stages.items():
        lines.append(f"| {name} | {result.seconds:.1f} | {'skipped (done before)' if result.skipped else 'ran'} |")
    lines.append(f"| **total** | {sum(r.seconds for r in stages.values()):.1f} | |")
    return lines


def _figures(results: DemoResults) -> None:
    seed = int(results.settings.get("seed", 0))
    real = load_cohort_pairs(results.cohort, GRID_PAIRS, seed)
    synthetic = load_cohort_pairs(results.synthetic, GRID_PAIRS, seed)
    save_pair_grid(
        real[0] + synthetic[0],
        real[1] + synthetic[1],
        results.out / PAIRS_FIGURE,
        titles=[f"real {i}" for i in real[2]] + [f"synthetic {i}" for i in synthetic[2]],
        columns=GRID_PAIRS,
    )
    panels: dict[str, dict[str, dict[str, float]]] = {}
    for (model, prompt), folder in results.evaluations.items():
        panels.setdefault(prompt, {})[model] = read_per_image_dice(folder)
    save_dice_per_image(panels, results.out / DICE_FIGURE)


def _generator_words(generator: Mapping, shots: int) -> str:
    """How the demo's generator was made, in words: the shipped prior conditioned, or a pixel-space mode from scratch."""
    if generator["mode"] == "latent":
        return f"the shipped in-domain prior conditioned on the {shots} real pairs"
    return f"`{generator['mode']}` mode, cpu preset, trained from scratch on the {shots} real pairs"


def write_demo_report(results: DemoResults, stages: Mapping[str, StageResult]) -> Path:
    """Draw the figures and write ``report.md`` in the demo folder; return its path."""
    _figures(results)
    settings = results.settings
    gen, sam = settings["generator"], settings["sam"]
    lines = [
        "# monai-fetal demo report",
        "",
        f"- **cohort**: {results.source}; prepared in `{results.cohort}`",
        (
            f"- **split** (`split.json`, by patient, seed {settings['seed']}): {settings['shots']} real training images, "
            f"{sam['val']} validation, {settings['test']} test"
        ),
        f"- **generator** (`fetal_us_diffusion`, {_generator_words(gen, settings['shots'])}): "
        f"{gen['epochs']} epoch(s) of {gen['iterations']} iterations; sample grids in `generator/samples/`",
        f"- **synthetic pairs**: {settings['synthetic']} (DDIM, {gen['synthesis_steps']} steps) in `synthetic/`",
        (
            f"- **SAM** (`fetal_head_sam`, LiteMedSAM, decoder fine-tuned): {sam['epochs']} epoch(s), "
            f"{sam['variants']} augmentation variant(s) per image; real only (`sam_real/`) and real + all "
            f"{settings['synthetic']} synthetic pairs (`sam_real_synthetic/`)"
        ),
        "",
        "## Test images",
        "",
        "`gt_box`: the box of the ground-truth mask as prompt (widened by 5 %); `auto`: no prompt, the model's",
        "head locator finds the head. HD95 in pixels of the original image; HC error from an ellipse fitted",
        "to the predicted mask against the ground truth's.",
        "",
        *_metrics_table(results),
        "",
        "## Real and synthetic pairs",
        "",
        "Top row: real pairs of the cohort; bottom row: synthetic pairs. Mask outlines in yellow.",
        "",
        f"![real and synthetic pairs]({PAIRS_FIGURE})",
        "",
        "## Dice per test image",
        "",
        f"![Dice per test image]({DICE_FIGURE})",
        "",
        "## Stage times",
        "",
        *_stage_table(stages),
        "",
        "Per-image numbers: `eval/<model>_<prompt>/per_image.csv`; summaries: `eval/<model>_<prompt>/metrics.json`.",
        "",
    ]
    path = results.out / "report.md"
    write_text_atomic(path, "\n".join(lines))
    return path
