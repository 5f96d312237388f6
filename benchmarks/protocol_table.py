"""The benchmark protocol's rows in one table and one figure, from the results files of ``auto_measure.py``.

Each setting (shots, unlabelled pool or not, synthetic pairs) is summarised over its seeds, for both prompts (no
box and the ground-truth box), with the numbers of what ``segment`` writes: the Dice of the written masks (every head
its snapped ellipse), the HC error of the snapped ellipse in mm, the share of images under Dice 0.90, the flagged
count and the failures left unflagged; and, over the seeds' images together, the Dice of the flagged and of the
unflagged images and the HC error of the unflagged ones (what a user who reviews only the flagged images gets).
Synthetic pairs are also compared with the real-only row of the same shots, seed and pool (paired by seed: the seed
spread is larger than their effect). With ``--hc-csv`` (the HC18 CSV with the test images' published HC) the HC error
is also split by head size: per band of the published HC, over the seeds' images, the mean error of all images and of
the unflagged ones and the share flagged. A later file's row replaces an earlier one of the same setting, seed, test
images and effort, so the newest measurement of each row wins; only rows of one effort (``--effort``, default
``full``) are read.

    .venv/bin/python benchmarks/protocol_table.py benchmarks/results/auto_measure_cpu_zoom.json \\
        benchmarks/results/auto_measure_cpu_speckle.json --out benchmarks/results/protocol_table_cpu.json \\
        --markdown /tmp/protocol_table.md --figure docs/results_protocol_dice_vs_shots.png \\
        --hc-csv ../shared/data/hc18_train/training_set_pixel_size_and_HC.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

PROMPTS = {"auto": "no box", "gt_box": "ground-truth box"}
HC_BANDS_MM = (120.0, 200.0, 260.0)
"""Edges of the head-size bands, published HC in mm (roughly 16, 22 and 28 weeks of gestation)."""


def newest_rows(files: list[Path], effort: str) -> dict[tuple, dict]:
    """``{(shots, unlabelled, synthetic, seed): row}`` of ``effort`` from ``files``; later files win; one test-set size only."""
    rows: dict[tuple, dict] = {}
    sizes = set()
    for path in files:
        for row in json.loads(path.read_text())["rows"]:
            if row.get("effort", "full") != effort:
                continue
            sizes.add(row["auto"]["summary"]["images"])
            rows[(row["shots"], bool(row["unlabelled"]), int(row["synthetic"]), row["seed"])] = row
    if len(sizes) > 1:
        raise SystemExit(f"the rows score different numbers of test images {sorted(sizes)}: pass files of one test set")
    return rows


def prompt_summary(summary: dict) -> dict[str, float]:
    """One model's written Dice (mean, min), HC error of the snapped ellipse, share under 0.90, flagged count and failures
    left unflagged, and the written Dice of its flagged and unflagged images and the HC error of its unflagged ones
    (``None`` where there are none), from its stored summary."""
    return {
        "images": summary["images"],
        "dice_mean": summary["written_dice_mean"],
        "dice_min": summary["written_dice_min"],
        "hc_error_mm": summary["hc_error_snapped_mm_mean"],
        "share_below_090": summary["written_share_dice_below_090"],
        "flagged": summary["flagged"],
        "unflagged_failures": summary["written_unflagged_failures"],
        "dice_flagged": summary["written_dice_flagged"],
        "dice_unflagged": summary["written_dice_unflagged"],
        "hc_error_unflagged_mm": summary["hc_error_snapped_unflagged_mm_mean"],
    }


def pooled_mean(values: list[float | None], counts: list[int]) -> float | None:
    """The mean over the seeds' images of per-seed means ``values`` of ``counts`` images each (``None``: no image)."""
    pairs = [(value, count) for value, count in zip(values, counts) if value is not None and count]
    if not pairs:
        return None
    return float(sum(value * count for value, count in pairs) / sum(count for _, count in pairs))


def flag_split(per_seed: list[dict]) -> dict[str, float | None]:
    """The written Dice of the flagged and the unflagged images and the HC error of the unflagged ones, over all seeds' images."""
    flagged = [values["flagged"] for values in per_seed]
    unflagged = [values["images"] - count for values, count in zip(per_seed, flagged)]
    return {
        "flagged_share": sum(flagged) / sum(values["images"] for values in per_seed),
        "dice_flagged": pooled_mean([values["dice_flagged"] for values in per_seed], flagged),
        "dice_unflagged": pooled_mean([values["dice_unflagged"] for values in per_seed], unflagged),
        "hc_error_unflagged_mm": pooled_mean([values["hc_error_unflagged_mm"] for values in per_seed], unflagged),
    }


def setting_summaries(rows: dict[tuple, dict]) -> list[dict]:
    """Per setting and prompt: the seeds' means and per-seed values."""
    grouped: dict[tuple, list[dict]] = defaultdict(list)
    for (shots, unlabelled, synthetic, seed), row in sorted(rows.items()):
        grouped[(shots, unlabelled, synthetic)].append(row)
    table = []
    for (shots, unlabelled, synthetic), seeds in sorted(grouped.items()):
        for prompt in PROMPTS:
            per_seed = [prompt_summary(row[prompt]["summary"]) for row in seeds]
            entry = {"shots": shots, "unlabelled": unlabelled, "synthetic": synthetic, "prompt": prompt, "seeds": [row["seed"] for row in seeds]}
            for key in ("dice_mean", "hc_error_mm", "share_below_090"):
                entry[key] = float(np.mean([values[key] for values in per_seed]))
                entry[f"{key}_per_seed"] = [values[key] for values in per_seed]
            entry["dice_min"] = min(values["dice_min"] for values in per_seed)
            entry["flagged_mean"] = float(np.mean([values["flagged"] for values in per_seed]))
            entry["unflagged_failures"] = [values["unflagged_failures"] for values in per_seed]
            entry.update(flag_split(per_seed))
            table.append(entry)
    return table


def synthetic_effects(rows: dict[tuple, dict]) -> list[dict]:
    """For each row with synthetic pairs, its change against the real-only row of the same shots, pool and seed."""
    effects = []
    for (shots, unlabelled, synthetic, seed), row in sorted(rows.items()):
        base = rows.get((shots, unlabelled, 0, seed))
        if not synthetic or base is None:
            continue
        effect = {"shots": shots, "unlabelled": unlabelled, "synthetic": synthetic, "seed": seed}
        for prompt in PROMPTS:
            with_pairs, without = prompt_summary(row[prompt]["summary"]), prompt_summary(base[prompt]["summary"])
            effect[prompt] = {
                "dice_change": with_pairs["dice_mean"] - without["dice_mean"],
                "hc_error_mm": [without["hc_error_mm"], with_pairs["hc_error_mm"]],
                "hc_error_change_share": with_pairs["hc_error_mm"] / without["hc_error_mm"] - 1.0,
            }
        effects.append(effect)
    return effects


def published_hc(path: Path) -> dict[str, float]:
    """``{image id: published HC in mm}`` from an HC18 pixel-size and HC CSV (the id is the file name without ``.png``)."""
    with open(path, newline="") as handle:
        return {row["filename"].removesuffix(".png"): float(row["head circumference (mm)"]) for row in csv.DictReader(handle)}


def _band_names() -> list[str]:
    """Names of the bands of :data:`HC_BANDS_MM`."""
    edges = [f"{edge:.0f}" for edge in HC_BANDS_MM]
    return [f"< {edges[0]} mm"] + [f"{low}-{high} mm" for low, high in zip(edges, edges[1:])] + [f">= {edges[-1]} mm"]


def size_bands(rows: dict[tuple, dict], published: dict[str, float]) -> list[dict]:
    """Per setting and prompt, per band of the published HC (:data:`HC_BANDS_MM`), over the seeds' images together:
    the image count, the share flagged, and the mean HC error of the written (snapped) ellipse of all images and of the
    unflagged ones (``None`` where there are none). Flags are recomputed from the stored per-image quality with
    ``segment``'s rule (``auto_measure.flagged_images`` at the package's thresholds; ``FLAG_BOXED_BELOW`` with the
    ground-truth box, a given box)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from auto_measure import FLAG_BOXED_QUALITY, FLAG_QUALITY, flagged_images

    grouped: dict[tuple, list[dict]] = defaultdict(list)
    seeds: dict[tuple, int] = defaultdict(int)
    for (shots, unlabelled, synthetic, _), row in sorted(rows.items()):
        seeds[(shots, unlabelled, synthetic)] += 1
        for prompt in PROMPTS:
            if "per_image" not in row[prompt]:
                raise SystemExit(f"the row shots={shots} seed={row['seed']} has no per-image values: size bands need auto_measure.py's per_image")
            grouped[(shots, unlabelled, synthetic, prompt)].extend(row[prompt]["per_image"])
    table = []
    for (shots, unlabelled, synthetic, prompt), images in grouped.items():
        missing = sorted({image["id"] for image in images} - published.keys())
        if missing:
            raise SystemExit(f"no published HC for {missing[:3]}: give --hc-csv the HC18 CSV of the test images")
        hc = np.array([published[image["id"]] for image in images])
        error = np.array([image["hc_error_snapped_mm"] for image in images])
        flagged = flagged_images(images, FLAG_BOXED_QUALITY if prompt == "gt_box" else FLAG_QUALITY)
        band = np.digitize(hc, HC_BANDS_MM)
        bands = []
        for index, name in enumerate(_band_names()):
            inside, trusted = band == index, (band == index) & ~flagged
            bands.append(
                {
                    "band": name,
                    "images": int(inside.sum()),
                    "flagged_share": float(flagged[inside].mean()) if inside.any() else None,
                    "hc_error_mm": float(error[inside].mean()) if inside.any() else None,
                    "hc_error_unflagged_mm": float(error[trusted].mean()) if trusted.any() else None,
                }
            )
        table.append({"shots": shots, "unlabelled": unlabelled, "synthetic": synthetic, "prompt": prompt, "seeds": seeds[(shots, unlabelled, synthetic)], "bands": bands})
    return table


def _number(value: float | None, digits: int) -> str:
    """``value`` with ``digits`` decimals, or a dash for none."""
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(table: list[dict], effects: list[dict], images: int, bands: list[dict] | None = None) -> str:
    """The settings table, the flagged and unflagged images, the paired synthetic effects and (given ``bands``, from
    :func:`size_bands`) the HC error by head size, in Markdown."""
    lines = [
        "| shots | pool | synthetic | prompt | seeds | Dice (per seed) | min | HC error, mm (per seed) | Dice < 0.90 | flagged | failures unflagged |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in table:
        dice = ", ".join(f"{value:.4f}" for value in entry["dice_mean_per_seed"])
        hc = ", ".join(f"{value:.2f}" for value in entry["hc_error_mm_per_seed"])
        lines.append(
            f"| {entry['shots']} | {'yes' if entry['unlabelled'] else 'no'} | {entry['synthetic']} | {PROMPTS[entry['prompt']]} "
            f"| {len(entry['seeds'])} | **{entry['dice_mean']:.4f}** ({dice}) | {entry['dice_min']:.3f} | **{entry['hc_error_mm']:.2f}** ({hc}) "
            f"| {100 * entry['share_below_090']:.1f} % | {entry['flagged_mean']:.1f} | {' / '.join(map(str, entry['unflagged_failures']))} |"
        )
    lines += ["", "Flagged and unflagged images (written masks, the seeds' images together):", ""]
    lines += ["| shots | pool | synthetic | prompt | flagged | Dice flagged | Dice unflagged | HC error unflagged, mm | HC error all, mm |", "|---|---|---|---|---|---|---|---|---|"]
    for entry in table:
        lines.append(
            f"| {entry['shots']} | {'yes' if entry['unlabelled'] else 'no'} | {entry['synthetic']} | {PROMPTS[entry['prompt']]} "
            f"| {100 * entry['flagged_share']:.1f} % | {_number(entry['dice_flagged'], 4)} | {_number(entry['dice_unflagged'], 4)} "
            f"| {_number(entry['hc_error_unflagged_mm'], 2)} | {entry['hc_error_mm']:.2f} |"
        )
    lines += ["", f"Synthetic pairs against the real-only row of the same seed ({images} test images):", ""]
    lines += ["| shots | pool | synthetic | seed | no box: Dice change | HC error, mm | GT box: Dice change | HC error, mm |", "|---|---|---|---|---|---|---|---|"]
    for effect in effects:
        auto, box = effect["auto"], effect["gt_box"]
        lines.append(
            f"| {effect['shots']} | {'yes' if effect['unlabelled'] else 'no'} | {effect['synthetic']} | {effect['seed']} "
            f"| {auto['dice_change']:+.4f} | {auto['hc_error_mm'][0]:.2f} -> {auto['hc_error_mm'][1]:.2f} ({100 * auto['hc_error_change_share']:+.0f} %) "
            f"| {box['dice_change']:+.4f} | {box['hc_error_mm'][0]:.2f} -> {box['hc_error_mm'][1]:.2f} ({100 * box['hc_error_change_share']:+.0f} %) |"
        )
    if bands:
        names = [band["band"] for band in bands[0]["bands"]]
        counts = " / ".join(str(band["images"] // bands[0]["seeds"]) for band in bands[0]["bands"])
        lines += ["", f"HC error by head size (published HC; mm of all images / of the unflagged ones, share flagged; the seeds' images together; test images per band: {counts}):", ""]
        lines += ["| shots | pool | synthetic | prompt | " + " | ".join(names) + " |", "|---|---|---|---|" + "---|" * len(names)]
        for entry in bands:
            cells = [
                f"{_number(band['hc_error_mm'], 2)} / {_number(band['hc_error_unflagged_mm'], 2)} ({_number(None if band['flagged_share'] is None else 100 * band['flagged_share'], 0)} %)"
                for band in entry["bands"]
            ]
            lines.append(f"| {entry['shots']} | {'yes' if entry['unlabelled'] else 'no'} | {entry['synthetic']} | {PROMPTS[entry['prompt']]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure_rows(table: list[dict]) -> list[dict]:
    """Rows for :func:`~monai_fetal.study.figures.save_dice_vs_shots`: one per model trained without the pool (its rows are in the table)."""
    return [
        {"shots": entry["shots"], "synthetic": entry["synthetic"], "seed": seed, "cohort": "protocol test", "prompt": PROMPTS[entry["prompt"]], "dice_mean": dice}
        for entry in table
        if not entry["unlabelled"]
        for seed, dice in zip(entry["seeds"], entry["dice_mean_per_seed"])
    ]


def main() -> None:
    from monai_fetal.atomic import write_json_atomic, write_text_atomic
    from monai_fetal.study.figures import save_dice_vs_shots

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, nargs="+", help="auto_measure.py results files, oldest first")
    parser.add_argument("--effort", default="full", help="the rows' effort (auto_measure.py --effort)")
    parser.add_argument("--out", type=Path, required=True, help="the JSON summary")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables in Markdown")
    parser.add_argument("--figure", type=Path, default=None, help="also draw mean written Dice against shots (PNG)")
    parser.add_argument("--hc-csv", type=Path, default=None, help="HC18 CSV with the test images' published HC: also split the HC error by head size")
    args = parser.parse_args()
    rows = newest_rows(args.results, args.effort)
    if not rows:
        raise SystemExit(f"no rows of effort {args.effort!r} in {[str(path) for path in args.results]}")
    images = next(iter(rows.values()))["auto"]["summary"]["images"]
    table, effects = setting_summaries(rows), synthetic_effects(rows)
    bands = size_bands(rows, published_hc(args.hc_csv)) if args.hc_csv else None
    summary = {"what": __doc__.split("\n\n")[0], "sources": [str(path) for path in args.results], "effort": args.effort, "test_images": images, "settings": table, "synthetic_effects": effects}
    write_json_atomic(args.out, summary | ({"hc_error_by_head_size": bands} if bands else {}))
    if args.markdown:
        write_text_atomic(args.markdown, markdown(table, effects, images, bands))
    if args.figure:
        save_dice_vs_shots(figure_rows(table), args.figure)


if __name__ == "__main__":
    main()
