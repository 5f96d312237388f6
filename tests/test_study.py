"""The study package: skip-if-done stages, results table, figures, k-shot subset cohorts, the experiment grid
(resume, generators once per seed and shots, held-out test images, the pretrained baseline, test cohorts
by patient), the demo's orchestration with stand-ins, and README's first command for real (``--quick``)."""

from __future__ import annotations

import csv

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from monai_fetal.data.cohort import read_filled_masks
from monai_fetal.data.phantom import make_phantom_cohort
from monai_fetal.data.splits import write_split
from monai_fetal.errors import ConfigError
from monai_fetal.shape.prior import EllipseShapePrior
from monai_fetal.study import experiment as experiment_module
from monai_fetal.study.cohorts import split_part_cohort
from monai_fetal.study.experiment import ExperimentPlan, run_experiment
from monai_fetal.study.figures import save_dice_per_image, save_dice_vs_shots
from monai_fetal.study.results import read_results, row_key, write_results
from monai_fetal.study.runs import GeneratorOptions, SamOptions
from monai_fetal.study.stages import Stages

PNG_MAGIC = b"\x89PNG"
# README's `demo --quick`, measured 2026-11-30 (8 phantom test images): gt_box Dice 0.961 / 0.964 and HC error
# 4.68 / 4.30 mm (real / real + synthetic); auto Dice 0.677 / 0.818
GT_BOX_DICE_FLOOR = 0.94
GT_BOX_HC_MM_CEILING = 6.0
AUTO_DICE_FLOOR = 0.60


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("study") / "phantom"
    make_phantom_cohort(out, 14, seed=3, size=(128, 192), progress=False)
    return out


def test_stage_runs_once_and_a_failed_stage_runs_again(tmp_path: Path) -> None:
    calls = []
    stages = Stages(tmp_path)
    first = stages.run("a", lambda: calls.append(1) or {"x": 1})
    again = Stages(tmp_path).run("a", lambda: calls.append(2) or {"x": 2})
    assert calls == [1] and first.value == again.value == {"x": 1}
    assert not first.skipped and again.skipped and again.seconds == pytest.approx(first.seconds, abs=0.01)

    def fail() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        stages.run("b", fail)
    assert not stages.done("b") and stages.run("b", lambda: 5).value == 5


def test_results_round_trip_sorted_with_empty_cells(tmp_path: Path) -> None:
    rows = [
        {"shots": 5, "synthetic": 0, "seed": 1, "cohort": "c", "prompt": "auto", "dice_mean": 0.8, "seconds": 3.0},
        {"shots": 1, "synthetic": 50, "seed": 0, "cohort": "c", "prompt": "gt_box", "dice_mean": 0.9, "seconds": 2.5},
    ]
    back = read_results(write_results(tmp_path / "r.csv", rows))
    assert [row_key(r) for r in back] == sorted(row_key(r) for r in rows)
    assert back[0]["dice_mean"] == pytest.approx(0.9) and back[0]["hd95_mean"] is None
    assert read_results(tmp_path / "absent.csv") == []


def test_figures_are_pngs(tmp_path: Path) -> None:
    rows = [
        {"shots": k, "synthetic": n, "seed": s, "cohort": "c", "prompt": "gt_box", "dice_mean": 0.5 + 0.01 * k + 0.001 * s}
        for k in (1, 2, 5) for n in (0, 20) for s in (0, 1)
    ]
    for path in (
        save_dice_vs_shots(rows, tmp_path / "shots.png"),
        save_dice_per_image({"gt_box": {"real": {"a": 0.9, "b": 0.7}, "mixed": {"a": 0.8, "b": 0.95}}}, tmp_path / "d.png"),
    ):
        assert path.read_bytes()[:4] == PNG_MAGIC and path.stat().st_size > 5000
    with pytest.raises(ConfigError):
        save_dice_vs_shots([], tmp_path / "none.png")


def test_one_shot_part_is_completed_by_its_mirror_and_fits_a_shape_prior(phantom: Path, tmp_path: Path) -> None:
    split = write_split(phantom, 1, 0, val=2, test=3, out=tmp_path / "split.json")
    part = split_part_cohort(phantom, split, tmp_path / "part")
    items = json.loads((part / "datalist.json").read_text())["training"]
    assert len(items) == 2 and items[1]["id"] == items[0]["id"] + "_mirror"
    from monai_fetal.data.io import read_image

    original, mirror = (read_image(part / item["label"]) for item in items)
    np.testing.assert_array_equal(original[:, ::-1], mirror)
    assert EllipseShapePrior.fit(read_filled_masks(part)).count == 2
    three = split_part_cohort(phantom, write_split(phantom, 3, 0, val=2, test=3, out=tmp_path / "s3.json"), tmp_path / "p3")
    assert len(list((three / "images").iterdir())) == 3


class _FakeRuns:
    """Stands in for the bundle runs: records calls, writes what the real ones write that the grid reads."""

    def __init__(self) -> None:
        self.generators: list[Path] = []
        self.finetunes: list[tuple[int, int]] = []
        self.evaluated: list[tuple[Path, set[str]]] = []
        self.checkpoints: list[Path | None] = []

    def train_generator(self, cohort: Path, out: Path, options: GeneratorOptions, seed: int) -> str:
        self.generators.append(cohort)
        return str(out / "model.pt")

    def synthesize(self, generator: Path, out: Path, count: int, options: GeneratorOptions, seed: int) -> str:
        return str(out)

    def finetune_sam(self, cohort, split_file, out, options, seed, cache_dir, synthetic_dir=None, synthetic_count=0):
        self.finetunes.append((len(json.loads(Path(split_file).read_text())["training"]), synthetic_count))
        return str(out / "model.pt")

    def evaluate_sam(self, cohort, out, checkpoint, prompt, cache_dir, split_file=None):
        self.checkpoints.append(checkpoint)
        if split_file is not None:
            split = json.loads(Path(split_file).read_text())
            used = {item["id"] for key in ("training", "validation") for item in split[key]}
            self.evaluated.append((Path(split_file), used))
            n = len(split["test"])
        else:
            n = len(json.loads((Path(cohort) / "datalist.json").read_text())["training"])
        return {"dice_mean": 0.8, "hd95_mean": 3.0, "hc_rel_error_mean": 0.02, "n": n}


def test_experiment_grid_resumes_and_trains_one_generator_per_seed_and_shots(
    phantom: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _FakeRuns()
    for name in ("train_generator", "synthesize", "finetune_sam", "evaluate_sam"):
        monkeypatch.setattr(experiment_module, name, getattr(fake, name))
    plan = ExperimentPlan(
        data=phantom, tests=(phantom,), shots=(1, 2), synthetic=(0, 4, 8), seeds=(0, 1), out=tmp_path / "exp",
        prompts=("gt_box", "auto"), test_images=4, sam=SamOptions(val=2),
    )
    results = run_experiment(plan)
    rows = read_results(results)
    assert len(rows) == 2 * 3 * 2 * 2 and {r["n"] for r in rows} == {4}
    assert len(fake.generators) == 4 and len(fake.finetunes) == 12
    assert sorted(set(fake.finetunes)) == [(1, 0), (1, 4), (1, 8), (2, 0), (2, 4), (2, 8)]
    for split_file, used in fake.evaluated:
        test_ids = {item["id"] for item in json.loads(split_file.read_text())["test"]}
        assert not test_ids & used
    tests_by_seed = {}
    for split_file, _ in fake.evaluated:
        split = json.loads(split_file.read_text())
        tests_by_seed.setdefault(split["split"]["seed"], set()).add(tuple(i["id"] for i in split["test"]))
    assert all(len(tests) == 1 for tests in tests_by_seed.values())
    assert (tmp_path / "exp" / "dice_vs_shots.png").read_bytes()[:4] == PNG_MAGIC
    assert (tmp_path / "exp" / "results.md").read_text().count("\n| phantom |") == 24

    fresh = _FakeRuns()
    for name in ("train_generator", "synthesize", "finetune_sam", "evaluate_sam"):
        monkeypatch.setattr(experiment_module, name, getattr(fresh, name))
    run_experiment(plan)
    assert fresh.generators == fresh.finetunes == fresh.evaluated == []
    assert len(read_results(results)) == 24

    rows = [r for r in read_results(results) if not (r["shots"] == 2 and r["synthetic"] == 8 and r["seed"] == 1)]
    write_results(results, rows)
    run_experiment(plan)
    assert fresh.generators == [] and fresh.finetunes == [] and len(read_results(results)) == 24


def test_experiment_refuses_a_bad_grid(phantom: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="shots"):
        run_experiment(ExperimentPlan(phantom, (phantom,), (-1,), (0,), (0,), tmp_path / "bad"))
    with pytest.raises(ConfigError, match="shots"):
        run_experiment(ExperimentPlan(phantom, (phantom,), (12,), (0,), (0,), tmp_path / "big", test_images=4))


class _FakeDemoRuns:
    """Bundle runs of the demo that write what the report reads: a synthetic cohort, metrics and per-image Dice."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def train_generator(self, cohort: Path, out: Path, options: GeneratorOptions, seed: int) -> str:
        self.calls.append("generator")
        return str(out / "model.pt")

    def synthesize(self, generator: Path, out: Path, count: int, options: GeneratorOptions, seed: int) -> str:
        self.calls.append("synthesize")
        make_phantom_cohort(out, count, seed=9, size=(128, 192), progress=False)
        return str(out)

    def finetune_sam(self, cohort, split_file, out, options, seed, cache_dir, synthetic_dir=None, synthetic_count=0):
        self.calls.append(f"finetune {synthetic_count}")
        return str(out / "model.pt")

    def evaluate_sam(self, cohort, out, checkpoint, prompt, cache_dir, split_file=None):
        self.calls.append(f"evaluate {prompt}")
        test = json.loads(Path(split_file).read_text())["test"]
        dice = {item["id"]: 0.5 + 0.1 * k for k, item in enumerate(test)}
        write_results_like(out, dice)
        return {"dice_mean": float(np.mean(list(dice.values()))), "n": len(dice)}


def write_results_like(out: Path, dice: dict[str, float]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "per_image.csv").write_text("id,dice\n" + "".join(f"{k},{v}\n" for k, v in dice.items()))
    (out / "metrics.json").write_text(json.dumps({"dice_mean": float(np.mean(list(dice.values()))), "n": len(dice)}))


def test_demo_runs_every_stage_once_and_writes_its_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from monai_fetal.study import demo as demo_module

    settings = demo_module.DemoSettings(
        phantom_images=10, phantom_size=(128, 192), shots=2, test=4, synthetic=3,
        generator=GeneratorOptions(), sam=SamOptions(val=2),
    )
    fake = _FakeDemoRuns()
    for name in ("train_generator", "synthesize", "finetune_sam", "evaluate_sam"):
        monkeypatch.setattr(demo_module, name, getattr(fake, name))
    report = demo_module.run_demo(tmp_path / "demo", settings=settings)
    assert fake.calls == ["generator", "synthesize", "finetune 0", "finetune 3"] + ["evaluate gt_box", "evaluate auto"] * 2
    text = report.read_text()
    assert "| real+synthetic | auto | 0.650 |" in text and "| cohort |" in text
    assert "**cohort**: the 30 real HC18 images packaged with monai-fetal" in text and "phantom" not in text
    assert "the shipped in-domain prior conditioned on the 2 real pairs" in text and "from scratch" not in text
    for figure in ("pairs.png", "dice_per_image.png"):
        assert (tmp_path / "demo" / figure).read_bytes()[:4] == PNG_MAGIC
    assert len(json.loads((tmp_path / "demo" / "generator_data" / "datalist.json").read_text())["training"]) == 2

    fake.calls.clear()
    demo_module.run_demo(tmp_path / "demo", settings=settings)
    assert fake.calls == [] and "skipped (done before)" in report.read_text()


def test_packaged_demo_images_are_attributed_paired_and_patient_disjoint_from_the_protocol(shared_data: Path) -> None:
    from monai_fetal.data.demo_set import demo_hc18_folder

    folder = demo_hc18_folder()
    images = sorted(p.name for p in (folder / "images").iterdir())
    assert 5 + 5 + 20 == len(images) <= 30  # DESIGN.md: at most 30; the demo's default split uses them all
    assert sorted(p.name.replace("_Annotation", "") for p in (folder / "annotations").iterdir()) == images
    with (folder / "training_set_pixel_size_and_HC.csv").open() as handle:
        assert sorted(row["filename"] for row in csv.DictReader(handle)) == images
    patients = [name.split("_")[0] for name in images]
    assert len(set(patients)) == len(patients)
    protocol = json.loads((shared_data / "benchmark_protocol.json").read_text())
    held = {name.split("_")[0] for part in ("test", "unlabelled_pool") for name in protocol[part]["images"]}
    assert not held & set(patients)
    for name in images:  # byte-identical to the published files
        assert (folder / "images" / name).read_bytes() == (shared_data / "hc18_subset" / "images" / name).read_bytes()
    assert "CC BY 4.0" in (folder / "LICENSE.txt").read_text()


def _fake_experiment_runs(monkeypatch: pytest.MonkeyPatch) -> _FakeRuns:
    fake = _FakeRuns()
    for name in ("train_generator", "synthesize", "finetune_sam", "evaluate_sam"):
        monkeypatch.setattr(experiment_module, name, getattr(fake, name))
    return fake


def test_zero_shots_evaluates_the_pretrained_model_on_the_same_test_images(
    phantom: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _fake_experiment_runs(monkeypatch)
    plan = ExperimentPlan(
        data=phantom, tests=(phantom,), shots=(0, 2), synthetic=(0, 4), seeds=(0,), out=tmp_path / "exp",
        prompts=("gt_box",), test_images=4, sam=SamOptions(val=2),
    )
    rows = read_results(run_experiment(plan))
    assert [(r["shots"], r["synthetic"]) for r in rows] == [(0, 0), (2, 0), (2, 4)]  # no synthetic pairs without shots
    assert fake.finetunes == [(2, 0), (2, 4)] and len(fake.generators) == 1
    assert fake.checkpoints[0] is None and all(c is not None for c in fake.checkpoints[1:])
    zero, two = (json.loads(path.read_text()) for path, _ in fake.evaluated[:2])
    assert zero["training"] == [] and zero["test"] == two["test"] and len(zero["test"]) == 4
    assert "| phantom | gt_box | 0 | 0 |" in (tmp_path / "exp" / "results.md").read_text()
    assert (tmp_path / "exp" / "dice_vs_shots.png").read_bytes()[:4] == PNG_MAGIC


def _renamed_cohort(phantom: Path, out: Path, ids: list[str]) -> Path:
    """A cohort folder (``images/``, ``masks/``) of the phantom's first pairs saved under ``ids``."""
    for folder in ("images", "masks"):
        (out / folder).mkdir(parents=True)
    for source, case in zip(sorted((phantom / "images").glob("*.png")), ids):
        shutil.copy(source, out / "images" / f"{case}.png")
        shutil.copy(phantom / "masks" / source.name, out / "masks" / f"{case}.png")
    return out


def test_experiment_tests_another_cohort_on_all_its_images(
    phantom: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = _renamed_cohort(phantom, tmp_path / "other", [f"{k:03d}_HC" for k in range(500, 505)])
    fake = _fake_experiment_runs(monkeypatch)
    plan = ExperimentPlan(
        data=phantom, tests=(other,), shots=(2,), synthetic=(0,), seeds=(0,), out=tmp_path / "exp",
        prompts=("gt_box",), sam=SamOptions(val=2),
    )
    rows = read_results(run_experiment(plan))
    assert [(r["cohort"], r["n"]) for r in rows] == [("other", 5)]
    assert fake.generators == [] and fake.evaluated == []


def test_a_test_cohort_is_scored_without_the_patients_of_the_training_cohort(
    phantom: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By patient id, not by folder: HC18 ``001_2HC`` is patient ``001``, as ``001_HC`` (as hc18_train and hc18_subset share 6)."""
    train = _renamed_cohort(phantom, tmp_path / "train", [f"{k:03d}_HC" for k in range(1, 9)])
    other = _renamed_cohort(phantom, tmp_path / "other", ["001_2HC", "002_3HC", "500_HC", "501_HC", "502_HC"])
    fake = _fake_experiment_runs(monkeypatch)
    plan = ExperimentPlan(
        data=train, tests=(other,), shots=(2,), synthetic=(0,), seeds=(0,), out=tmp_path / "exp",
        prompts=("gt_box",), sam=SamOptions(val=2),
    )
    rows = read_results(run_experiment(plan))
    assert [(r["cohort"], r["n"]) for r in rows] == [("other", 3)]
    [(split_file, _)] = fake.evaluated
    assert sorted(item["id"] for item in json.loads(split_file.read_text())["test"]) == ["500_HC", "501_HC", "502_HC"]

    shared = _renamed_cohort(phantom, tmp_path / "shared", ["001_2HC", "002_2HC"])
    with pytest.raises(ConfigError, match="does not hold"):
        run_experiment(ExperimentPlan(train, (shared,), (2,), (0,), (0,), tmp_path / "exp2", sam=SamOptions(val=2)))


def test_a_copy_of_the_training_cohort_is_tested_on_the_split_test_part(
    phantom: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(phantom, copy)
    fake = _fake_experiment_runs(monkeypatch)
    plan = ExperimentPlan(
        data=phantom, tests=(copy,), shots=(2,), synthetic=(0,), seeds=(0,), out=tmp_path / "exp",
        prompts=("gt_box",), test_images=4, sam=SamOptions(val=2),
    )
    rows = read_results(run_experiment(plan))
    assert [(r["cohort"], r["n"]) for r in rows] == [("phantom", 4)]
    [(split_file, used)] = fake.evaluated
    assert not {item["id"] for item in json.loads(split_file.read_text())["test"]} & used


def _report_rows(report: str) -> dict[tuple[str, str], list[float]]:
    """``{(model, prompt): [Dice mean, Dice median, HD95, HC rel. error, HC abs. error mm, images]}`` of report.md."""
    rows = re.findall(r"^\| (real|real\+synthetic) \| (gt_box|auto) \| (.+) \|$", report, flags=re.MULTILINE)
    return {(model, prompt): [float(cell) for cell in cells.split(" | ")] for model, prompt, cells in rows}


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_readme_first_command_quick_runs_the_real_bundles_end_to_end(tmp_path: Path) -> None:
    """``monai-fetal demo --out DIR --quick`` on the embedded default: real generator, synthesis, SAM fine-tunes."""
    out = tmp_path / "demo"
    command = [sys.executable, "-m", "monai_fetal.cli", "demo", "--out", str(out), "--quick"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1100, check=False, env={**os.environ, "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"report written: {out / 'report.md'}" in done.stdout
    rows = _report_rows((out / "report.md").read_text())
    assert sorted(rows) == [(m, p) for m in ("real", "real+synthetic") for p in ("auto", "gt_box")]
    for (model, prompt), (dice, median, hd95, hc_rel, hc_mm, images) in rows.items():
        assert images == 8
        if prompt == "gt_box":
            assert dice >= GT_BOX_DICE_FLOOR and hc_mm <= GT_BOX_HC_MM_CEILING, (model, dice, hc_mm)
        else:
            assert dice >= AUTO_DICE_FLOOR, (model, dice)
    assert len(json.loads((out / "synthetic" / "datalist.json").read_text())["training"]) == 8
    assert (out / "generator" / "unet.pt").is_file() and (out / "sam_real_synthetic" / "model.pt").is_file()
    assert len(json.loads((out / "cohorts" / "hc18_demo" / "datalist.json").read_text())["training"]) == 30  # real images
    for figure in ("pairs.png", "dice_per_image.png"):
        assert (out / figure).read_bytes()[:4] == PNG_MAGIC and (out / figure).stat().st_size > 20_000
