"""SAM rows of the benchmark protocol whose synthetic pairs passed a consistency gate (a probe).

A pair whose generated head does not follow its mask teaches the SAM model a wrong outline. This probe samples more
pairs than a row uses (``--pool``) with the row's conditioned generator, scores each pair's consistency as
``synth-report`` does (LiteMedSAM prompted with the box of the pair's own mask, Dice against that mask; no real image
is read), keeps the ``--synthetic`` most consistent ones and writes them into the row folder that ``auto_measure.py``
then fine-tunes on (it keeps pairs it finds there).

The generator of a row is the one ``auto_measure.py`` conditioned (``generator_k{k}_s{seed}/generator`` in a
``--generators`` folder, e.g. an earlier ``--work``); it is read, never changed.

    .venv/bin/python benchmarks/consistency_gate.py --shots 5 --seeds 0 --pool 130 --synthetic 100 \\
        --generators /tmp/auto_measure --work /tmp/auto_measure_gate --out /tmp/auto_measure_gate.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from monai_fetal.atomic import write_json_atomic
from monai_fetal.bundles import EVALUATE_CONFIGS, read_bundle_config
from monai_fetal.data.cohort import Cohort
from monai_fetal.jobs import synthesize_pairs
from monai_fetal.metrics.synth_report import score_cohort
from monai_fetal.networks import build_prompted_sam
from monai_fetal.study.cohorts import split_part_cohort


def pair_consistency(cohort: Path) -> dict[str, float]:
    """Each pair's own-box LiteMedSAM Dice, by id (the pair consistency of ``synth-report``)."""
    network = build_prompted_sam("lite_medsam")
    config = read_bundle_config("fetal_head_sam", EVALUATE_CONFIGS, {"frame_size": network.frame_size, "prompt": "gt_box"})
    scores = score_cohort(network, config.get_parsed_content("preprocessing"), cohort, progress=False)
    return dict(zip(scores.ids, scores.dice))


def gated_pairs(pool: Path, out: Path, keep: int) -> dict:
    """Copy the ``keep`` most consistent pairs of the cohort ``pool`` into the cohort ``out``; what was kept and dropped.

    A row whose model is already trained (``done`` beside ``out``) on another choice of pairs is refused, so that
    ``auto_measure.py`` never scores a model with pairs it was not trained on.
    """
    consistency = pair_consistency(pool)
    entries = sorted(Cohort(pool).entries(), key=lambda entry: consistency[entry["id"]], reverse=True)
    kept, dropped = entries[:keep], entries[keep:]
    split = out.with_name(f"{out.name}_gate.json")
    trained_on = json.loads(split.read_text())["training"] if split.is_file() else None
    if (out.parent / "done").is_file() and trained_on != kept:
        raise SystemExit(f"{out.parent} holds a model trained on other (or ungated) pairs: pass a new --work")
    write_json_atomic(split, {"training": kept})
    split_part_cohort(pool, split, out)
    return {
        "kept": {entry["id"]: consistency[entry["id"]] for entry in kept},
        "dropped": {entry["id"]: consistency[entry["id"]] for entry in dropped},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pool", type=int, default=130, help="pairs sampled per row before the gate")
    parser.add_argument("--synthetic", type=int, default=100, help="pairs kept per row")
    parser.add_argument("--generators", type=Path, required=True, help="folder holding generator_k{k}_s{seed}/generator")
    parser.add_argument("--work", type=Path, required=True, help="auto_measure.py's --work for these rows")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.pool < args.synthetic:
        parser.error(f"--pool ({args.pool}) must be at least --synthetic ({args.synthetic})")
    gates = {}
    for seed in args.seeds:
        pool = args.work / f"gate_pool_k{args.shots}_s{seed}"
        synthesize_pairs(args.generators / f"generator_k{args.shots}_s{seed}" / "generator", pool, args.pool, seed=seed)
        synthetic = args.work / f"k{args.shots}_s{seed}_syn{args.synthetic}" / "synthetic"
        gates[str(seed)] = gated_pairs(pool, synthetic, args.synthetic)
        command = [sys.executable, str(Path(__file__).with_name("auto_measure.py")), "--shots", str(args.shots), "--seeds", str(seed)]
        subprocess.run([*command, "--synthetic", str(args.synthetic), "--work", str(args.work), "--out", str(args.out)], check=True)
    results = json.loads(args.out.read_text())
    results["consistency_gate"] = {"pool": args.pool, "kept": args.synthetic, "generators": str(args.generators), "seeds": gates}
    write_json_atomic(args.out, results)


if __name__ == "__main__":
    main()
