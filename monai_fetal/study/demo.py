"""``monai-fetal demo``: the whole path on one cohort in one run, ending in ``report.md``.

Stages (each skipped when a rerun finds it done): the cohort (the 30 HC18 images that ship with the
package, ``--data phantom`` for the procedural phantom, or ``--data`` prepared), a k-shot split, the
shipped in-domain prior conditioned on the k real pairs, synthetic pairs, LiteMedSAM
fine-tuned on real only and on real + synthetic, both evaluated on the split's test images with the
ground-truth box and the automatic prompt; then the report, written afresh on every run.
All SAM runs share one embedding cache.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from monai_fetal.data.demo_set import demo_hc18_folder
from monai_fetal.data.phantom import make_phantom_cohort
from monai_fetal.data.splits import write_split
from monai_fetal.study.cohorts import prepared_cohort, split_part_cohort
from monai_fetal.study.report import DemoResults, write_demo_report
from monai_fetal.study.runs import (
    PROMPTS,
    GeneratorOptions,
    SamOptions,
    evaluate_sam,
    finetune_sam,
    synthesize,
    train_generator,
)
from monai_fetal.study.stages import Stages

__all__ = ["DEFAULT", "MODELS", "PHANTOM", "QUICK", "DemoSettings", "run_demo"]

logger = logging.getLogger(__name__)

MODELS = ("real", "real+synthetic")
PHANTOM = "phantom"
"""``--data`` value that runs the demo on the procedural phantom instead of the packaged HC18 images."""


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of a demo run (the phantom's size and count apply only with ``--data phantom``)."""

    phantom_images: int
    phantom_size: tuple[int, int]
    shots: int
    test: int
    synthetic: int
    generator: GeneratorOptions
    sam: SamOptions
    seed: int = 0


QUICK = DemoSettings(
    phantom_images=24,
    phantom_size=(272, 400),
    shots=3,
    test=8,
    synthetic=8,
    generator=GeneratorOptions(epochs=2, iterations=10, sample_steps=5, synthesis_steps=10),
    sam=SamOptions(epochs=2, variants=2, val=4),
)
"""Within 5 minutes on 2 CPU cores (see docs/results.md)."""

DEFAULT = DemoSettings(
    phantom_images=40,
    phantom_size=(540, 800),
    shots=5,
    test=20,
    synthetic=40,
    generator=GeneratorOptions(epochs=8, iterations=50, sample_steps=20, synthesis_steps=10),
    sam=SamOptions(epochs=6, variants=4, val=5),
)
"""Within 20 minutes on 2 CPU cores; the 30 packaged images are exactly its 5 + 5 + 20."""


def _source(data: str | Path | None, settings: DemoSettings) -> str:
    """What the demo ran on, in words, for its report."""
    if data is None:
        return f"the {len(list((demo_hc18_folder() / 'images').iterdir()))} real HC18 images packaged with monai-fetal (CC BY 4.0)"
    if str(data) == PHANTOM:
        rows, cols = settings.phantom_size
        return f"procedural phantom, {settings.phantom_images} images of {rows} x {cols} px (seed {settings.seed})"
    return str(data)


def _cohort(out: Path, data: str | Path | None, settings: DemoSettings) -> str:
    if str(data) == PHANTOM:
        folder = out / "cohort"
        make_phantom_cohort(folder, settings.phantom_images, seed=settings.seed, size=settings.phantom_size)
        return str(folder)
    return str(prepared_cohort(demo_hc18_folder() if data is None else data, out / "cohorts"))


def run_demo(out: str | Path, data: str | Path | None = None, settings: DemoSettings = DEFAULT) -> Path:
    """Run the demo into ``out`` (on ``data``; ``None``: the packaged HC18 images; ``"phantom"``: the procedural phantom); ``out/report.md``.

    Raises:
        ConfigError: the cohort is too small for the split (the message says how many it allows).
        InputDataError: an unreadable ``data`` folder.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stages = Stages(out, logger)
    seed = settings.seed
    cache = out / "embedding_cache"
    cohort = Path(stages.run("cohort", lambda: _cohort(out, data, settings)).value)
    split_file = out / "split.json"
    stages.run("split", lambda: str(write_split(cohort, settings.shots, seed, settings.sam.val, settings.test, split_file)))
    generator, synthetic = out / "generator", out / "synthetic"
    stages.run(
        "train_generator",
        lambda: train_generator(
            split_part_cohort(cohort, split_file, out / "generator_data"), generator, settings.generator, seed
        ),
    )
    stages.run("synthesize", lambda: synthesize(generator, synthetic, settings.synthetic, settings.generator, seed))
    models = {
        "real": stages.run(
            "finetune_real", lambda: finetune_sam(cohort, split_file, out / "sam_real", settings.sam, seed, cache)
        ).value,
        "real+synthetic": stages.run(
            "finetune_real_synthetic",
            lambda: finetune_sam(
                cohort, split_file, out / "sam_real_synthetic", settings.sam, seed, cache, synthetic, settings.synthetic
            ),
        ).value,
    }
    evaluations = {}
    for model, checkpoint in models.items():
        for prompt in PROMPTS:
            folder = out / "eval" / f"{model.replace('+', '_')}_{prompt}"
            stages.run(
                f"evaluate_{model.replace('+', '_')}_{prompt}",
                partial(evaluate_sam, cohort, folder, Path(checkpoint), prompt, cache, split_file),
            )
            evaluations[(model, prompt)] = folder
    results = DemoResults(
        out=out,
        cohort=cohort,
        synthetic=synthetic,
        generator=generator,
        evaluations=evaluations,
        settings=asdict(settings),
        source=_source(data, settings),
    )
    start = time.perf_counter()
    report = write_demo_report(results, stages.results)
    logger.info("stage report: written in %.1f s: %s", time.perf_counter() - start, report)
    return report
