"""SAM rows of the benchmark protocol with synthetic pairs whose masks come from a widened shape prior (a probe).

The diffusion bundle fits its shape prior (:class:`monai_fetal.shape.prior.EllipseShapePrior`) on the k labelled
masks, so at 5 shots the synthetic heads keep to the sizes and places of those 5 (split 1's heads all sit at 50-53 %
of the image height). This probe widens the prior of a row's conditioned generator before sampling: standard
deviations of ``cx, cy, log_major, log_ratio`` (``--spread``) are added in quadrature to the kernel's, and its bounds
take in a framing range (``--low``/``--high``: head centre within 30-70 % of the image, semi-major axis 13.5-60 % of
its short side, axis ratio 0.70-0.95). The pairs are written into the row folder that ``auto_measure.py`` then
fine-tunes on (it keeps pairs it finds there).

The generator of a row is the one ``auto_measure.py`` conditioned (``generator_k{k}_s{seed}/generator`` in a
``--generators`` folder, e.g. an earlier ``--work``); it is copied (again on every run), never changed.

    .venv/bin/python benchmarks/wide_mask_prior.py --shots 5 --seeds 0 1 2 --generators /tmp/auto_measure \\
        --work /tmp/auto_measure_wide --out /tmp/auto_measure_wide.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from monai_fetal.atomic import write_json_atomic
from monai_fetal.jobs import synthesize_pairs
from monai_fetal.shape.prior import EllipseShapePrior

SPREAD = (0.05, 0.07, 0.3, 0.05)
LOW = (0.3, 0.3, -2.0, -0.36)
HIGH = (0.7, 0.7, -0.51, -0.05)


def widened(prior: EllipseShapePrior, spread: np.ndarray, low: np.ndarray, high: np.ndarray) -> EllipseShapePrior:
    """``prior`` with ``spread**2`` added to the variances of its first parameters and its bounds widened to ``low``-``high``."""
    cov = prior.cov.copy()
    cov[: len(spread), : len(spread)] += np.diag(spread**2)
    return EllipseShapePrior(prior.points, cov, prior.bandwidth, np.minimum(prior.low, low), np.maximum(prior.high, high), prior.size)


def widened_generator(source: Path, target: Path, spread: np.ndarray, low: np.ndarray, high: np.ndarray) -> Path:
    """A copy of the generator folder ``source`` at ``target`` whose ``shape_prior.json`` is widened."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoints_conditioning", "samples"), dirs_exist_ok=True)
    widened(EllipseShapePrior.load(source / "shape_prior.json"), spread, low, high).save(target / "shape_prior.json")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--synthetic", type=int, default=100)
    parser.add_argument("--generators", type=Path, required=True, help="folder holding generator_k{k}_s{seed}/generator")
    parser.add_argument("--spread", type=float, nargs=4, default=SPREAD, help="standard deviations added to cx, cy, log_major, log_ratio")
    parser.add_argument("--low", type=float, nargs=4, default=LOW)
    parser.add_argument("--high", type=float, nargs=4, default=HIGH)
    parser.add_argument("--work", type=Path, required=True, help="auto_measure.py's --work for these rows")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    spread, low, high = (np.asarray(v, dtype=np.float64) for v in (args.spread, args.low, args.high))
    for seed in args.seeds:
        name = f"generator_k{args.shots}_s{seed}"
        generator = widened_generator(args.generators / name / "generator", args.work / f"{name}_wide" / "generator", spread, low, high)
        synthesize_pairs(generator, args.work / f"k{args.shots}_s{seed}_syn{args.synthetic}" / "synthetic", args.synthetic, seed=seed)
        command = [sys.executable, str(Path(__file__).with_name("auto_measure.py")), "--shots", str(args.shots), "--seeds", str(seed)]
        subprocess.run([*command, "--synthetic", str(args.synthetic), "--work", str(args.work), "--out", str(args.out)], check=True)
    results = json.loads(args.out.read_text())
    results["mask_prior"] = {"widened": True, "spread": args.spread, "low": args.low, "high": args.high, "generators": str(args.generators)}
    write_json_atomic(args.out, results)


if __name__ == "__main__":
    main()
