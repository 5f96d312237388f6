"""The bundle runs of the study, each a function of plain arguments: generator, synthesis, SAM fine-tune, evaluation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from monai_fetal.bundles import run_bundle

__all__ = ["PROMPTS", "GeneratorOptions", "SamOptions", "evaluate_sam", "finetune_sam", "synthesize", "train_generator"]

PROMPTS = ("gt_box", "auto")
"""The prompts every study model is evaluated with: the ground-truth box and none (automatic)."""


@dataclass(frozen=True)
class GeneratorOptions:
    """Diffusion generator training (``cpu`` preset) and sampling sizes."""

    epochs: int = 3
    iterations: int = 50
    sample_steps: int = 20
    synthesis_steps: int = 20


@dataclass(frozen=True)
class SamOptions:
    """SAM fine-tuning sizes: epochs, fixed augmentation variants per image, validation images."""

    epochs: int = 5
    variants: int = 4
    val: int = 5


def train_generator(cohort: Path, out: Path, options: GeneratorOptions, seed: int) -> str:
    """Train the pixel-space mask-conditioned generator on ``cohort`` into ``out``; return ``out/model.pt``."""
    run_bundle(
        "fetal_us_diffusion",
        "train.json",
        {
            "dataset_dir": str(cohort),
            "output_dir": str(out),
            "preset": "cpu",
            "max_epochs": options.epochs,
            "epoch_length": options.iterations,
            "sample_steps": options.sample_steps,
            "seed": seed,
        },
    )
    return str(out / "model.pt")


def synthesize(generator: Path, out: Path, count: int, options: GeneratorOptions, seed: int) -> str:
    """Sample ``count`` image-mask pairs from the generator folder into the cohort folder ``out``."""
    run_bundle(
        "fetal_us_diffusion",
        "inference.json",
        {
            "generator_dir": str(generator),
            "output_dir": str(out),
            "num_samples": count,
            "steps": options.synthesis_steps,
            "seed": seed,
        },
    )
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
    run_bundle(
        "fetal_head_sam",
        "train.json",
        {
            "dataset_dir": str(cohort),
            "output_dir": str(out),
            "split_file": str(split_file),
            "shots": shots,
            "seed": seed,
            "val_images": len(split["validation"]),
            "max_epochs": options.epochs,
            "augmentation_variants": options.variants,
            "synthetic_dir": str(synthetic_dir) if use_synthetic else "",
            "synthetic_ratio": synthetic_count / shots if use_synthetic else 0.0,
            "embedding_cache_dir": str(cache_dir),
        },
    )
    return str(out / "model.pt")


def evaluate_sam(
    cohort: Path, out: Path, checkpoint: Path | None, prompt: str, cache_dir: Path, split_file: Path | None = None
) -> dict:
    """Evaluate a SAM model on ``cohort`` (the split's test part when ``split_file``); return ``metrics.json``."""
    run_bundle(
        "fetal_head_sam",
        "evaluate.json",
        {
            "dataset_dir": str(cohort),
            "output_dir": str(out),
            "checkpoint": str(checkpoint) if checkpoint else None,
            "prompt": prompt,
            "split_file": str(split_file) if split_file else None,
            "split_key": "test",
            "embedding_cache_dir": str(cache_dir),
        },
    )
    return json.loads((out / "metrics.json").read_text())
