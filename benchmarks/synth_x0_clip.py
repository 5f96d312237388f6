"""Quality of a latent generator's pairs by the bound of the predicted clean latent (``synthesize --x0-clip``).

For each ``--clips`` value (0: no bound) the generator writes ``--n`` pairs with the ``synthesize`` defaults and
the same seed (so the same masks and starting noise), and ``synth-report`` scores them against the real cohort:
FID of LiteMedSAM features over the real-vs-real floor, pair consistency with the pair's own box and with the
shuffled box, and, with ``--train``, the memorisation check. The generator is the one ``auto_measure.py`` conditions
for a row (``generator_k{k}_s{seed}/generator`` in its ``--work`` folder) or any ``train-generator`` folder.

    .venv/bin/monai-fetal prepare ../shared/data/hc18_subset /tmp/hc18_subset
    .venv/bin/python benchmarks/synth_x0_clip.py --generator /tmp/auto_measure/generator_k5_s0/generator \\
        --real /tmp/hc18_subset --clips 1 2 3 0 --train ../shared/data/hc18_train /tmp/auto_measure/generator_k5_s0/real_pairs \\
        --train-protocol ../shared/data/benchmark_protocol.json --out /tmp/synth_x0_clip.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def row(report: dict, seconds: float, **labels: object) -> dict:
    """The numbers of one ``synth-report`` that the table shows, after the row's ``labels``."""
    fid, floor = report["feature_distance"]["fid"], report["feature_distance_real_halves"]["fid"]
    own, shuffled = report["synthetic"]["pair_consistency"]["mean"], report["synthetic"]["pair_consistency_shuffled"]["mean"]
    result = {
        **labels,
        "fid": round(fid, 4),
        "fid_real_halves_floor": round(floor, 4),
        "fid_over_floor": round(fid / floor, 2),
        "pair_consistency_mean": round(own, 4),
        "shuffled_box_mean": round(shuffled, 4),
        "margin_over_shuffled": round(own - shuffled, 4),
        "synthesize_wall_s": round(seconds, 1),
    }
    if "pair_consistency_by_head_size" in report:
        by_size = report["pair_consistency_by_head_size"]
        result["real_at_synthetic_head_sizes"] = round(by_size["real_at_synthetic_head_sizes"], 4)
        result["by_head_size"] = [
            {"head_area": b["head_area"], **{side: [b[side]["count"], b[side]["mean"] and round(b[side]["mean"], 4)] for side in ("real", "synthetic")}}
            for b in by_size["bins"]
        ]
    if "memorisation" in report:
        memo = report["memorisation"]
        result["near_copies"] = memo["near_copies"]
        result["nearest_training_image_similarity_max"] = round(max(v["similarity"] for v in memo["per_image"].values()), 4)
    return result


def add_scoring_arguments(parser: argparse.ArgumentParser, work: Path) -> None:
    """The options of how each row is scored and kept: real images, memorisation check, work folder (default ``work``), output."""
    parser.add_argument("--max-real", type=int, default=60)
    parser.add_argument("--train", type=Path, nargs="*", default=[], help="folders of images the generator saw: memorisation check")
    parser.add_argument("--train-protocol", type=Path, help="benchmark protocol: of its hc18_train folder, only the unlabelled pool")
    parser.add_argument("--work", type=Path, default=work)
    parser.add_argument("--out", type=Path, required=True)


def main() -> None:
    from monai_fetal.atomic import write_json_atomic
    from monai_fetal.data.unlabelled import training_images
    from monai_fetal.jobs import synth_report, synthesize_pairs

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", type=Path, required=True, help="latent generator folder")
    parser.add_argument("--real", type=Path, required=True, help="real cohort folder to score against")
    parser.add_argument("--clips", type=float, nargs="+", default=[1.0, 2.0, 3.0, 0.0])
    parser.add_argument("--n", type=int, default=60, help="pairs per bound")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (default: synthesize's)")
    add_scoring_arguments(parser, Path("/tmp/synth_x0_clip"))
    args = parser.parse_args()
    seen = training_images(args.train, args.train_protocol)
    rows = []
    for clip in args.clips:
        pairs = args.work / f"pairs_clip{clip:g}"
        start = time.perf_counter()
        synthesize_pairs(args.generator, pairs, args.n, steps=args.steps, seed=0, x0_clip=clip)
        seconds = time.perf_counter() - start
        report = synth_report(args.real, pairs, args.work / f"report_clip{clip:g}", max_real=args.max_real, training_images=seen)
        rows.append(row(report, seconds, x0_clip=clip))
        print(rows[-1])
    write_json_atomic(args.out, {"generator": str(args.generator), "pairs": args.n, "steps": args.steps, "rows": rows})


if __name__ == "__main__":
    main()
