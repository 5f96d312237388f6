"""The study's bundle runs with its sizes (generator, synthesis, SAM fine-tune, evaluation), through :mod:`monai_fetal.jobs`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from monai_fetal import jobs
from monai_fetal.config_checks import CHOICES

__all__ = ["PROMPTS", "GeneratorOptions", "SamOptions", "evaluate_sam", "finetune_sam", "synthesize", "train_generator"]

PROMPTS = CHOICES["prompt"]
"""The prompts every study model is evaluated with: the ground-truth box and none (automatic)."""


@dataclass(frozen=True)
class GeneratorOptions:
    """Diffusion generator training and sampling sizes; ``None`` keeps the bundle config's default.

    ``mode`` is the generator kind (:data:`monai_fetal.jobs.GENERATOR_MODES`): ``latent`` (the default,
    the path of ``monai-fetal train-generator``), the shipped in-domain prior conditioned on the pairs
    for ``epochs`` x ``iterations`` steps; or a pixel-space generator trained from scratch on the pairs
    (``concat``, ``controlnet``, ``joint``; the ``cpu`` preset).
    """

    epochs: int | None = None
    iterations: int | None = None
    sample_steps: int | None = None
    synthesis_steps: int | None = None
    mode: str = "latent"


@dataclass(frozen=True)
class SamOptions:
    """SAM fine-tuning sizes: epochs, fixed augmentation variants per image, validation images."""

    epochs: int = 5
    variants: int = 4
    val: int = 5


def train_generator(cohort: Path, out: Path, options: GeneratorOptions, seed: int) -> str:
    """Train the mask-conditioned generator of ``options.mode`` on ``cohort`` into ``out``; return its weights' path."""
    weights = jobs.train_generator(
        cohort,
        out,
        mode=options.mode,
        preset=None if options.mode == "latent" else "cpu",
        epochs=options.epochs,
        epoch_length=options.iterations,
        sample_steps=options.sample_steps,
        seed=seed,
    )
    return str(weights)


def synthesize(generator: Path, out: Path, count: int, options: GeneratorOptions, seed: int) -> str:
    """Sample ``count`` image-mask pairs from the generator folder into the cohort folder ``out``."""
    jobs.synthesize_pairs(generator, out, count, steps=options.synthesis_steps, seed=seed)
    return str(out)


def finetune_sam(
    cohort: Path,
    split_file: Path,
    out: Path,
    options: SamOptions,
    seed: int,
    cache_dir: Path,
    synthetic_dir: Path | None = None,
    synthetic_count: int = 0,
) -> str:
    """Fine-tune LiteMedSAM on the split's training images plus ``synthetic_count`` pairs of ``synthetic_dir``.

    Returns the path of the best model (``out/model.pt``).
    """
    split = json.loads(split_file.read_text())
    shots = len(split["training"])
    use_synthetic = synthetic_dir is not None and synthetic_count > 0
    model = jobs.finetune_sam(
        cohort,
        out,
        shots=shots,
        seed=seed,
        val_images=len(split["validation"]),
        epochs=options.epochs,
        augmentation_variants=options.variants,
        synthetic_dir=synthetic_dir if use_synthetic else "",
        synthetic_ratio=synthetic_count / shots if use_synthetic else 0.0,
        split_file=split_file,
        embedding_cache_dir=cache_dir,
    )
    return str(model)


def evaluate_sam(
    cohort: Path, out: Path, checkpoint: Path | None, prompt: str, cache_dir: Path, split_file: Path | None = None
) -> dict:
    """Evaluate a SAM model on ``cohort`` (the split's test part when ``split_file``); return ``metrics.json``."""
    metrics = jobs.evaluate_sam(
        cohort,
        out,
        checkpoint=checkpoint,
        prompt=prompt,
        split_file=split_file,
        split_key="test" if split_file else None,
        embedding_cache_dir=cache_dir,
    )
    return json.loads(metrics.read_text())
