"""End-to-end SAM segmentation speed and Dice per encoder path, batch 1, as `monai-fetal segment` runs it.

Each precision runs in a fresh process with the SAM bundle's own ``inference.json`` components
(preprocessing, network, inferer, postprocessing). Images are decoded first (not timed); each image
is then timed from the decoded image to the filled mask at its original size, in three stages:
framing (``ScaleBoxd`` + ``SamFramed``), network (encoder + box-prompted decoder) and
postprocessing (sigmoid, inverse framing, threshold, largest component, hole filling). Writing PNGs
is left out. The prompt is the ground-truth box with the evaluation's 5 % margin, and the Dice of
each mask against the ground truth at original size is reported beside the time, so the speed of
a path and the Dice it keeps come from the same run. One "run" is a pass over all images; the JSON
holds every run's mean seconds per image and their median, min and max.

    python benchmarks/sam_end_to_end.py --data ../shared/data/hc18_subset --out benchmarks/results/sam_end_to_end_cpu.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from timing import synchronize

from monai_fetal.atomic import write_json_atomic
from monai_fetal.networks import PRECISIONS
from monai_fetal.networks.openvino_runtime import openvino_available

STAGES = ("framing", "network", "postprocessing")
BOX_MARGIN = 0.05


def _cohort(data: Path | None, work: Path, count: int) -> Path:
    """A prepared cohort folder: ``data`` (HC18 layout or cohort) or ``count`` phantoms when ``data`` is None."""
    from monai_fetal.data.phantom import make_phantom_cohort
    from monai_fetal.data.prepare import ensure_cohort

    if data is None:
        make_phantom_cohort(work / "phantoms", count, seed=0, progress=False)
        return work / "phantoms"
    return Path(ensure_cohort(str(data), str(work / "cohort")))


def _components(precision: str, device: str, output_dir: Path):
    """The inference config's preprocessing (less loading), network, inferer and postprocessing (up to the 2-D label)."""
    from monai.transforms import Compose

    from monai_fetal.bundles import read_bundle_config

    overrides = {"precision": precision, "output_dir": str(output_dir), "device": f"$torch.device('{device}')"}
    parser = read_bundle_config("fetal_head_sam", "inference.json", overrides)
    preprocessing = parser.get_parsed_content("preprocessing")
    load, framing = preprocessing.transforms[0], Compose(preprocessing.transforms[1:])
    postprocessing = Compose(parser.get_parsed_content("mask_postprocessing"))
    return load, framing, parser.get_parsed_content("network"), parser.get_parsed_content("inferer"), postprocessing


def _prompt_box(mask: torch.Tensor) -> torch.Tensor:
    """The ground-truth box on the original image (x along columns), widened by ``BOX_MARGIN`` as evaluation does."""
    from monai_fetal.transforms import BoxFromMaskd

    return BoxFromMaskd("label", margin=BOX_MARGIN)({"label": mask.T[None]})["box"]  # mask in MONAI's [W, H] order


def precision_case(precision: str, device_name: str, cohort: str, images: int, repeats: int, threads: int) -> dict:
    """Seconds per image by stage, and Dice, for one encoder path (run in a fresh process)."""
    from monai.data import decollate_batch, list_data_collate
    from monai.metrics import compute_dice

    from monai_fetal.data.io import read_mask
    from monai_fetal.data.cohort import Cohort
    from monai_fetal.engines import SamPrepareBatch

    torch.set_num_threads(threads)
    device = torch.device(device_name)
    with tempfile.TemporaryDirectory() as out:
        load, framing, network, inferer, postprocessing = _components(precision, device_name, Path(out))
    items = Cohort(cohort).items()[:images]
    decoded = []
    for item in items:
        mask = torch.as_tensor(read_mask(item["label"]) > 0).T.float()  # MONAI's [W, H] order, as LoadImaged gives
        decoded.append((load({"image": item["image"]}), mask))
    prepare = SamPrepareBatch()

    def segment(sample: dict, mask: torch.Tensor, times: dict[str, float]) -> float:
        start = time.perf_counter()
        framed = framing({**sample, "box": _prompt_box(mask)})
        batch = list_data_collate([framed])
        after_framing = time.perf_counter()
        image, _, _, kwargs = prepare(batch, device)
        with torch.no_grad():
            batch["pred"] = inferer(image, network, **kwargs)
        synchronize(device)
        after_network = time.perf_counter()
        pred = postprocessing(decollate_batch(batch)[0])["pred"]
        end = time.perf_counter()
        for stage, seconds in zip(STAGES, (after_framing - start, after_network - after_framing, end - after_network)):
            times[stage] += seconds
        return float(compute_dice(pred[None].cpu(), mask[None, None]).item())

    dice: list[float] = []
    for sample, mask in decoded[:1]:
        segment(sample, mask, dict.fromkeys(STAGES, 0.0))  # warm-up (and a first OpenVINO conversion)
    runs: list[dict[str, float]] = []
    for _ in range(repeats):
        times = dict.fromkeys(STAGES, 0.0)
        dice = [segment(sample, mask, times) for sample, mask in decoded]
        runs.append({stage: seconds / len(decoded) for stage, seconds in times.items()})
    totals = [sum(run.values()) for run in runs]
    return {
        "s_per_image": totals,
        "median": statistics.median(totals),
        "min": min(totals),
        "max": max(totals),
        "stages_median": {stage: statistics.median(run[stage] for run in runs) for stage in STAGES},
        "dice_mean": statistics.fmean(dice),
        "images": len(decoded),
    }


def _in_fresh_process(function, *args) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def run_benchmark(data: Path | None, precisions: list[str], images: int, repeats: int, threads: int) -> dict:
    """Every precision on the CPU (and fp32 on CUDA when present); returns the JSON-able results."""
    results: dict = {
        "benchmark": "sam_end_to_end",
        "model": "lite_medsam",
        "data": str(data) if data else "phantoms",
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "threads": threads,
        "cases": {},
    }
    with tempfile.TemporaryDirectory() as work:
        cohort = str(_cohort(data, Path(work), images))
        cases = [("cpu", p) for p in precisions] + ([("cuda", "fp32")] if torch.cuda.is_available() else [])
        for device, precision in cases:
            key = f"{device}/{precision}"
            results["cases"][key] = _in_fresh_process(precision_case, precision, device, cohort, images, repeats, threads)
            print(key, json.dumps({k: v for k, v in results["cases"][key].items() if k != "s_per_image"}), flush=True)
    stock = results["cases"]["cpu/fp32"]
    for case in results["cases"].values():
        case["speedup_vs_cpu_fp32"] = stock["median"] / case["median"]
        case["dice_change_vs_cpu_fp32"] = case["dice_mean"] - stock["dice_mean"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="HC18 folder or cohort (default: phantoms)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sam_end_to_end_cpu.json"))
    parser.add_argument("--images", type=int, default=60, help="images per run (default 60)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs over all images (after one warm-up image)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    available = [p for p in PRECISIONS if not p.startswith("ov-") or openvino_available(int8=p == "ov-int8")]
    parser.add_argument("--precisions", default=",".join(available), help=f"comma-separated (default {','.join(available)})")
    args = parser.parse_args()
    precisions = args.precisions.split(",")
    if precisions[0] != "fp32":
        precisions = ["fp32", *[p for p in precisions if p != "fp32"]]  # the stock path every ratio is taken against
    results = run_benchmark(args.data, precisions, args.images, args.repeats, args.threads)
    write_json_atomic(args.out, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
