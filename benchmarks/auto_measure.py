"""Automatic head measurement with no box, by the fixed benchmark protocol (issue 14).

Protocol (``../shared/data/benchmark_protocol.json``, by patient): k-shot training and validation
images come from ``labelled_pool`` (``hc18_subset``, the project's seeded k-shot split); the
``unlabelled_pool`` (219 ``hc18_train`` images) is read as images only, never its annotations; the
``test`` set (213 ``hc18_train`` images of other patients) is never trained on and is scored
against the published HC column of the HC18 CSV.

Rows: ``shots`` (0 = pretrained LiteMedSAM) x ``seed`` x with/without the unlabelled pool. Each row
is fine-tuned with the SAM bundle's ``train.json`` (its defaults), then scored on the test images
with the evaluation config's own preprocessing, inferer and postprocessing (``evaluate.json``),
once with no box (the automatic prompt) and once with the ground-truth box (5 % margin): Dice
mean / min, HD95 (pixels), mean absolute HC error in mm against the published HC, share of images
with Dice < 0.90, and the flagged count with the Dice of flagged and unflagged images.

With the unlabelled pool the row is self-trained: ``train.json`` with ``unlabelled_dir`` (the pool,
read through the protocol) runs :class:`monai_fetal.engines.LocatorSelfTraining` after the supervised
run: the model segments the pool with no box, masks whose quality passes the flag threshold become
pseudo-labels, and the head locator is retrained on the real and pseudo-labelled masks (two rounds).
k = 0 has no self-trained row (nothing labelled to start from).

Rows already in ``--out`` (same shots, seed, pool, synthetic pairs, test images and effort) are skipped (resumable); the
JSON is rewritten after every row.

    python benchmarks/auto_measure.py --shots 0 5 --seeds 0 1 2 --out benchmarks/results/auto_measure_cpu.json
    python benchmarks/auto_measure.py --shots 5 --seeds 0 --test-images 40 --out /tmp/am.json
    python benchmarks/auto_measure.py --shots 5 --seeds 0 --rescue-below 0 --search-below 0 --out /tmp/am_no_rescue.json

``--reflag FILE`` runs no network: it summarises the rows of an earlier results file again from their stored
per-image values (rounded to 5 decimals) with the current flag rule (``--flag-quality``, ``--flag-searched-quality``),
into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import math
import os
import platform
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from monai_fetal.atomic import write_json_atomic
from monai_fetal.config_checks import CHOICES
from monai_fetal.shape.measure import FLAG_BELOW as FLAG_QUALITY
from monai_fetal.shape.measure import FLAG_BOXED_BELOW as FLAG_BOXED_QUALITY
from monai_fetal.shape.measure import FLAG_SEARCHED_BELOW as FLAG_SEARCHED_QUALITY

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DICE_FAIL = 0.90
FLAG_SWEEP = (0.92, 0.93, 0.94, 0.95)  # other flag thresholds whose counts each summary also reports


def _hc18_items(folder: Path, names: list[str], with_labels: bool) -> list[dict]:
    """Datalist items of HC18 images in ``folder`` with spacing and published HC (labels only when asked)."""
    table = {}
    with open(folder / "training_set_pixel_size_and_HC.csv") as handle:
        for row in csv.DictReader(handle):
            table[row["filename"]] = (float(row["pixel size(mm)"]), float(row["head circumference (mm)"]))
    items = []
    for name in names:
        spacing, hc_mm = table[name]
        item = {"image": str(folder / "images" / name), "id": name[:-4], "spacing": spacing, "hc_mm": hc_mm}
        if with_labels:
            item["label"] = str(folder / "annotations" / name.replace(".png", "_Annotation.png"))
        items.append(item)
    return items


def protocol_items(data: Path, test_images: int | None) -> list[dict]:
    """Test items (with annotations) of the protocol."""
    protocol = json.loads((data / "benchmark_protocol.json").read_text())
    test = protocol["test"]["images"][:test_images] if test_images else protocol["test"]["images"]
    return _hc18_items(data / protocol["test"]["folder"], test, with_labels=True)


def _quiet() -> None:
    for name in ("ignite", "monai", "monai.bundle"):
        logging.getLogger(name).setLevel(logging.WARNING)


def synthetic_pairs(run_dir: Path, shots: int, seed: int, data: Path, count: int) -> Path:
    """``count`` synthetic pairs from the diffusion bundle's default generator conditioned on the row's k real pairs.

    The k pairs are the training part of the split that ``train.json`` writes for this seed (same
    function, same defaults); the generator is the shipped in-domain prior with its default few-shot
    conditioning (``train-generator`` defaults), sampled with the ``synthesize`` defaults. Rows of the
    same k and seed share one conditioned generator (``generator_k{k}_s{seed}`` beside the row folders).
    """
    from monai_fetal.data.prepare import ensure_cohort
    from monai_fetal.data.splits import write_split
    from monai_fetal.jobs import synthesize_pairs, train_generator
    from monai_fetal.study.cohorts import split_part_cohort

    synthetic = run_dir / "synthetic"
    if not (synthetic / "datalist.json").is_file():
        shared = run_dir.parent / f"generator_k{shots}_s{seed}"
        cohort = ensure_cohort(data / "hc18_subset", shared / "cohort")
        split = write_split(cohort, shots, seed, out=shared / "split.json")
        real_pairs = shared / "real_pairs"
        if not (real_pairs / "datalist.json").is_file():
            split_part_cohort(cohort, split, real_pairs)
        generator = train_generator(real_pairs, shared / "generator", seed=seed)
        synthesize_pairs(generator.parent, synthetic, count, seed=seed)
    return synthetic


def finetune(run_dir: Path, shots: int, seed: int, data: Path, cache: Path, unlabelled: bool, synthetic: int) -> Path:
    """The row's model: the SAM bundle's ``train.json`` with its defaults (skipped when ``model.pt`` and ``done`` exist).

    With ``synthetic`` > 0 every one of that many generated pairs joins the k real ones (``synthetic_ratio`` -1).
    """
    from monai_fetal.jobs import finetune_sam

    model, done = run_dir / "model.pt", run_dir / "done"
    if not (model.is_file() and done.is_file()):
        pool = {"unlabelled": data / "hc18_train", "unlabelled_protocol": data / "benchmark_protocol.json"} if unlabelled else {}
        if synthetic:
            pool.update(synthetic_dir=synthetic_pairs(run_dir, shots, seed, data, synthetic), synthetic_ratio=-1)
        finetune_sam(data / "hc18_subset", run_dir, shots=shots, seed=seed, embedding_cache_dir=cache, **pool)
        done.write_text("done\n")
    return model


class Prediction(NamedTuple):
    """One image's prediction at original size (rows, cols), with what ``segment`` would make of it."""

    pred: np.ndarray
    label: np.ndarray
    image: np.ndarray
    quality: float
    seconds: float
    searched: bool


class Scorer:
    """The evaluation config's components for one model, run image by image with both prompts."""

    def __init__(self, checkpoint: Path | None, cache_dir: Path, work: Path, prompt_settings: dict[str, float] | None = None) -> None:
        from monai_fetal.bundles import EVALUATE_CONFIGS, read_bundle_config

        overrides = {
            "checkpoint": str(checkpoint) if checkpoint else None,
            "prompt": "gt_box",
            "ellipse_mask": False,  # the network's masks; image_scores derives the written ones (dice_written) from them
            "output_dir": str(work),
            "embedding_cache_dir": str(cache_dir),
            "device": "$torch.device('cpu')",
        }
        overrides.update(prompt_settings or {})  # inference.json ids of the automatic prompt (rescue_below, search_below)
        parser = read_bundle_config("fetal_head_sam", EVALUATE_CONFIGS, overrides)
        self.preprocessing = parser.get_parsed_content("preprocessing")
        self.network = parser.get_parsed_content("network")
        self.postprocessing = parser.get_parsed_content("postprocessing")
        self.inferer = parser.get_parsed_content("inferer")

    @torch.no_grad()
    def predict(self, item: dict, prompt: str) -> Prediction:
        """Predicted and reference masks and the image as read (``(rows, cols)``, original size), the prediction's
        quality, network seconds and whether the automatic prompt searched sub-boxes.

        The quality is ``segment``'s, for either prompt: :func:`~monai_fetal.shape.measure.measure_head`'s score of the
        network's mask at original size with SAM's IoU estimate of its final decode (``SamInferer.last_iou``).
        """
        from monai.data import decollate_batch, list_data_collate

        from monai_fetal.engines import SamPrepareBatch
        from monai_fetal.engines.head_measure import sam_iou_of, searched_of
        from monai_fetal.shape.measure import measure_head

        batch = list_data_collate([self.preprocessing(dict(item))])
        images, _, _, extra = SamPrepareBatch()(batch)
        self.inferer.prompt = prompt  # the evaluation config's SamInferer, with the prompt of this call
        start = time.perf_counter()
        batch["pred"] = self.inferer(images, self.network, **(extra if prompt == "gt_box" else {}))
        seconds = time.perf_counter() - start
        out = self.postprocessing(decollate_batch(batch)[0])
        pred = np.asarray(out["pred"][0]).T > 0  # MONAI's [W, H] -> (rows, cols)
        label = np.asarray(out["label"][0]).T > 0
        quality = measure_head(pred, None, sam_iou_of(self.inferer)).quality.score
        image = np.asarray(out["image_as_read"][0]).T
        return Prediction(pred, label, image, quality, seconds, searched_of(self.inferer))


def image_scores(pred: np.ndarray, label: np.ndarray, item: dict, image: np.ndarray) -> dict:
    """Dice, HD95 (pixels) and HC error in mm against the published HC for one image.

    ``dice_ellipse`` is the Dice of the prediction's filled fitted ellipse (the HC18 reference masks are
    ellipses): what the fitted ellipse as the final mask would score; the HC is the ellipse's either way.
    ``hc_error_snapped_mm`` is the HC error of what ``segment`` measures: :func:`~monai_fetal.shape.measure.measure_head`
    with the image, the fitted ellipse snapped to the skull's outer edge; ``dice_written`` is the Dice of the mask
    ``segment`` writes, that ellipse filled (:class:`~monai_fetal.engines.head_measure.HeadEllipsed`; the network's
    mask where no head was found).
    """
    from monai.metrics import compute_dice, compute_hausdorff_distance

    from monai_fetal.shape.biometry import biometry_from_ellipse
    from monai_fetal.shape.ellipse import ellipse_to_mask, fit_ellipse_to_mask
    from monai_fetal.shape.measure import measure_head

    def dice_of(mask: np.ndarray) -> float:
        return float(compute_dice(torch.as_tensor(mask[None, None]).float(), y, ignore_empty=False)[0, 0])

    y = torch.as_tensor(label[None, None]).float()
    dice = dice_of(pred)
    hd95 = float(compute_hausdorff_distance(torch.as_tensor(pred[None, None]).float(), y, percentile=95)[0, 0]) if pred.any() else math.nan
    try:
        ellipse = fit_ellipse_to_mask(pred)
    except ValueError:
        hc_mm, dice_ellipse = 0.0, dice
    else:
        hc_mm, dice_ellipse = biometry_from_ellipse(ellipse, item["spacing"]).hc_mm, dice_of(ellipse_to_mask(ellipse, pred.shape))
    measured = measure_head(pred, item["spacing"], image=image).biometry
    hc_snapped_mm = 0.0 if measured is None else measured.hc_mm
    dice_written = dice if measured is None else dice_of(ellipse_to_mask(measured.ellipse, pred.shape))
    return {
        "id": item["id"],
        "dice": dice,
        "dice_ellipse": dice_ellipse,
        "dice_written": dice_written,
        "hd95": hd95,
        "hc_mm": hc_mm,
        "hc_error_mm": abs(hc_mm - item["hc_mm"]),
        "hc_error_snapped_mm": abs(hc_snapped_mm - item["hc_mm"]),
    }


def flagged_images(rows: list[dict], flag_quality: float, searched_quality: float = FLAG_SEARCHED_QUALITY) -> np.ndarray:
    """Which per-image ``rows`` ``segment`` flags: quality below ``flag_quality``, or below ``searched_quality`` (at least
    ``flag_quality``) where the automatic prompt searched its sub-boxes."""
    quality = np.array([r["quality"] for r in rows])
    searched = np.array([bool(r.get("searched", False)) for r in rows])
    return (quality < flag_quality) | (searched & (quality < max(flag_quality, searched_quality)))


def summarise(rows: list[dict], flag_quality: float, searched_quality: float = FLAG_SEARCHED_QUALITY) -> dict:
    """Means and failure counts of per-image rows.

    ``dice_*`` score the network's masks; ``written_*`` the masks ``segment`` writes (every head its snapped ellipse),
    and ``written_trusted_only_dice_mean`` those of package 0.4.9, which wrote only unflagged heads as their ellipse.
    An image is flagged where its quality is below ``flag_quality``, or below ``searched_quality`` where the automatic
    prompt searched its sub-boxes, as ``segment`` flags since package 0.4.11 (until 0.4.10 a searched image was
    flagged whatever its quality); ``searched`` counts the searched images.
    """
    dice = np.array([r["dice"] for r in rows])
    searched = np.array([bool(r.get("searched", False)) for r in rows])

    def flagged_at(threshold: float) -> np.ndarray:
        return flagged_images(rows, threshold, searched_quality)

    flagged = flagged_at(flag_quality)
    hd95 = np.array([r["hd95"] for r in rows])
    fail = dice < DICE_FAIL
    written = np.array([r["dice_written"] for r in rows])
    written_fail = written < DICE_FAIL
    hc_error = np.array([r["hc_error_mm"] for r in rows])
    snapped = np.array([r["hc_error_snapped_mm"] for r in rows])  # what segment measures
    return {
        "images": len(rows),
        "dice_mean": float(dice.mean()),
        "dice_min": float(dice.min()),
        "dice_ellipse_mean": float(np.mean([r["dice_ellipse"] for r in rows])),
        "hd95_mean": float(np.nanmean(hd95)) if np.isfinite(hd95).any() else math.nan,
        "hc_error_mm_mean": float(hc_error.mean()),
        "hc_error_mm_median": float(np.median(hc_error)),
        "hc_error_snapped_mm_mean": float(snapped.mean()),
        "hc_error_unflagged_mm_mean": float(hc_error[~flagged].mean()) if (~flagged).any() else None,
        "hc_error_snapped_unflagged_mm_mean": float(snapped[~flagged].mean()) if (~flagged).any() else None,
        "share_dice_below_090": float(fail.mean()),
        "flagged": int(flagged.sum()),
        "searched": int(searched.sum()),
        "unflagged_failures": int((fail & ~flagged).sum()),
        "share_unflagged_failures": float((fail & ~flagged).mean()),
        "dice_flagged": float(dice[flagged].mean()) if flagged.any() else None,
        "dice_unflagged": float(dice[~flagged].mean()) if (~flagged).any() else None,
        "written_dice_mean": float(written.mean()),
        "written_dice_min": float(written.min()),
        "written_share_dice_below_090": float(written_fail.mean()),
        "written_unflagged_failures": int((written_fail & ~flagged).sum()),
        "written_dice_flagged": float(written[flagged].mean()) if flagged.any() else None,
        "written_dice_unflagged": float(written[~flagged].mean()) if (~flagged).any() else None,
        "written_trusted_only_dice_mean": float(np.where(flagged, dice, written).mean()),
        "seconds_per_image_network": float(np.mean([r["seconds"] for r in rows])),
        "flagged_and_unflagged_failures_by_threshold": {
            str(threshold): [int(flagged_at(threshold).sum()), int((fail & ~flagged_at(threshold)).sum())] for threshold in FLAG_SWEEP
        },
    }


PER_IMAGE_DIGITS = 5  # per-image values are stored rounded (a row of 213 images stays small); summaries are exact


def rounded(row: dict) -> dict:
    """``row`` with its float values rounded to :data:`PER_IMAGE_DIGITS` decimals (NaN stays NaN)."""
    return {key: round(value, PER_IMAGE_DIGITS) if isinstance(value, float) else value for key, value in row.items()}


def score(scorer: Scorer, items: list[dict], prompt: str, flag_quality: float, searched_quality: float) -> dict:
    """Per-image scores (rounded for storage) and their summary (of the exact values) for one prompt."""
    rows = []
    for item in items:
        p = scorer.predict(item, prompt)
        rows.append({**image_scores(p.pred, p.label, item, p.image), "quality": p.quality, "seconds": p.seconds, "searched": p.searched})
    return {"summary": summarise(rows, flag_quality, searched_quality), "per_image": [rounded(row) for row in rows]}


def row_scorer(args, shots: int, seed: int, unlabelled: bool, synthetic: int) -> tuple[Path, Scorer]:
    """The row's model folder under ``--work`` and its :class:`Scorer` (the model is fine-tuned first when missing)."""
    work = Path(args.work)
    name = f"k{shots}_s{seed}" + (f"_syn{synthetic}" if synthetic else "") + ("_u" if unlabelled else "")
    cache = work / "embedding_cache"
    checkpoint = None if shots == 0 else finetune(work / name, shots, seed, args.data, cache, unlabelled, synthetic)
    settings = {"rescue_below": args.rescue_below, "search_below": args.search_below, "effort": args.effort}
    return work / name, Scorer(checkpoint, cache, work / "eval", {key: value for key, value in settings.items() if value is not None})


def done_rows(results: dict) -> set[tuple]:
    """``(shots, seed, unlabelled, synthetic, test images, effort)`` of the rows in ``results``: the rows a rerun skips.
    Rows written before the ``--effort`` option ran the full path."""
    return {(r["shots"], r["seed"], r["unlabelled"], int(r["synthetic"]), r["auto"]["summary"]["images"], r.get("effort", "full")) for r in results["rows"]}


def run_row(args, shots: int, seed: int, unlabelled: bool, synthetic: int, test: list[dict]) -> dict:
    """Train (when ``shots`` > 0) and score one row."""
    started = time.time()
    model_dir, scorer = row_scorer(args, shots, seed, unlabelled, synthetic)
    info = {}
    if unlabelled:
        info = {"self_training": json.loads((model_dir / "self_training.json").read_text())}
    result = {"shots": shots, "seed": seed, "unlabelled": unlabelled, "synthetic": synthetic, "effort": args.effort or "full", **info}
    result["auto_prompt"] = {key: list(v) if isinstance(v, tuple) else v for key, v in vars(scorer.inferer.auto_prompt).items()}
    for prompt in ("auto", "gt_box"):
        result[prompt] = score(scorer, test, prompt, *flag_thresholds(args, prompt))
    result["wall_s"] = time.time() - started
    return result


def flag_thresholds(args, prompt: str) -> tuple[float, float]:
    """The flag thresholds ``(quality, searched quality)`` of ``prompt``'s heads: ``--flag-boxed-quality`` for the
    ground-truth box (a given box, as ``segment --boxes`` flags it), ``--flag-quality`` without a box."""
    return (args.flag_boxed_quality if prompt == "gt_box" else args.flag_quality), args.flag_searched_quality


def reflagged(results: dict, args) -> dict:
    """``results`` with every row's summaries recomputed from its per-image values, flagged as :func:`summarise` flags
    with each prompt's :func:`flag_thresholds`."""
    rows = [
        {**row, **{prompt: {**row[prompt], "summary": summarise(row[prompt]["per_image"], *flag_thresholds(args, prompt))} for prompt in ("auto", "gt_box")}}
        for row in results["rows"]
    ]
    return {**results, "rows": rows, "reflagged_from": results.get("flag_criterion")}


def rescore_gt_box(args, results: dict) -> None:
    """Score the ground-truth-box prompt of every row of ``results`` again with today's inference path, writing ``--out``
    after each row; the rows' models must be in ``--work``. The no-box results are kept: for changes that touch only a
    given box's path (such as :class:`~monai_fetal.engines.crop_refine.CropRefined`)."""
    test = protocol_items(args.data, results["test_images"])
    for index, row in enumerate(results["rows"]):
        _, scorer = row_scorer(args, row["shots"], row["seed"], row["unlabelled"], int(row["synthetic"]))
        results["rows"][index] = {**row, "gt_box": score(scorer, test, "gt_box", *flag_thresholds(args, "gt_box"))}
        write_json_atomic(args.out, {**results, "gt_box_rescored_from": str(args.rescore_gt_box)})
        b = results["rows"][index]["gt_box"]["summary"]
        print(f"k={row['shots']} seed={row['seed']} unlabelled={row['unlabelled']}: gt box Dice {b['dice_mean']:.4f}, HC error written {b['hc_error_snapped_mm_mean']:.2f} mm", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shots", type=int, nargs="+", default=[0, 1, 5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--unlabelled", choices=["no", "yes", "both"], default="no")
    parser.add_argument("--synthetic", type=int, nargs="+", default=[0], help="synthetic pairs per row (0 = none)")
    parser.add_argument("--test-images", type=int, default=None, help="first N test images (default all 213)")
    parser.add_argument("--rescue-below", type=float, default=None, help="AutoBoxPrompt's rescue_below (default: the prompt's; 0 = off)")
    parser.add_argument("--search-below", type=float, default=None, help="AutoBoxPrompt's search_below (default: the prompt's; 0 = off)")
    parser.add_argument("--effort", choices=CHOICES["effort"], default=None, help="inference.json's no-box search effort (segment --effort)")
    parser.add_argument("--flag-quality", type=float, default=FLAG_QUALITY, help="flag images whose quality is below this")
    parser.add_argument("--flag-searched-quality", type=float, default=FLAG_SEARCHED_QUALITY, help="flag searched images below this")
    parser.add_argument("--flag-boxed-quality", type=float, default=FLAG_BOXED_QUALITY, help="flag ground-truth-box images below this")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", default="/tmp/auto_measure", help="models, caches and pseudo-labels")
    parser.add_argument("--reflag", type=Path, default=None, help="summarise this results file again with the flag thresholds (no network)")
    parser.add_argument("--rescore-gt-box", type=Path, default=None, help="score this results file's ground-truth-box rows again (models in --work)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    _quiet()
    criterion = (
        f"quality < {args.flag_quality}, or < {args.flag_searched_quality} where sub-boxes were searched, "
        f"or < {args.flag_boxed_quality} with the ground-truth box "
        "(segment's: measure_head's score of the network's mask)"
    )
    if args.reflag is not None:
        results = reflagged(json.loads(args.reflag.read_text()), args)
        write_json_atomic(args.out, {**results, "flag_criterion": criterion})
        return
    if args.rescore_gt_box is not None:
        rescore_gt_box(args, json.loads(args.rescore_gt_box.read_text()))
        return
    test = protocol_items(args.data, args.test_images)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {"rows": []}
    results.update(
        {
            "protocol": str(args.data / "benchmark_protocol.json"),
            "test_images": len(test),
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "torch": torch.__version__,
            "flag_criterion": criterion,
        }
    )
    effort = args.effort or "full"
    done = done_rows(results)
    choices = {"no": [False], "yes": [True], "both": [False, True]}[args.unlabelled]
    for shots in args.shots:
        for seed in args.seeds if shots else [0]:
            for unlabelled, synthetic in itertools.product(choices, args.synthetic):
                if (shots, seed, unlabelled, synthetic, len(test), effort) in done or (shots == 0 and (unlabelled or synthetic)):
                    continue  # done already; or self-training / generator with no labelled image (nothing to fine-tune)
                row = run_row(args, shots, seed, unlabelled, synthetic, test)
                results["rows"].append(row)
                write_json_atomic(args.out, results)
                s, b = row["auto"]["summary"], row["gt_box"]["summary"]
                print(
                    f"k={shots} seed={seed} unlabelled={unlabelled} synthetic={synthetic}: no box Dice {s['dice_mean']:.4f} (min {s['dice_min']:.3f}) "
                    f"HC {s['hc_error_mm_mean']:.2f} mm, <0.90 {s['share_dice_below_090']:.3f}, flagged {s['flagged']}, "
                    f"unflagged failures {s['unflagged_failures']} | gt box Dice {b['dice_mean']:.4f} HC {b['hc_error_mm_mean']:.2f} mm",
                    flush=True,
                )


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    main()
