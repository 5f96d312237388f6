"""Few-shot conditioning of the shipped prior by each route (``train_conditioning.json``'s ``conditioning``), scored.

Each row conditions the shipped latent prior on the same labelled pairs (``--data``, e.g. the 5 pairs of
``auto_measure.py``'s k = 5 split-seed-0 row) with one route and its overrides, times it, writes ``--n`` pairs
with the ``synthesize`` defaults (seed 0: the same masks and starting noise in every row) and scores them with
``synth-report`` against the real cohort: FID of LiteMedSAM features over the real-vs-real floor, pair
consistency with the pair's own box and with the shuffled box, consistency by head size, and, with ``--train``,
the memorisation check. Rows already in ``--out`` are skipped, a row whose generator in ``--work`` finished
earlier is sampled again without training (its ``conditioning_wall_s`` is then null); the JSON is rewritten
after every row.

    .venv/bin/python benchmarks/conditioning_routes.py --data /tmp/auto_measure/generator_k5_s0/real_pairs \\
        --real /tmp/hc18_subset --row fine_tune fine_tune '{}' --row low_rank low_rank '{}' \\
        --row controlnet controlnet '{}' --out benchmarks/results/conditioning_routes_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from synth_x0_clip import add_scoring_arguments, row


def main() -> None:
    from monai_fetal.atomic import write_json_atomic
    from monai_fetal.bundles import GENERATOR_CONFIGS, run_bundle
    from monai_fetal.data.unlabelled import training_images
    from monai_fetal.jobs import synth_report, synthesize_pairs

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the labelled pairs to condition on (cohort folder)")
    parser.add_argument("--real", type=Path, required=True, help="real cohort folder to score against")
    parser.add_argument(
        "--row", nargs=3, action="append", required=True, metavar=("NAME", "ROUTE", "OVERRIDES"),
        help="a row: its name, the conditioning route and a JSON object of other config overrides (repeatable)",
    )
    parser.add_argument("--n", type=int, default=60, help="pairs per row")
    add_scoring_arguments(parser, Path("/tmp/conditioning_routes"))
    args = parser.parse_args()
    seen = training_images(args.train, args.train_protocol)
    done = json.loads(args.out.read_text())["rows"] if args.out.is_file() else []
    rows = {r["name"]: r for r in done}
    for name, route, overrides in args.row:
        if name in rows:
            continue
        generator, pairs = args.work / name / "generator", args.work / name / "pairs"
        settings = {"dataset_dir": str(args.data), "output_dir": str(generator), "seed": 0, "conditioning": route, **json.loads(overrides)}
        trained_before = (generator / "unet.pt").is_file()  # a finished run resumes in seconds: its time is not the training's
        start = time.perf_counter()
        run_bundle("fetal_us_diffusion", GENERATOR_CONFIGS["latent"], settings)
        conditioning_s = None if trained_before else round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        synthesize_pairs(generator, pairs, args.n, seed=0)
        seconds = time.perf_counter() - start
        report = synth_report(args.real, pairs, args.work / name / "report", max_real=args.max_real, training_images=seen)
        labels = {"name": name, "conditioning": route, "overrides": json.loads(overrides), "conditioning_wall_s": conditioning_s}
        rows[name] = row(report, seconds, **labels)
        print(rows[name])
        write_json_atomic(
            args.out,
            {
                "what": "few-shot conditioning routes of the shipped latent prior on the same labelled pairs, 60 pairs each "
                "(synthesize defaults, seed 0) scored by synth-report against the real cohort",
                "data": str(args.data),
                "pairs": args.n,
                "threads": os.cpu_count(),
                "rows": list(rows.values()),
            },
        )


if __name__ == "__main__":
    main()
