"""Typed entry points of the bundle workflows: the only callers of :func:`~monai_fetal.bundles.run_bundle`.

The CLI, the study, the benchmarks and the tutorials call these. An argument left at ``None`` keeps the
bundle config's own default, so each default lives in one place: the config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from monai_fetal.bundles import EVALUATE_CONFIGS, GENERATOR_CONFIGS, read_bundle_config, run_bundle
from monai_fetal.config_checks import CHOICES, check_choice
from monai_fetal.engines.segment import MEASUREMENTS_NAME
from monai_fetal.errors import ConfigError

__all__ = ["GENERATOR_MODES", "evaluate_sam", "finetune_sam", "segment_images", "synth_report", "synthesize_pairs", "train_generator"]

GENERATOR_MODES = CHOICES["generator_mode"]
"""Generator kinds: ``latent`` (few-shot conditioning of the shipped prior, the default) and the pixel-space modes."""


def _given(overrides: Mapping[str, object]) -> dict[str, object]:
    """The overrides that were given (``None``: keep the config's default); paths become strings."""
    return {key: str(value) if isinstance(value, Path) else value for key, value in overrides.items() if value is not None}


def finetune_sam(
    data: str | Path,
    out: str | Path,
    shots: int | None = None,
    seed: int | None = None,
    val_images: int | None = None,
    epochs: int | None = None,
    model_name: str | None = None,
    sam_checkpoint: str | Path | None = None,
    trainable: str | None = None,
    augmentation: str | None = None,
    augmentation_variants: int | None = None,
    synthetic_dir: str | Path | None = None,
    synthetic_ratio: float | None = None,
    split_file: str | Path | None = None,
    embedding_cache_dir: str | Path | None = None,
    unlabelled: str | Path | None = None,
    unlabelled_protocol: str | Path | None = None,
) -> Path:
    """Fine-tune SAM (``fetal_head_sam/configs/train.json``) on ``shots`` real images of ``data``; the path of ``out/model.pt``.

    ``data`` is a cohort or HC18 folder; ``synthetic_dir`` a cohort of pairs mixed in at ``synthetic_ratio``
    per real image (-1: all); ``split_file`` a split to use instead of drawing one; ``sam_checkpoint`` the
    SAM weights to start from (required for ``vit_b``/``vit_l``/``vit_h``). ``unlabelled`` (default: the
    cohort's ``unlabelled/`` folder when it has one) holds images without masks that self-train the head
    locator after the supervised run (:class:`~monai_fetal.engines.LocatorSelfTraining`); with
    ``unlabelled_protocol``, only the protocol's ``unlabelled_pool`` images of that folder are read.
    """
    overrides = {
        "dataset_dir": data,
        "output_dir": out,
        "shots": shots,
        "seed": seed,
        "val_images": val_images,
        "max_epochs": epochs,
        "model_name": model_name,
        "pretrained_checkpoint": sam_checkpoint,
        "trainable": trainable,
        "augmentation": augmentation,
        "augmentation_variants": augmentation_variants,
        "synthetic_dir": synthetic_dir,
        "synthetic_ratio": synthetic_ratio,
        "split_file": split_file,
        "embedding_cache_dir": embedding_cache_dir,
        "unlabelled_dir": unlabelled,
        "unlabelled_protocol": unlabelled_protocol,
    }
    run_bundle("fetal_head_sam", "train.json", _given(overrides))
    return Path(out) / "model.pt"


def evaluate_sam(
    data: str | Path,
    out: str | Path,
    checkpoint: str | Path | None = None,
    prompt: str | None = None,
    model_name: str | None = None,
    split_file: str | Path | None = None,
    split_key: str | None = None,
    precision: str | None = None,
    embedding_cache_dir: str | Path | None = None,
    effort: str | None = None,
) -> Path:
    """Score a SAM model (``evaluate.json`` over ``inference.json``) on ``data`` (the ``split_key`` part of ``split_file`` when given); the path of ``out/metrics.json``.

    ``prompt`` is ``gt_box`` (the config's default) or ``auto`` (no box); ``checkpoint`` ``None`` scores the pretrained model.
    ``effort`` is the no-box path's, as in :func:`segment_images`.
    """
    overrides = {
        "dataset_dir": data,
        "output_dir": out,
        "checkpoint": checkpoint,
        "prompt": prompt,
        "model_name": model_name,
        "split_file": split_file,
        "split_key": split_key,
        "precision": precision,
        "embedding_cache_dir": embedding_cache_dir,
        "effort": effort,
    }
    run_bundle("fetal_head_sam", EVALUATE_CONFIGS, _given(overrides))
    return Path(out) / "metrics.json"


def segment_images(
    images: Sequence[str | Path],
    out: str | Path,
    checkpoint: str | Path | None = None,
    model_name: str | None = None,
    boxes: Mapping[str, Sequence[float]] | None = None,
    spacing: float | None = None,
    overlay: bool = False,
    overwrite: bool = False,
    precision: str | None = None,
    effort: str | None = None,
) -> Path:
    """Segment and measure ``images`` (files, folders, cohort or HC18 folders) into ``out``; the path of ``measurements.csv``.

    Runs the ``fetal_head_sam`` bundle's ``inference.json``, which ``evaluate.json`` overlays: the same reading,
    inferer and postprocessing. See :func:`~monai_fetal.engines.segment.plan_segmentation` for ``boxes`` and ``spacing``.
    ``effort`` ``"fast"`` skips the no-box path's rescue, sub-box search and zoom (the bundle's ``effort`` id).

    Raises:
        InputDataError: bad input (named, with the fix) before any output is written, or outputs that exist
            without ``overwrite``.
    """
    overrides = {
        "images": [str(p) for p in images],
        "boxes": dict(boxes or {}),
        "spacing": spacing,
        "output_dir": out,
        "model_name": model_name,
        "overlay": overlay,
        "overwrite": overwrite,
        "checkpoint": checkpoint,
        "precision": precision,
        "effort": effort,
    }
    run_bundle("fetal_head_sam", "inference.json", _given(overrides))
    return Path(out) / MEASUREMENTS_NAME


def train_generator(
    data: str | Path,
    out: str | Path,
    mode: str = "latent",
    prior: str | Path | None = None,
    preset: str | None = None,
    epochs: int | None = None,
    epoch_length: int | None = None,
    sample_steps: int | None = None,
    seed: int | None = None,
    conditioning: str | None = None,
) -> Path:
    """Train the mask-conditioned generator on the labelled pairs of ``data`` into ``out`` (resumable); its weights' path.

    ``latent`` (the default) conditions the shipped in-domain prior (or ``prior``, a folder from
    ``train_prior.json``) on the masks by ``conditioning`` (``low_rank`` adapters, the config's default;
    ``fine_tune``; a ``controlnet``: :mod:`monai_fetal.networks.latent_conditioning`) and writes ``out/unet.pt``;
    a folder trained by another route is refused by name. ``concat``, ``controlnet`` and ``joint``
    train a pixel-space generator (``train.json``; ``controlnet`` trains its base UNet first with
    ``train_controlnet.json`` over it) and write ``out/model.pt``. The configs of each mode: :data:`GENERATOR_CONFIGS`.

    Raises:
        ConfigError: an unknown ``mode``, or ``prior`` or ``conditioning`` with a pixel-space mode.
    """
    check_choice("mode", mode, GENERATOR_MODES)
    overrides = {
        "dataset_dir": data,
        "output_dir": out,
        "preset": preset,
        "max_epochs": epochs,
        "epoch_length": epoch_length,
        "sample_steps": sample_steps,
        "seed": seed,
    }
    if mode == "latent":
        overrides["prior_dir"] = prior
        overrides["conditioning"] = conditioning
    elif prior is not None or conditioning is not None:
        name, value = ("prior", prior) if prior is not None else ("conditioning", conditioning)
        raise ConfigError(name, value, "used with mode 'latent' only")
    else:
        overrides["mode"] = mode
    run_bundle("fetal_us_diffusion", GENERATOR_CONFIGS[mode], _given(overrides))
    return Path(out) / ("unet.pt" if mode == "latent" else "model.pt")


def synthesize_pairs(
    generator: str | Path,
    out: str | Path,
    count: int,
    steps: int | None = None,
    sampler: str | None = None,
    guidance: float | None = None,
    seed: int | None = None,
    size: Sequence[int] | None = None,
    masks: str | Path | None = None,
    mask_affine: bool | None = None,
    batch_size: int | None = None,
    overwrite: bool | None = None,
    texture: bool | None = None,
    x0_clip: float | None = None,
) -> Path:
    """Sample ``count`` image-mask pairs with the generator folder ``generator`` into the cohort folder ``out``; its datalist's path.

    Masks come from the shape prior, or from ``masks`` (moved by a random affine with ``mask_affine``);
    ``size`` is the output's rows and columns (default: the real images'). A rerun completes the set;
    ``overwrite`` replaces a set that ``synthesize`` wrote in ``out`` with other options
    (:class:`~monai_fetal.engines.synthesis.PairSynthesizer`); ``texture`` ``False`` leaves out the generator's
    speckle texture (:mod:`monai_fetal.networks.speckle`); ``x0_clip`` bounds the predicted clean sample
    (0: none; default: the generator kind's, :func:`~monai_fetal.engines.synthesis.load_synthesis_generator`).
    """
    overrides = {
        "generator_dir": generator,
        "output_dir": out,
        "num_samples": count,
        "steps": steps,
        "sampler": sampler,
        "guidance": guidance,
        "x0_clip": x0_clip,
        "seed": seed,
        "output_size": list(size) if size is not None else None,
        "mask_dir": masks,
        "mask_affine": mask_affine,
        "batch_size": batch_size,
        "overwrite": overwrite,
        "texture": texture,
    }
    run_bundle("fetal_us_diffusion", "inference.json", _given(overrides))
    return Path(out) / "datalist.json"


def synth_report(
    real: str | Path,
    synthetic: str | Path,
    out: str | Path,
    model_name: str | None = None,
    max_real: int | None = 200,
    seed: int = 0,
    training_images: Sequence[str | Path] = (),
) -> dict:
    """Score the synthetic cohort ``synthetic`` against the real cohort ``real`` into ``out``; the report.

    :func:`monai_fetal.metrics.synth_report.synth_report` with SAM ``model_name`` (default LiteMedSAM, torch)
    and the SAM bundle's evaluation preprocessing (``evaluate.json`` over ``inference.json``, prompt
    ``gt_box``): pair consistency frames each image and draws its box as ``evaluate`` does.
    """
    from monai_fetal.metrics.synth_report import synth_report as score
    from monai_fetal.networks import build_prompted_sam

    network = build_prompted_sam(model_name or "lite_medsam")
    config = read_bundle_config("fetal_head_sam", EVALUATE_CONFIGS, {"frame_size": network.frame_size, "prompt": "gt_box"})
    preprocessing = config.get_parsed_content("preprocessing")
    return score(network, preprocessing, real, synthetic, out, max_real=max_real, seed=seed, training_images=training_images)
