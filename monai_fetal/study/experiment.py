"""``monai-fetal experiment``: the few-shot grid (real shots x synthetic count x seed), resumable.

For each seed and real count k, the k-shot split's training images train one generator, which
synthesises the largest synthetic count once; each synthetic count then fine-tunes LiteMedSAM on the
k real images plus that many synthetic pairs, and the model is evaluated on every test cohort with
every prompt. ``k = 0`` is the pretrained model, evaluated as it is (no fine-tune, no synthetic
pairs): the zero-shot baseline rows. A test cohort that holds the training cohort's images is
evaluated on the split's ``test`` part, the same images for every k (disjoint from training and
validation patients); another test cohort is evaluated on its images of patients that the training
cohort does not hold (by patient id: HC18 ``014_HC`` and ``014_2HC`` are one patient). Rows already
in ``results.csv`` are not redone; finished generators, syntheses and fine-tunes are not redone either.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from monai_fetal.atomic import write_json_atomic, write_text_atomic
from monai_fetal.data.splits import write_split
from monai_fetal.errors import ConfigError
from monai_fetal.study.cohorts import (
    cohort_name,
    items_without_patients,
    prepared_cohort,
    same_source,
    shared_patients,
    split_part_cohort,
)
from monai_fetal.study.figures import save_dice_vs_shots
from monai_fetal.study.results import (
    metrics_row,
    read_results,
    results_markdown,
    row_key,
    write_results,
)
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

__all__ = ["FIGURE_NAME", "RESULTS_NAME", "TABLE_NAME", "ExperimentPlan", "TestCohort", "run_experiment"]

logger = logging.getLogger(__name__)

RESULTS_NAME = "results.csv"
FIGURE_NAME = "dice_vs_shots.png"
TABLE_NAME = "results.md"


@dataclass(frozen=True)
class TestCohort:
    """A prepared test cohort.

    ``use_split`` when it holds the training cohort's images (test on each k-shot split's test part);
    else ``split_file`` lists its images of patients not in the training cohort (None: no patient shared).
    """

    name: str
    folder: Path
    use_split: bool
    split_file: Path | None = None


@dataclass(frozen=True)
class ExperimentPlan:
    """What ``monai-fetal experiment`` runs.

    Args:
        data: training cohort (HC18 folder or cohort folder).
        tests: test cohorts; one that is ``data`` is tested on images disjoint from training and validation,
            another one on its images of patients that ``data`` does not hold.
        shots, synthetic, seeds: the grid (real images, synthetic pairs added, seeds); shots 0 is the
            pretrained model without fine-tuning (its rows have synthetic 0 only).
        out: the experiment folder.
        prompts: evaluation prompts (``gt_box``, ``auto``).
        test_images: test images held out of ``data`` when it is also a test cohort.
        sam, generator: training sizes.
    """

    data: Path
    tests: tuple[Path, ...]
    shots: tuple[int, ...]
    synthetic: tuple[int, ...]
    seeds: tuple[int, ...]
    out: Path
    prompts: tuple[str, ...] = PROMPTS
    test_images: int = 20
    sam: SamOptions = field(default_factory=SamOptions)
    generator: GeneratorOptions = field(default_factory=GeneratorOptions)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad value."""
        for key, values, low in (("shots", self.shots, 0), ("synthetic", self.synthetic, 0), ("seeds", self.seeds, 0)):
            if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in values):
                raise ConfigError(key, list(values), f"a non-empty list of integers >= {low}")
        for prompt in self.prompts:
            if prompt not in PROMPTS:
                raise ConfigError("prompts", prompt, "gt_box or auto")
        if not self.tests:
            raise ConfigError("tests", [], "at least one test cohort")


def _patient_disjoint_split(plan: ExperimentPlan, name: str, folder: Path, cohort: Path) -> Path | None:
    """A split whose ``test`` part is ``folder``'s images of patients not in ``cohort``; None when none is shared.

    Raises:
        ConfigError: every patient of the test cohort is in the training cohort.
    """
    shared = shared_patients(folder, cohort)
    if not shared:
        return None
    kept = items_without_patients(folder, shared)
    if not kept:
        raise ConfigError("tests", name, f"a test cohort with patients that the training cohort {cohort_name(plan.data)} does not hold")
    logger.warning(
        "test cohort %s: %d patients are also in the training cohort (%s); it is tested on its %d images of the other patients",
        name, len(shared), ", ".join(sorted(shared)), len(kept),
    )  # fmt: skip
    path = plan.out / "splits" / f"test_{name}.json"
    write_json_atomic(path, {"training": [], "validation": [], "test": kept})
    return path


def _test_cohorts(plan: ExperimentPlan, cohort: Path) -> list[TestCohort]:
    tests = []
    for src in plan.tests:
        if Path(src).resolve() == Path(plan.data).resolve():
            folder = cohort
        else:
            folder = prepared_cohort(src, plan.out / "test_cohorts")
        if same_source(folder, cohort):
            tests.append(TestCohort(cohort_name(plan.data), cohort, True))
        else:
            name = cohort_name(src)
            tests.append(TestCohort(name, folder, False, _patient_disjoint_split(plan, name, folder, cohort)))
    names = [test.name for test in tests]
    if len(set(names)) != len(names):
        raise ConfigError("tests", names, "test cohorts with different folder names")
    return tests


def _write_splits(plan: ExperimentPlan, cohort: Path, held_out: bool) -> dict[tuple[int, int], Path]:
    """Every split of the grid, written before any training so that a bad count fails at once."""
    splits = {}
    for seed in plan.seeds:
        for shots in plan.shots:
            path = plan.out / "splits" / f"shots{shots}_seed{seed}.json"
            test = plan.test_images if held_out else 0
            splits[(shots, seed)] = write_split(cohort, shots, seed, val=plan.sam.val, test=test, out=path)
    return splits


def _synthetic_set(plan: ExperimentPlan, stages: Stages, cohort: Path, split: Path, shots: int, seed: int) -> Path:
    """The synthetic cohort of one (shots, seed): a generator trained on the k real pairs, sampled once."""
    tag = f"shots{shots}_seed{seed}"
    generator = plan.out / "generators" / tag
    synthetic = plan.out / "synthetic" / tag

    def train() -> str:
        real = split_part_cohort(cohort, split, plan.out / "generator_data" / tag)
        return train_generator(real, generator, plan.generator, seed)

    stages.run(f"generator_{tag}", train)
    stages.run(f"synthesize_{tag}", lambda: synthesize(generator, synthetic, max(plan.synthetic), plan.generator, seed))
    return synthetic


def run_experiment(plan: ExperimentPlan) -> Path:
    """Run (or complete) the experiment; return the path of ``results.csv`` (``dice_vs_shots.png``, ``results.md`` beside it).

    Raises:
        ConfigError: a bad plan, or counts the cohort cannot hold (the message says how many it can).
        InputDataError: unreadable cohorts.
    """
    plan.validate()
    out = Path(plan.out)
    out.mkdir(parents=True, exist_ok=True)
    stages = Stages(out, logger)
    cohort = prepared_cohort(plan.data, out / "cohorts")
    tests = _test_cohorts(plan, cohort)
    splits = _write_splits(plan, cohort, any(test.use_split for test in tests))
    cache = out / "embedding_cache"
    results_path = out / RESULTS_NAME
    rows = {row_key(row): row for row in read_results(results_path)}
    runs = [(seed, shots, n) for seed in plan.seeds for shots in plan.shots for n in plan.synthetic if shots or not n]
    for index, (seed, shots, n) in enumerate(runs, 1):
        keys = [(shots, n, seed, test.name, prompt) for test in tests for prompt in plan.prompts]
        missing = [key for key in keys if key not in rows]
        logger.info(
            "run %d/%d: shots=%d synthetic=%d seed=%d (%d evaluations to do)", index, len(runs), shots, n, seed, len(missing)
        )
        if not missing:
            continue
        split = splits[(shots, seed)]
        run_dir = out / "runs" / f"shots{shots}_syn{n}_seed{seed}"
        if shots == 0:
            checkpoint, tune_seconds = None, 0.0
        else:
            synthetic = _synthetic_set(plan, stages, cohort, split, shots, seed) if n > 0 else None
            tuned = stages.run(
                f"finetune_shots{shots}_syn{n}_seed{seed}",
                partial(finetune_sam, cohort, split, run_dir, plan.sam, seed, cache, synthetic, n),
            )
            checkpoint, tune_seconds = Path(tuned.value), tuned.seconds
        for test in tests:
            for prompt in plan.prompts:
                key = (shots, n, seed, test.name, prompt)
                if key in rows:
                    continue
                start = time.perf_counter()
                metrics = evaluate_sam(
                    test.folder, run_dir / f"eval_{test.name}_{prompt}", checkpoint, prompt, cache,
                    split if test.use_split else test.split_file,
                )
                rows[key] = metrics_row(key, metrics, tune_seconds + time.perf_counter() - start)
                write_results(results_path, rows.values())
                logger.info("shots=%d synthetic=%d seed=%d %s %s: Dice %.3f", *key, rows[key]["dice_mean"] or 0.0)
    planned = [row for key, row in rows.items() if key[:3] in {(shots, n, seed) for seed, shots, n in runs}]
    save_dice_vs_shots(planned, out / FIGURE_NAME)
    write_text_atomic(out / TABLE_NAME, results_markdown(planned))
    return results_path
