"""Choose ``segment``'s flag thresholds on images the models never trained on (no protocol test image).

Each model (a fine-tuning run folder with ``model.pt`` and ``split.json``, or ``pretrained``) segments with no box,
through the same path as ``benchmarks/auto_measure.py`` (``inference.json`` defaults), the ``hc18_subset`` images it
never trained on: its split's ``test`` images, every image for ``pretrained``. Models are grouped (5-shot, 1-shot,
self-trained, pretrained); for every pair of ``flag_below`` (any head) and ``flag_searched_below`` (a head whose
sub-boxes the automatic prompt searched) on the grid, the JSON gives per group the flagged count and the failures
(written mask's Dice < 0.90) left unflagged, and lists the pairs that leave none unflagged in any group, fewest
flags first. Per-image rows are kept, so a model already in ``--out`` is not run again.

    python benchmarks/flag_calibration.py --group k5 RUNS/k5_s0 RUNS/k5_s1 RUNS/k5_s2 --group pretrained pretrained \\
        --work RUNS --out benchmarks/results/flag_calibration_cpu.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from auto_measure import DATA, Scorer, _hc18_items, _quiet, score, summarise  # noqa: E402

from monai_fetal.atomic import write_json_atomic  # noqa: E402

FLAG_GRID = (0.90, 0.91, 0.92, 0.93, 0.94)
SEARCHED_GRID = (0.92, 0.93, 0.94, 0.95, 1.01)  # 1.01: every searched head (the rule until package 0.4.10)
BOXED_GRID = (0.80, 0.82, 0.84, 0.86, 0.88, 0.90, 0.92)  # flag_boxed_below (--prompt gt_box; no head is searched)
GRIDS = {"auto": (FLAG_GRID, SEARCHED_GRID), "gt_box": (BOXED_GRID, SEARCHED_GRID[:1])}


def held_out_items(model: str, data: Path) -> list[dict]:
    """The labelled ``hc18_subset`` items ``model`` never trained on."""
    subset = data / "hc18_subset"
    if model == "pretrained":
        names = sorted(path.name for path in (subset / "images").glob("*.png"))
    else:
        names = [Path(item["image"]).name for item in json.loads((Path(model) / "split.json").read_text())["test"]]
    return _hc18_items(subset, names, with_labels=True)


def pair_table(results: dict) -> list[dict]:
    """Per threshold pair of the results' prompt's grid, each group's ``[flagged, unflagged failures, images]`` (written masks)."""
    table = []
    for flag_below, searched_below in itertools.product(*GRIDS[results.get("prompt", "auto")]):
        groups = {}
        for group, models in results["groups"].items():
            rows = [row for model in models for row in results["per_image"][model]]
            summary = summarise(rows, flag_below, searched_below)
            groups[group] = [summary["flagged"], summary["written_unflagged_failures"], len(rows)]
        table.append({"flag_below": flag_below, "flag_searched_below": searched_below, "groups": groups})
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", nargs="+", action="append", required=True, metavar=("NAME", "MODEL"), help="a group name and its models")
    parser.add_argument("--prompt", choices=sorted(GRIDS), default="auto", help="no box (flag_below, flag_searched_below) or the ground-truth box (flag_boxed_below)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=Path("/tmp/flag_calibration"), help="embedding cache and evaluation scratch")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    _quiet()
    results = json.loads(args.out.read_text()) if args.out.is_file() else {"per_image": {}, "prompt": args.prompt}
    if results.get("prompt", "auto") != args.prompt:
        raise SystemExit(f"{args.out} holds --prompt {results.get('prompt', 'auto')} rows: give another --out for --prompt {args.prompt}")
    results.update(groups={group[0]: group[1:] for group in args.group}, threads=torch.get_num_threads(), machine=platform.machine())
    for model in (model for group in args.group for model in group[1:]):
        if model in results["per_image"]:
            continue
        checkpoint = None if model == "pretrained" else Path(model) / "model.pt"
        scorer = Scorer(checkpoint, args.work / "embedding_cache", args.work / "eval")
        results["per_image"][model] = score(scorer, held_out_items(model, args.data), args.prompt, FLAG_GRID[0], SEARCHED_GRID[0])["per_image"]
        write_json_atomic(args.out, results)
        print(f"{model}: {len(results['per_image'][model])} images", flush=True)
    table = pair_table(results)
    results["pairs"] = table
    safe = [pair for pair in table if all(counts[1] == 0 for counts in pair["groups"].values())]
    results["pairs_with_no_failure_unflagged"] = sorted(safe, key=lambda pair: sum(counts[0] for counts in pair["groups"].values()))
    write_json_atomic(args.out, results)
    for pair in results["pairs_with_no_failure_unflagged"][:5]:
        print(pair["flag_below"], pair["flag_searched_below"], pair["groups"], flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    main()
