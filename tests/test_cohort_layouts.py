"""Reading ``<id>.png`` + ``<id>_Annotation.png`` cohorts under any names, and errors that name the missing side."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from monai_fetal.data.cohort import find_cases, read_filled_masks
from monai_fetal.data.io import read_mask, write_png
from monai_fetal.data.prepare import prepare_cohort
from monai_fetal.errors import InputDataError
from monai_fetal.shape.ellipse import Ellipse, ellipse_to_mask

# FETAL_PLANES_DB names (Burgos-Artizzu et al. 2020, the Spanish cohort): patient, plane, image k of n
PLANES_IDS = ("Patient00168_Plane3_1_of_2", "Patient00168_Plane3_2_of_2", "Patient01296_Plane3_1_of_1")
SHAPE = (90, 120)


def _heads(i: int) -> np.ndarray:
    return ellipse_to_mask(Ellipse(58 + 4 * i, 44, 30, 21, 0.3 * i), SHAPE)


def _write_pairs(image_dir: Path, note_dir: Path, ids: tuple[str, ...]) -> None:
    rng = np.random.default_rng(0)
    for i, case_id in enumerate(ids):
        filled = _heads(i)
        outline = filled & ~np.pad(filled, 1)[2:, 1:-1]
        write_png(image_dir / f"{case_id}.png", rng.integers(0, 255, SHAPE, dtype=np.uint8))
        write_png(note_dir / f"{case_id}_Annotation.png", outline.astype(np.uint8) * 255)


@pytest.fixture()
def planes_db(tmp_path: Path) -> Path:
    """``images/`` + ``annotations/`` with FETAL_PLANES_DB names (none ends in ``HC``), outline annotations."""
    folder = tmp_path / "planes"
    _write_pairs(folder / "images", folder / "annotations", PLANES_IDS)
    return folder


def test_an_annotations_folder_with_fetal_planes_db_names_prepares(planes_db: Path, tmp_path: Path) -> None:
    cases = find_cases(planes_db)
    assert [(c.id, c.patient) for c in cases] == [
        ("Patient00168_Plane3_1_of_2", "Patient00168"),
        ("Patient00168_Plane3_2_of_2", "Patient00168"),
        ("Patient01296_Plane3_1_of_1", "Patient01296"),
    ]
    datalist = json.loads(prepare_cohort(planes_db, tmp_path / "cohort", progress=False).read_text())
    assert [item["id"] for item in datalist["training"]] == list(PLANES_IDS)
    for i, item in enumerate(datalist["training"]):
        mask = read_mask(tmp_path / "cohort" / item["label"])
        overlap = (mask & _heads(i).astype(bool)).sum() / (mask | _heads(i).astype(bool)).sum()
        assert overlap > 0.85  # filled by the ellipse fit (the outline itself overlaps by about 0.15)


def test_a_flat_folder_with_any_names_is_read(tmp_path: Path) -> None:
    ids = ("scan_a", "scan_b")
    _write_pairs(tmp_path / "flat", tmp_path / "flat", ids)
    assert [c.id for c in find_cases(tmp_path / "flat")] == list(ids)
    # filled heads (about 1900 pixels; the outline drawn has about 60), fitted a pixel inside the drawn ellipse
    assert [int(m.sum()) for m in read_filled_masks(tmp_path / "flat")] == [
        pytest.approx(int(_heads(i).sum()), rel=0.15) for i in range(2)
    ]


def test_an_image_without_its_annotation_is_named_with_the_file_looked_for(planes_db: Path) -> None:
    (planes_db / "annotations" / f"{PLANES_IDS[1]}_Annotation.png").unlink()
    with pytest.raises(InputDataError) as caught:
        find_cases(planes_db)
    message = str(caught.value)
    assert f"1 image(s) in images/ have no annotation ({PLANES_IDS[1]})" in message
    assert f"no {PLANES_IDS[1]}_Annotation.png in annotations/" in message
    assert "have no image" not in message


def test_an_annotation_without_its_image_is_named_as_such(planes_db: Path) -> None:
    (planes_db / "images" / f"{PLANES_IDS[2]}.png").unlink()
    with pytest.raises(InputDataError) as caught:
        find_cases(planes_db)
    message = str(caught.value)
    assert f"1 annotation(s) in annotations/ have no image ({PLANES_IDS[2]}_Annotation)" in message
    assert f"no {PLANES_IDS[2]}.png" in message
    assert "have no annotation" not in message


def test_annotations_without_the_suffix_are_reported_as_misnamed(planes_db: Path) -> None:
    misnamed = planes_db / "annotations" / f"{PLANES_IDS[0]}.png"
    (planes_db / "annotations" / f"{PLANES_IDS[0]}_Annotation.png").rename(misnamed)
    with pytest.raises(InputDataError) as caught:
        find_cases(planes_db)
    message = str(caught.value)
    assert f"have no annotation ({PLANES_IDS[0]})" in message
    assert f"not named <id>_Annotation.png, which are ignored ({misnamed.name})" in message


def test_a_cohort_folder_names_masks_and_images_it_misses(tmp_path: Path) -> None:
    folder = tmp_path / "cohort"
    for i, case_id in enumerate(("a", "b")):
        write_png(folder / "images" / f"{case_id}.png", np.zeros(SHAPE, np.uint8))
        write_png(folder / "masks" / f"{case_id}.png", _heads(i) * 255)
    (folder / "masks" / "b.png").rename(folder / "masks" / "c.png")
    with pytest.raises(InputDataError) as caught:
        find_cases(folder)
    message = str(caught.value)
    assert "1 image(s) in images/ have no mask (b): no b.png in masks/" in message
    assert "1 mask(s) in masks/ have no image (c): no c.png" in message
