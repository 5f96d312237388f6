"""Calibrate ``segment``'s review flag: quality against Dice and HC error with no box, on a labelled HC18 folder.

Runs ``monai-fetal segment`` (the bundle's ``inference.json``, automatic prompt) over every image of the
folder, scores each mask against the filled reference annotation (Dice) and the published HC, and reports
for a sweep of thresholds how many images are flagged, the Dice of flagged and unflagged images, and how
many failures (Dice < 0.90) go unflagged. The JSON also holds every image's quality terms.

    python benchmarks/segment_quality.py --data ../shared/data/hc18_subset --out benchmarks/results/segment_quality_pretrained.json
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from monai_fetal.atomic import write_json_atomic
from monai_fetal.data.cohort import find_cases
from monai_fetal.data.io import read_image
from monai_fetal.jobs import segment_images
from monai_fetal.shape.outline import fill_head_annotation

FAILURE_DICE = 0.90
THRESHOLDS = (0.8, 0.85, 0.88, 0.9, 0.91, 0.92, 0.93, 0.94)


def _summary(rows: list[dict], threshold: float) -> dict:
    flagged = [r for r in rows if r["quality"] < threshold]
    kept = [r for r in rows if r["quality"] >= threshold]

    def mean(values: list[float]) -> float | None:
        return round(float(np.mean(values)), 4) if values else None

    return {
        "threshold": threshold,
        "flagged": len(flagged),
        "dice_flagged": mean([r["dice"] for r in flagged]),
        "dice_unflagged": mean([r["dice"] for r in kept]),
        "hc_abs_error_mm_unflagged": mean([r["hc_abs_error_mm"] for r in kept]),
        "failures": sum(r["dice"] < FAILURE_DICE for r in rows),
        "failures_unflagged": sum(r["dice"] < FAILURE_DICE for r in kept),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="HC18 folder (images/, annotations/, CSV)")
    parser.add_argument("--checkpoint", help="fine-tuned model.pt (default: pretrained LiteMedSAM)")
    parser.add_argument("--out", type=Path, required=True, help="JSON to write")
    args = parser.parse_args()
    cases = find_cases(args.data)
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        table = segment_images([str(c.image) for c in cases], work, checkpoint=args.checkpoint)
        seconds = time.perf_counter() - start
        measured = {Path(r["image"]).name: r for r in csv.DictReader(table.open())}
        manifest = {Path(e["image"]).name: e for e in json.loads((Path(work) / "segment.json").read_text())["images"]}
        rows = []
        for case in cases:
            row, entry = measured[case.image.name], manifest[case.image.name]
            truth = fill_head_annotation(read_image(case.mask)) > 0
            mask = read_image(entry["mask"]) > 0
            dice = float(2 * (mask & truth).sum() / (mask.sum() + truth.sum()))
            hc = float(row["hc_mm"]) if row["hc_mm"] else float("nan")
            rows.append(
                {
                    "id": case.id,
                    "dice": round(dice, 4),
                    "hc_abs_error_mm": round(abs(hc - case.hc_mm), 3) if case.hc_mm else None,
                    "quality": float(row["quality"]),
                    "terms": entry["quality"],
                }
            )
    result = {
        "data": str(args.data),
        "checkpoint": args.checkpoint or "pretrained",
        "prompt": "auto (no box)",
        "machine": platform.processor() or platform.machine(),
        "seconds_per_image_end_to_end": round(seconds / len(cases), 3),
        "images": len(rows),
        "dice_mean": round(float(np.mean([r["dice"] for r in rows])), 4),
        "sweep": [_summary(rows, t) for t in THRESHOLDS],
        "per_image": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "per_image"}, indent=1))


if __name__ == "__main__":
    main()
