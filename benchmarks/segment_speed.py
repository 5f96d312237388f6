"""``segment`` end to end: seconds per image from reading the file to the written mask and CSV row.

Runs the SAM bundle's ``inference.json`` as ``monai-fetal segment`` does (its evaluator, preprocessing, automatic
prompt, postprocessing, measurement and :class:`~monai_fetal.engines.segment.MeasurementWriter`), on image
files with no box (with ``--gt-boxes``, each with its ground-truth box, as ``segment --boxes`` gives it). Each image is timed from the engine fetching it (reading, framing) to the end of its
iteration, after its mask PNG and CSV row are written; model loading and the first image (warm-up) are left
out. The JSON gives the mean and median per image, the share of the time in the network (encoder, locator,
decodes of the automatic prompt), and the no-box path's own steps (``searched`` and ``flagged`` counts), which
decide how much work an image costs.

    python benchmarks/segment_speed.py --checkpoint RUN/model.pt --split RUN/split.json --out benchmarks/results/segment_speed_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from timing import cpu_description

from monai_fetal.atomic import write_json_atomic
from monai_fetal.config_checks import CHOICES

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def held_out_images(split: Path | None, data: Path, count: int) -> list[Path]:
    """The ``test`` images of a k-shot split of ``hc18_subset`` (images a model never trained on), else the first ``count``."""
    folder = data / "hc18_subset" / "images"
    if split is None:
        return sorted(folder.glob("*.png"))[:count]
    return [folder / Path(item["image"]).name for item in json.loads(split.read_text())["test"]][:count]


def ground_truth_boxes(images: list[Path], margin: float = 0.05) -> dict[str, list[float]]:
    """Each HC18 image's box ``[x0, y0, x1, y1]``: its filled annotation's box widened by ``margin`` (evaluate's box)."""
    from monai_fetal.data.io import read_image
    from monai_fetal.shape.outline import fill_head_annotation
    from monai_fetal.transforms.box import box_from_mask, widen_box

    boxes = {}
    for image in images:
        mask = fill_head_annotation(read_image(image.parent.parent / "annotations" / image.name.replace(".png", "_Annotation.png")))
        limit = torch.tensor([mask.shape[1] - 1.0, mask.shape[0] - 1.0]).repeat(2)
        boxes[image.name] = widen_box(box_from_mask(mask), margin, limit).tolist()
    return boxes


def time_segment(
    images: list[Path], checkpoint: Path | None, out: Path, boxes: dict[str, list[float]] | None = None, effort: str = "full"
) -> dict:
    """Per-image seconds (total and network) of ``inference.json`` run on ``images`` with ``boxes`` (none: no box) and ``effort``."""
    from ignite.engine import Events

    from monai_fetal.bundles import read_bundle_config
    from monai_fetal.engines.head_measure import searched_of
    from monai_fetal.engines.segment import MANIFEST_NAME

    overrides = {"images": [str(p) for p in images], "output_dir": str(out), "checkpoint": str(checkpoint) if checkpoint else None, "boxes": boxes or {}, "effort": effort}
    parser = read_bundle_config("fetal_head_sam", "inference.json", overrides)
    evaluator = parser.get_parsed_content("evaluator")
    inferer = parser.get_parsed_content("inferer")
    network_call = inferer.__call__
    totals, networks, searched, started = [], [], [], [0.0]

    def timed_network(*args, **kwargs):
        start = time.perf_counter()
        result = network_call(*args, **kwargs)
        networks.append(time.perf_counter() - start)
        searched.append(searched_of(inferer))
        return result

    evaluator.inferer = timed_network  # the same SamInferer, timed; the postprocessing reads its last_iou as before

    @evaluator.on(Events.GET_BATCH_STARTED)
    def start(_) -> None:
        started[0] = time.perf_counter()

    @evaluator.on(Events.ITERATION_COMPLETED)
    def stop(_) -> None:  # attached after MeasurementWriter: its mask and row are written
        totals.append(time.perf_counter() - started[0])

    evaluator.run()
    flagged = json.loads((out / MANIFEST_NAME).read_text())["flagged"]
    return {"total": totals[1:], "network": networks[1:], "searched": sum(searched[1:]), "flagged": flagged, "images": len(images)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="fine-tuned model.pt (default: pretrained LiteMedSAM)")
    parser.add_argument("--split", type=Path, default=None, help="the model's split.json: time its held-out test images")
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--gt-boxes", action="store_true", help="give each image its ground-truth box (segment --boxes)")
    parser.add_argument("--effort", choices=CHOICES["effort"], default="full", help="the no-box search effort (segment --effort)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    images = held_out_images(args.split, args.data, args.images)
    with tempfile.TemporaryDirectory() as work:
        timed = time_segment(images, args.checkpoint, Path(work) / "segment", ground_truth_boxes(images) if args.gt_boxes else None, args.effort)
    total, network = timed.pop("total"), timed.pop("network")
    result = {
        **timed,
        "checkpoint": str(args.checkpoint) if args.checkpoint else "pretrained",
        "boxes": "ground truth" if args.gt_boxes else "none",
        "effort": args.effort,
        "timed_images": len(total),
        "seconds_per_image_mean": statistics.mean(total),
        "seconds_per_image_median": statistics.median(total),
        "seconds_per_image_max": max(total),
        "network_seconds_per_image_mean": statistics.mean(network),
        "network_share": sum(network) / sum(total),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        **cpu_description(),
    }
    write_json_atomic(args.out, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
