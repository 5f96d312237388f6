"""``monai-fetal segment`` end to end with the pretrained model: measurements, flags, names, guards, and the
one inference path it shares with ``evaluate``."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Events

from monai_fetal.bundles import EVALUATE_CONFIGS, read_bundle_config
from monai_fetal.cli import main
from monai_fetal.data.io import read_image, write_png
from monai_fetal.jobs import segment_images
from monai_fetal.errors import InputDataError
from monai_fetal.shape.measure import COLUMNS, FLAG_BELOW, FLAG_BOXED_BELOW, FLAG_SEARCHED_BELOW

IDS = ("000_HC", "004_HC", "012_HC")


@pytest.fixture(scope="module")
def segmented(hc18_subset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run over 3 HC18 images (spacing from the CSV), two files named ``scan.png``, a blank and a noise image."""
    root = tmp_path_factory.mktemp("segment")
    for folder, case in (("a", "005_HC"), ("b", "008_HC")):
        (root / folder).mkdir()
        shutil.copy(hc18_subset / "images" / f"{case}.png", root / folder / "scan.png")
    write_png(root / "blank.png", np.zeros((540, 800), np.uint8))
    write_png(root / "noise.png", np.random.default_rng(0).integers(0, 256, (540, 800), dtype=np.uint8))
    images = [hc18_subset / "images" / f"{i}.png" for i in IDS]
    images += [root / "a" / "scan.png", root / "b" / "scan.png", root / "blank.png", root / "noise.png"]
    assert main(["segment", *map(str, images), "--out", str(root / "out"), "--overlay"]) == 0
    return root


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "measurements.csv").open() as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == COLUMNS
        return {Path(row["image"]).relative_to(Path(row["image"]).parents[1]).as_posix(): row for row in reader}


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def test_segment_writes_a_measured_row_mask_and_overlay_per_image(segmented: Path, hc18_subset: Path) -> None:
    out = segmented / "out"
    rows = _rows(out)
    assert len(rows) == 7
    with (hc18_subset / "training_set_pixel_size_and_HC.csv").open() as handle:
        published = {row["filename"]: row for row in csv.DictReader(handle)}
    for case in IDS:
        row = rows[f"images/{case}.png"]
        spacing = float(published[f"{case}.png"]["pixel size(mm)"])
        assert float(row["mm_per_pixel"]) == pytest.approx(spacing, rel=1e-5)
        assert float(row["hc_mm"]) == pytest.approx(float(row["hc_px"]) * spacing, rel=1e-4)
        assert 0 <= float(row["quality"]) <= 1 and row["flagged"] in ("0", "1")
    for name in ("a/scan.png", "b/scan.png"):  # no spacing for copies outside the HC18 folder: mm left empty
        assert rows[name]["hc_mm"] == rows[name]["mm_per_pixel"] == "" and float(rows[name]["hc_px"]) > 0
    for name in ("blank.png", "noise.png"):
        assert rows[f"{segmented.name}/{name}"]["flagged"] == "1"
    manifest = json.loads((out / "segment.json").read_text())
    assert manifest["n"] == 7 and len({entry["mask"] for entry in manifest["images"]}) == 7
    assert (manifest["flag_below"], manifest["flag_searched_below"], manifest["flag_boxed_below"]) == (FLAG_BELOW, FLAG_SEARCHED_BELOW, FLAG_BOXED_BELOW)
    for entry in manifest["images"]:
        mask = read_image(entry["mask"])
        assert mask.shape == read_image(entry["image"]).shape and set(np.unique(mask)) <= {0.0, 255.0}
        assert Path(entry["overlay"]).stat().st_size > 1000
    assert (out / "a" / "scan_mask.png").is_file() and (out / "b" / "scan_mask.png").is_file()


def test_existing_outputs_are_kept_without_overwrite(segmented: Path) -> None:
    out = segmented / "out"
    before = _digest(out)
    assert main(["segment", str(segmented / "a" / "scan.png"), "--out", str(out)]) == 2
    with pytest.raises(InputDataError, match="already exists.*--overwrite"):
        segment_images([segmented / "a" / "scan.png"], out)
    assert _digest(out) == before


def test_a_corrupt_image_is_named_and_earlier_outputs_stay(segmented: Path) -> None:
    out = segmented / "out"
    before = _digest(out)
    corrupt = segmented / "corrupt.png"
    corrupt.write_bytes((segmented / "a" / "scan.png").read_bytes()[:2000])
    argv = ["segment", str(segmented / "a" / "scan.png"), str(corrupt), "--out", str(out), "--overwrite"]
    assert main(argv) == 2
    with pytest.raises(InputDataError, match="re-export") as raised:
        segment_images([segmented / "a" / "scan.png", corrupt], out, overwrite=True)
    assert raised.value.path == corrupt
    assert _digest(out) == before


def test_segment_and_evaluate_give_identical_masks(segmented: Path, hc18_cohort: Path, tmp_path: Path) -> None:
    """``evaluate --prompt auto`` on the prepared cohort and ``segment`` on the published files: one path, same masks."""
    items = [item for item in json.loads((hc18_cohort / "datalist.json").read_text())["training"] if item["id"] in IDS]
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"training": [], "validation": [], "test": items}))
    overrides = {"dataset_dir": str(hc18_cohort), "split_file": str(split), "prompt": "auto", "output_dir": str(tmp_path / "eval")}
    parser = read_bundle_config("fetal_head_sam", EVALUATE_CONFIGS, overrides)
    evaluator = parser.get_parsed_content("evaluator")
    masks: dict[str, np.ndarray] = {}

    @evaluator.on(Events.ITERATION_COMPLETED)
    def keep(engine) -> None:
        for item, output in zip(engine.state.batch, engine.state.output):
            masks[item["id"]] = np.asarray(torch.as_tensor(output["pred"])[0]).T > 0

    evaluator.run()
    assert sorted(masks) == sorted(IDS)
    for case in IDS:
        segmented_mask = read_image(segmented / "out" / f"{case}_mask.png") > 0
        assert segmented_mask.any() and np.array_equal(segmented_mask, masks[case]), case


def test_evaluate_passes_the_no_box_effort_to_the_bundle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``evaluate --effort fast`` reaches the bundle's ``effort`` id, as ``segment --effort`` does."""
    given: dict = {}
    monkeypatch.setattr("monai_fetal.jobs.run_bundle", lambda bundle, configs, overrides: given.update(overrides))
    data = tmp_path / "cohort"
    data.mkdir()
    assert main(["evaluate", "--data", str(data), "--prompt", "auto", "--effort", "fast", "--out", str(tmp_path / "eval")]) == 0
    assert given["effort"] == "fast" and given["prompt"] == "auto"
    given.clear()
    assert main(["evaluate", "--data", str(data), "--out", str(tmp_path / "eval")]) == 0
    assert "effort" not in given
