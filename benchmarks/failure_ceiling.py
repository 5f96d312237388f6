"""How much of the no-box error is its failures, and what synthetic pairs change in them, from ``auto_measure.py`` results.

For every row (shots, pool, synthetic pairs, seed) it gives the no-box written Dice and snapped HC error over the
test images, and the same numbers if every failure (no-box written Dice under ``--below``, 0.90) were measured as
well as the ground-truth box measures it: the ceiling a better head locator could reach without a box. For rows with
synthetic pairs it also pairs each one with the real-only row of the same shots, pool and seed: the failures the pairs
fixed, those they brought, and those both models have. No network runs; only the stored per-image numbers are read.

    .venv/bin/python benchmarks/failure_ceiling.py benchmarks/results/auto_measure_cpu_zoom.json \\
        benchmarks/results/auto_measure_cpu_syn100_lowrank.json --out benchmarks/results/failure_ceiling_cpu.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from protocol_table import newest_rows

from monai_fetal.atomic import write_json_atomic


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def row_ceiling(row: dict, below: float) -> dict:
    """No-box Dice and HC error of ``row``, and both with every failure (Dice < ``below``) given its box numbers."""
    auto = {item["id"]: item for item in row["auto"]["per_image"]}
    boxed = {item["id"]: item for item in row["gt_box"]["per_image"]}
    failures = sorted(name for name, item in auto.items() if item["dice_written"] < below)
    repaired = {name: boxed[name] if name in failures else item for name, item in auto.items()}
    hc_error = _mean([item["hc_error_snapped_mm"] for item in auto.values()])
    return {
        "failures": failures,
        "dice": _mean([item["dice_written"] for item in auto.values()]),
        "dice_failures_boxed": _mean([item["dice_written"] for item in repaired.values()]),
        "dice_box": _mean([item["dice_written"] for item in boxed.values()]),
        "hc_error_mm": hc_error,
        "hc_error_mm_failures_boxed": _mean([item["hc_error_snapped_mm"] for item in repaired.values()]),
        "hc_error_share_of_failures": sum(auto[name]["hc_error_snapped_mm"] for name in failures) / len(auto) / hc_error,
    }


def failure_changes(real: dict, synthetic: dict) -> dict[str, list[str]]:
    """The failures of the real-only row that the synthetic row fixed, those it brought, and those of both."""
    before, after = set(real["failures"]), set(synthetic["failures"])
    return {"fixed": sorted(before - after), "new": sorted(after - before), "both": sorted(before & after)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, nargs="+", help="auto_measure.py results files, oldest first")
    parser.add_argument("--below", type=float, default=0.90, help="a no-box image under this written Dice is a failure")
    parser.add_argument("--effort", default="full", help="the rows' effort (auto_measure.py --effort)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    ceilings = {key: row_ceiling(row, args.below) for key, row in sorted(newest_rows(args.results, args.effort).items())}
    rows = []
    for (shots, pool, synthetic, seed), ceiling in ceilings.items():
        entry = {"shots": shots, "unlabelled": pool, "synthetic": synthetic, "seed": seed, **ceiling}
        real = ceilings.get((shots, pool, 0, seed))
        if synthetic and real is not None:
            entry["against_real_only"] = failure_changes(real, ceiling)
        rows.append(entry)
        print(
            f"shots {shots} pool {pool:d} synthetic {synthetic:3d} seed {seed}: {len(ceiling['failures']):2d} failures, "
            f"Dice {ceiling['dice']:.4f} -> {ceiling['dice_failures_boxed']:.4f} (box {ceiling['dice_box']:.4f}), "
            f"HC error {ceiling['hc_error_mm']:.2f} -> {ceiling['hc_error_mm_failures_boxed']:.2f} mm"
            + (f"; against real only: {', '.join(f'{k} {len(v)}' for k, v in entry['against_real_only'].items())}" if "against_real_only" in entry else "")
        )
    write_json_atomic(args.out, {"below": args.below, "files": [str(path) for path in args.results], "rows": rows})


if __name__ == "__main__":
    main()
