"""The ``Cohort`` type (prepared cohort folders read and written in one place) and unlabelled images kept apart
from a split's validation and test images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from monai.bundle import ConfigParser

from monai_fetal.data.cohort import Cohort, CohortItem, write_pair
from monai_fetal.data.io import write_png
from monai_fetal.data.phantom import make_phantom_cohort
from monai_fetal.data.unlabelled import unlabelled_items
from monai_fetal.errors import InputDataError

SAM_TRAIN = Path(__file__).resolve().parents[1] / "bundles" / "fetal_head_sam" / "configs" / "train.json"


def _pairs(root: Path, ids: list[str]) -> None:
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 1
    for case_id in ids:
        write_pair(root, case_id, np.full((8, 8), 100, np.uint8), mask)


def test_cohort_writes_and_reads_its_datalist_spacing_and_unlabelled_images(tmp_path: Path) -> None:
    root = tmp_path / "cohort"
    _pairs(root, ["001_HC", "002_HC", "003_HC"])
    cohort = Cohort.write(
        root,
        [
            CohortItem("001_HC", "001", "c", spacing=0.1, hc_mm=150.0),
            CohortItem("002_HC", "002", "c"),
            {"image": "images/003_HC.png", "label": "masks/003_HC.png", "id": "003_HC", "patient": "003", "cohort": "c"},
        ],
        "mine",
    )
    assert cohort == Cohort(root) and cohort.datalist == root / "datalist.json"
    assert json.loads(cohort.datalist.read_text())["name"] == "mine"
    assert [e["image"] for e in cohort.entries()] == ["images/001_HC.png", "images/002_HC.png", "images/003_HC.png"]
    items = cohort.items()
    assert [i["id"] for i in items] == ["001_HC", "002_HC", "003_HC"] and all(Path(i["image"]).is_file() for i in items)
    assert items[0]["spacing"] == 0.1 and "spacing" not in items[1]
    assert cohort.spacing() == {"001_HC": 0.1}
    assert cohort.unlabelled_images() == []
    (root / "unlabelled").mkdir()
    write_png(root / "unlabelled" / "050_HC.png", np.zeros((8, 8), np.uint8))
    (root / "unlabelled" / ".hidden.png").write_bytes(b"")
    assert cohort.unlabelled_images() == [root / "unlabelled" / "050_HC.png"]
    with pytest.raises(InputDataError, match=r"datalist.json.*prepare the cohort first"):
        Cohort(tmp_path / "elsewhere").items()


def test_unlabelled_images_of_a_cohort_leave_out_the_splits_validation_and_test_patients(tmp_path: Path) -> None:
    """A cohort without ``unlabelled/`` gives its ``images/``: the split's held-out images (and their patients'
    other images) must not be trained on, the training images may."""
    root = tmp_path / "cohort"
    ids = ["001_HC", "002_HC", "002_2HC", "003_HC", "004_HC", "005_HC"]
    _pairs(root, ids)
    Cohort.write(root, [CohortItem(i, i[:3], "c") for i in ids if i != "002_2HC"], "c")  # 002_2HC: an image of no item
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"training": [{"id": "001_HC"}], "validation": [{"id": "002_HC", "patient": "002"}], "test": [{"id": "004_HC"}]}))
    assert len(unlabelled_items(root)) == 6
    kept = [item["id"] for item in unlabelled_items(root, split=split)]
    assert kept == ["001_HC", "003_HC", "005_HC"]
    split.write_text(json.dumps({"validation": [{"id": i} for i in ids], "test": []}))
    with pytest.raises(InputDataError, match="only images of the validation and test patients"):
        unlabelled_items(root, split=split)
    split.write_text("[]")
    with pytest.raises(InputDataError, match="not a readable split"):
        unlabelled_items(root, split=split)


def test_finetune_unlabelled_cohort_without_unlabelled_folder_never_holds_validation_or_test_images(tmp_path: Path) -> None:
    """``finetune --unlabelled COHORT`` as the SAM train config resolves it."""
    cohort = make_phantom_cohort(tmp_path / "cohort", 8, size=(64, 80), progress=False).parent
    out = tmp_path / "run"
    parser = ConfigParser()
    parser.read_config(str(SAM_TRAIN))
    parser.update({"dataset_dir": str(cohort), "output_dir": str(out), "unlabelled_dir": str(cohort), "shots": 2, "val_images": 2, "test_images": 2})
    unlabelled = {item["id"] for item in parser.get_parsed_content("self_training#unlabelled_items")}
    split = json.loads((out / "split.json").read_text())
    held_out = {item["id"] for key in ("validation", "test") for item in split[key]}
    assert len(held_out) == 4 and not unlabelled & held_out
    assert unlabelled == {item["id"] for item in Cohort(cohort).entries()} - held_out
