"""``monai-fetal``: sub-commands for people who do not write bundle configs."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from monai_fetal.config_checks import CHOICES
from monai_fetal.errors import user_error_in

__all__ = ["build_parser", "main"]

_CONFIG_DEFAULT = "(default: the bundle config's; docs/bundles.md)"


def _prepare(args: argparse.Namespace) -> None:
    from monai_fetal.data.prepare import prepare_cohort

    datalist = prepare_cohort(args.src, args.out, cohort=args.cohort, overwrite=args.overwrite, skip_bad=args.skip_bad)
    print(f"cohort written: {datalist}")
    if args.shots is not None:
        from monai_fetal.data.splits import write_split  # imports MONAI (and torch): only when a split is asked for

        print(f"split written: {write_split(args.out, args.shots, args.seed, val=args.val)}")


def _split(args: argparse.Namespace) -> None:
    from monai_fetal.data.splits import write_split

    print(f"split written: {write_split(args.cohort, args.shots, args.seed, val=args.val, test=args.test, out=args.out)}")


def _phantom(args: argparse.Namespace) -> None:
    from monai_fetal.data.phantom import make_phantom_cohort

    datalist = make_phantom_cohort(args.out, args.n, seed=args.seed, size=(args.height, args.width), overwrite=args.overwrite)
    print(f"phantom cohort written: {datalist}")


def _download(args: argparse.Namespace) -> None:
    from monai_fetal.data.download import download_hc18

    print(f"HC18 training set ready: {download_hc18(args.dir)}")


def _finetune(args: argparse.Namespace) -> None:
    from monai_fetal.jobs import finetune_sam

    model = finetune_sam(
        args.data,
        args.out,
        shots=args.shots,
        seed=args.seed,
        val_images=args.val,
        epochs=args.epochs,
        model_name=args.model,
        sam_checkpoint=args.sam_checkpoint,
        trainable=args.trainable,
        augmentation=args.augmentation,
        synthetic_dir=args.synthetic,
        synthetic_ratio=args.synthetic_ratio,
        unlabelled=args.unlabelled,
        unlabelled_protocol=args.unlabelled_protocol,
    )
    print(f"fine-tuned model: {model}")


def _evaluate(args: argparse.Namespace) -> None:
    from monai_fetal.jobs import evaluate_sam

    metrics = evaluate_sam(
        args.data,
        args.out,
        checkpoint=args.checkpoint,
        prompt=args.prompt,
        model_name=args.model,
        split_file=args.split,
        split_key=args.split_key,
        precision=args.precision,
        effort=args.effort,
    )
    print(f"metrics written: {metrics} and {metrics.parent}/per_image.csv")


def _segment(args: argparse.Namespace) -> None:
    from monai_fetal.engines.segment import read_boxes_csv
    from monai_fetal.jobs import segment_images

    measurements = segment_images(
        args.images,
        args.out,
        checkpoint=args.checkpoint,
        model_name=args.model,
        boxes=read_boxes_csv(args.boxes) if args.boxes else None,
        spacing=args.spacing,
        overlay=args.overlay,
        overwrite=args.overwrite,
        precision=args.precision,
        effort=args.effort,
    )
    print(f"masks and measurements written: {measurements} (rows with flagged=1 need a look)")


def _train_generator(args: argparse.Namespace) -> None:
    from monai_fetal.jobs import train_generator

    weights = train_generator(
        args.data, args.out, mode=args.mode, prior=args.prior, preset=args.preset, epochs=args.epochs, conditioning=args.conditioning
    )
    print(f"generator written: {weights} (sample grids in {weights.parent}/samples)")


def _synthesize(args: argparse.Namespace) -> None:
    from monai_fetal.jobs import synthesize_pairs

    datalist = synthesize_pairs(
        args.generator,
        args.out,
        args.n,
        steps=args.steps,
        sampler=args.sampler,
        guidance=args.guidance,
        seed=args.seed,
        size=args.size,
        masks=args.masks,
        mask_affine=args.affine,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        texture=args.texture,
        x0_clip=args.x0_clip,
    )
    print(f"synthetic cohort written: {datalist}")


def _synth_report(args: argparse.Namespace) -> None:
    from monai_fetal.data.unlabelled import training_images
    from monai_fetal.jobs import synth_report
    from monai_fetal.metrics.synth_report import GRID_NAME, REPORT_NAME

    training = training_images(args.train or [], args.train_protocol)
    report = synth_report(
        args.real, args.synthetic, args.out, model_name=args.model, max_real=args.max_real, seed=args.seed, training_images=training
    )
    consistency = report["synthetic"]["pair_consistency"]
    print(
        f"FID {report['feature_distance']['fid']:.4f}, KID {report['feature_distance']['kid']:.5f}, "
        f"pair-consistency Dice {consistency['mean']:.3f} (real {report['real']['pair_consistency']['mean']:.3f})"
    )
    matched = report["pair_consistency_by_head_size"]["real_at_synthetic_head_sizes"]
    if matched is not None:
        print(f"real images at the synthetic set's head sizes: pair-consistency Dice {matched:.3f}")
    if "memorisation" in report:
        memorisation = report["memorisation"]
        print(
            f"memorisation: {memorisation['near_copies']} of {len(memorisation['per_image'])} synthetic images are near-copies "
            f"(highest correlation {max(v['similarity'] for v in memorisation['per_image'].values()):.3f} with {memorisation['training_images']} training images)"
            if memorisation["per_image"] else "memorisation: no synthetic image"
        )
    for warning in report["warnings"]:
        print(f"warning: {warning}")
    print(f"report written: {args.out}/{REPORT_NAME} and {args.out}/{GRID_NAME}")


def _demo(args: argparse.Namespace) -> None:
    from monai_fetal.study.demo import DEFAULT, QUICK, run_demo

    print(f"report written: {run_demo(args.out, data=args.data, settings=QUICK if args.quick else DEFAULT)}")


def _experiment(args: argparse.Namespace) -> None:
    from pathlib import Path

    from monai_fetal.study.experiment import ExperimentPlan, run_experiment
    from monai_fetal.study.runs import GeneratorOptions, SamOptions

    plan = ExperimentPlan(
        data=Path(args.data),
        tests=tuple(Path(t) for t in (args.test or [args.data])),
        shots=tuple(args.shots),
        synthetic=tuple(args.synthetic),
        seeds=tuple(args.seeds),
        out=Path(args.out),
        prompts=tuple(args.prompts),
        test_images=args.test_images,
        sam=SamOptions(epochs=args.epochs, variants=args.variants, val=args.val),
        generator=GeneratorOptions(
            epochs=args.generator_epochs,
            iterations=args.generator_iterations,
            synthesis_steps=args.synthesis_steps,
            mode=args.generator_mode,
        ),
    )
    results = run_experiment(plan)
    print(f"results written: {results} and {results.parent}/dice_vs_shots.png")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"a positive number of mm per pixel, e.g. 0.15, got {text!r}")
    return value


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", choices=CHOICES["model_name"], help="SAM builder (default lite_medsam; vit_b/l/h need --sam-checkpoint)")


def _add_precision(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        choices=CHOICES["precision"],
        help="image-encoder path (default: the fastest one that keeps fp32's Dice on this machine; see benchmarks/README.md)",
    )


def _add_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune SAM on k real images (and synthetic pairs) of a cohort")
    p.add_argument("--data", required=True, help="cohort folder or HC18 folder")
    p.add_argument("--synthetic", help="cohort folder of synthetic pairs to mix in")
    p.add_argument("--synthetic-ratio", type=float, help=f"synthetic images per real one, -1: all {_CONFIG_DEFAULT}")
    p.add_argument("--shots", type=int, help=f"real training images {_CONFIG_DEFAULT}")
    p.add_argument("--seed", type=int, help=f"seed of the split and training {_CONFIG_DEFAULT}")
    p.add_argument("--val", type=int, help=f"validation images {_CONFIG_DEFAULT}")
    p.add_argument("--epochs", type=int, help=f"epochs {_CONFIG_DEFAULT}")
    p.add_argument("--trainable", choices=CHOICES["trainable"], help=f"parts to train {_CONFIG_DEFAULT}")
    p.add_argument("--augmentation", choices=CHOICES["augmentation"], help=f"augmentation of the real images {_CONFIG_DEFAULT}")
    p.add_argument("--sam-checkpoint", help="SAM checkpoint to start from (required for vit_b/l/h)")
    p.add_argument(
        "--unlabelled",
        help="folder of images without masks that self-train the head locator (default: the cohort's unlabelled/ when present)",
    )
    p.add_argument("--unlabelled-protocol", help="benchmark protocol JSON: read only its unlabelled_pool images of --unlabelled")
    p.add_argument("--out", required=True, help="run folder: checkpoints, model.pt, split.json")
    _add_model_options(p)
    p.set_defaults(func=_finetune)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="Dice, HD95, ASD and head-circumference error of a SAM model on a cohort")
    p.add_argument("--data", required=True, help="cohort folder or HC18 folder")
    p.add_argument("--checkpoint", help="fine-tuned model.pt (default: the pretrained model)")
    p.add_argument("--prompt", choices=CHOICES["prompt"], help=f"gt_box: the box of the reference mask; auto: no box {_CONFIG_DEFAULT}")
    p.add_argument("--split", help="split file from finetune or split (default: every image of the cohort)")
    p.add_argument("--split-key", help=f"which part of the split {_CONFIG_DEFAULT}")
    _add_effort(p)
    _add_precision(p)
    p.add_argument("--out", required=True, help="folder for metrics.json and per_image.csv")
    _add_model_options(p)
    p.set_defaults(func=_evaluate)


def _add_effort(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--effort",
        choices=CHOICES["effort"],
        default=None,
        help="no-box search effort: full (default; rescue, sub-box search, zoom) or fast (about 3x fewer network passes, lower Dice)",
    )


def _add_segment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "segment", help="segment and measure the fetal head (HC, BPD, OFD) in images; writes masks and measurements.csv"
    )
    p.add_argument("images", nargs="+", help="image files (PNG, NIfTI, NRRD...), folders of images, cohort or HC18 folders")
    p.add_argument("--out", required=True, help="output folder: <name>_mask.png, measurements.csv, segment.json")
    p.add_argument("--checkpoint", help="fine-tuned model.pt (default: the pretrained model)")
    p.add_argument("--boxes", help="CSV with columns image,x0,y0,x1,y1 (pixels): a box per image (default: automatic)")
    p.add_argument(
        "--spacing", type=_positive_float, help="mm per pixel for every image (default: spacing.csv or HC18 CSV, else the header)"
    )
    p.add_argument("--overlay", action="store_true", help="also write <name>_overlay.png: mask outline, fitted ellipse, HC")
    p.add_argument("--overwrite", action="store_true", help="replace outputs of an earlier run in --out")
    _add_effort(p)
    _add_precision(p)
    _add_model_options(p)
    p.set_defaults(func=_segment)


def _add_train_generator(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-generator", help="train the mask-guided diffusion generator on a cohort (resumable)")
    p.add_argument("--data", required=True, help="cohort folder or HC18 folder")
    p.add_argument(
        "--mode",
        default="latent",
        choices=CHOICES["generator_mode"],
        help="latent (default: few-shot mask conditioning of the shipped in-domain prior, 256 x 384), "
        "or a pixel-space generator trained from scratch: concat, controlnet or joint",
    )
    p.add_argument("--prior", help="latent mode: prior folder to start from (default: the bundle's shipped models/prior)")
    p.add_argument(
        "--conditioning",
        choices=CHOICES["conditioning"],
        help=f"latent mode: how the prior learns the mask: fine_tune every weight, low_rank adapters, or a controlnet {_CONFIG_DEFAULT}",
    )
    p.add_argument("--preset", choices=CHOICES["preset"], help=f"cpu or gpu: larger batches; pixel modes 256 x 384 {_CONFIG_DEFAULT}")
    p.add_argument("--epochs", type=int, help="epochs (default: the preset's)")
    p.add_argument("--out", required=True, help="generator folder: checkpoints, unet.pt (latent) or model.pt, samples/; rerun to resume")
    p.set_defaults(func=_train_generator)


def _add_synthesize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synthesize", help="sample image-mask pairs with a trained generator into a cohort folder")
    p.add_argument("--generator", required=True, help="generator folder from train-generator, or a checkpoint in it")
    p.add_argument("--n", type=int, required=True, help="number of pairs (a rerun completes the set)")
    p.add_argument("--out", required=True, help="cohort folder to write (images/, masks/, datalist.json)")
    p.add_argument("--steps", type=int, help=f"sampling steps {_CONFIG_DEFAULT}")
    p.add_argument("--sampler", choices=CHOICES["sampler"], help=f"sampler {_CONFIG_DEFAULT}")
    p.add_argument("--guidance", type=float, help=f"classifier-free guidance scale, 1: none {_CONFIG_DEFAULT}")
    p.add_argument(
        "--x0-clip",
        type=float,
        help="bound of the predicted clean sample in each step, 0: none (default: 3 for latent generators, 1 for pixel ones)",
    )
    p.add_argument("--seed", type=int, help=f"seed of the set {_CONFIG_DEFAULT}")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="output rows and columns (default: the real images')")
    p.add_argument("--masks", help="folder of masks to condition on (default: new masks from the shape prior)")
    p.add_argument("--affine", action="store_true", help="move each --masks mask by a random affine (new heads from real ones)")
    p.add_argument("--batch-size", type=int, help=f"pairs sampled at once {_CONFIG_DEFAULT}")
    p.add_argument(
        "--no-texture",
        dest="texture",
        action="store_false",
        default=None,
        help="do not add the generator's speckle texture (its speckle.json) to the images",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace a synthetic set monai-fetal wrote in --out with other options (keeps files it did not write)"
    )
    p.set_defaults(func=_synthesize)


def _add_synth_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth-report", help="FID/KID and pair consistency of a synthetic cohort against a real one")
    p.add_argument("--real", required=True, help="real cohort folder")
    p.add_argument("--synthetic", required=True, help="synthetic cohort folder (from synthesize)")
    p.add_argument("--out", required=True, help="folder for synth_report.json and synth_grid.png")
    p.add_argument("--max-real", type=int, default=200, help="real images scored at most (default 200)")
    p.add_argument(
        "--train",
        action="append",
        help="images the generator was trained on (a cohort, HC18 or image folder; repeat for several): memorisation check",
    )
    p.add_argument(
        "--train-protocol",
        help="benchmark protocol JSON: of a --train folder with the protocol's folder name (hc18_train), take only its unlabelled_pool",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the subsets (default 0)")
    _add_model_options(p)
    p.set_defaults(func=_synth_report)


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="convert an HC18 folder or a cohort folder into a normalised cohort folder")
    p.add_argument("src", help="HC18 folder (NNN_HC.png + NNN_HC_Annotation.png) or cohort folder (images/ + masks/)")
    p.add_argument("out", help="cohort folder to write (images/, masks/, spacing.csv, datalist.json)")
    p.add_argument("--cohort", help="cohort name stored in the datalist (default: the source folder's name)")
    p.add_argument("--overwrite", action="store_true", help="replace an output folder monai-fetal wrote (keeps its splits/ and files it did not write)")
    p.add_argument("--skip-bad", action="store_true", help="leave out cases that fail validation instead of stopping")
    p.add_argument("--shots", type=int, help="also write a k-shot split with this many training images")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument("--val", type=int, default=5, help="validation images in the split (default 5)")
    p.set_defaults(func=_prepare)


def _add_split(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("split", help="write a seeded k-shot train/val/test split of a cohort folder, by patient")
    p.add_argument("cohort", help="cohort folder with datalist.json")
    p.add_argument("--shots", type=int, required=True, help="training images (one per patient)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--val", type=int, default=5, help="validation images (default 5)")
    p.add_argument("--test", type=int, help="test images (default: all remaining patients)")
    p.add_argument("--out", help="split file (default: COHORT/splits/shots{N}_seed{S}.json)")
    p.set_defaults(func=_split)


def _add_phantom(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("phantom", help="write a cohort folder of procedural fetal-head ultrasound phantoms")
    p.add_argument("out", help="cohort folder to write")
    p.add_argument("--n", type=int, default=40, help="number of images (default 40)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--height", type=int, default=540, help="image rows (default 540, as HC18)")
    p.add_argument("--width", type=int, default=800, help="image columns (default 800, as HC18)")
    p.add_argument("--overwrite", action="store_true", help="replace an output folder monai-fetal wrote (keeps its splits/ and files it did not write)")
    p.set_defaults(func=_phantom)


def _add_download(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="download a public data set with checksum")
    p.add_argument("dataset", choices=["hc18"], help="data set to download")
    p.add_argument("dir", help="folder to download and extract into")
    p.set_defaults(func=_download)


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a comma-separated list of integers, e.g. 1,2,5, got {text!r}") from None


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole path in one run: generator, synthetic pairs, SAM real vs real+synthetic, report.md")
    p.add_argument("--out", required=True, help="demo folder (report.md, figures, runs); rerun to resume")
    p.add_argument(
        "--data", help="cohort folder or HC18 folder (default: the 30 HC18 images that ship with the package; 'phantom': the procedural phantom)"
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes: under 5 minutes on 2 CPU cores (default: under 20)")
    p.set_defaults(func=_demo)


def _add_experiment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiment", help="few-shot study: real shots x synthetic pairs x seeds -> results.csv, dice_vs_shots.png")
    p.add_argument("--data", required=True, help="training cohort: cohort folder or HC18 folder")
    p.add_argument("--test", nargs="+", help="test cohorts (default: --data; --data itself is tested on held-out patients)")
    p.add_argument("--shots", type=_int_list, default=[1, 2, 5, 10, 20], help="real training images (default 1,2,5,10,20)")
    p.add_argument("--synthetic", type=_int_list, default=[0, 50, 200], help="synthetic pairs added (default 0,50,200)")
    p.add_argument("--seeds", type=_int_list, default=[0, 1, 2], help="seeds (default 0,1,2)")
    p.add_argument("--out", required=True, help="experiment folder; rerun to resume")
    p.add_argument("--prompts", type=lambda t: t.split(","), default=["gt_box", "auto"], help="gt_box,auto (default both)")
    p.add_argument("--val", type=int, default=5, help="validation images (default 5)")
    p.add_argument("--test-images", type=int, default=20, help="images of --data held out for testing (default 20)")
    p.add_argument("--epochs", type=int, default=5, help="SAM fine-tuning epochs (default 5)")
    p.add_argument("--variants", type=int, default=4, help="augmentation variants per training image (default 4)")
    p.add_argument(
        "--generator-mode",
        choices=CHOICES["generator_mode"],
        default="latent",
        help="generator kind, as train-generator --mode (default latent: the shipped prior conditioned on the k pairs)",
    )
    p.add_argument("--generator-epochs", type=int, help="generator epochs (default: train-generator's)")
    p.add_argument("--generator-iterations", type=int, help="generator iterations per epoch (default: train-generator's)")
    p.add_argument("--synthesis-steps", type=int, help="DDIM steps per synthetic pair (default: synthesize's)")
    p.set_defaults(func=_experiment)


_SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_prepare,
    _add_split,
    _add_phantom,
    _add_download,
    _add_finetune,
    _add_evaluate,
    _add_segment,
    _add_train_generator,
    _add_synthesize,
    _add_synth_report,
    _add_demo,
    _add_experiment,
)


# output folder, input files or folders, input cohorts of the commands whose function does not check them itself
_OUTPUT_AND_INPUTS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "finetune": ("out", ("sam_checkpoint", "unlabelled_protocol"), ("data", "synthetic", "unlabelled")),
    "evaluate": ("out", ("checkpoint", "split"), ("data",)),
    "train-generator": ("out", (), ("data",)),
    "synthesize": ("out", ("generator", "masks"), ()),
    "synth-report": ("out", (), ("real", "synthetic")),
    "demo": ("out", (), ("data",)),
    "experiment": ("out", (), ("data", "test")),
}


def _check_output(args: argparse.Namespace) -> None:
    """Refuse an output folder that is a file or overlaps an input (:func:`monai_fetal.staging.check_no_overlap`)."""
    from pathlib import Path

    from monai_fetal.errors import InputDataError
    from monai_fetal.staging import check_no_overlap

    if args.command not in _OUTPUT_AND_INPUTS:
        return
    out_key, input_keys, cohort_keys = _OUTPUT_AND_INPUTS[args.command]

    def given(keys: tuple[str, ...]) -> list[str]:
        values = [getattr(args, key) for key in keys]
        return [v for value in values for v in (value if isinstance(value, list) else [value]) if v]

    out = Path(getattr(args, out_key))
    if out.exists() and not out.is_dir():
        raise InputDataError(out, "is a file, not a folder", "give a folder path for --out, or move that file away")
    check_no_overlap(out, given(input_keys), cohorts=given(cohort_keys))


class _UsageError(Exception):
    """A command line that does not parse (an unknown option, a value not among the choices)."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one paragraph that ``main`` prints with exit status 2, as every user error."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: error: {message} ({self.prog} --help lists the options)")


def build_parser() -> argparse.ArgumentParser:
    """The ``monai-fetal`` argument parser with all sub-commands."""
    parser = _Parser(prog="monai-fetal", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``monai-fetal``; user errors (bad input, a full disk) print one paragraph and return 2, Ctrl-C one line
    and 130."""
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as err:
        print(err, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        _check_output(args)
        args.func(args)
    except KeyboardInterrupt:
        print(f"monai-fetal {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        user_error = user_error_in(err)
        if user_error is None:
            raise
        print(f"monai-fetal {args.command}: error: {user_error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
