"""Cohort folders the study derives: the source cohort prepared once, and a split's part as its own folder."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from monai_fetal.data.cohort import Cohort, write_pair
from monai_fetal.data.io import read_image, to_uint8
from monai_fetal.data.patients import patient_of
from monai_fetal.data.prepare import ensure_cohort
from monai_fetal.errors import InputDataError
from monai_fetal.staging import output_lock, staged_folder

__all__ = [
    "cohort_name",
    "items_without_patients",
    "prepared_cohort",
    "same_source",
    "shared_patients",
    "split_part_cohort",
]

MIN_SHAPE_PRIOR_MASKS = 2


def cohort_name(src: str | Path) -> str:
    """The name of a cohort: its folder's name."""
    return Path(src).resolve().name


def _patient(item: dict) -> str:
    return str(item.get("patient") or patient_of(str(item["id"])))


def _cases(cohort: str | Path) -> set[tuple[str, str, str]]:
    """``(id, patient, sha256 of the image file)`` of every case."""
    root = Path(cohort)
    return {
        (str(i["id"]), _patient(i), hashlib.sha256((root / i["image"]).read_bytes()).hexdigest()) for i in Cohort(root).entries()
    }


def same_source(a: str | Path, b: str | Path) -> bool:
    """Whether two prepared cohort folders hold the same cases: one folder, or the same images of the same patients."""
    return Path(a).resolve() == Path(b).resolve() or _cases(a) == _cases(b)


def shared_patients(a: str | Path, b: str | Path) -> set[str]:
    """Patients with images in both prepared cohort folders (by patient id, e.g. HC18 ``014`` of ``014_2HC``)."""
    return {_patient(i) for i in Cohort(a).entries()} & {_patient(i) for i in Cohort(b).entries()}


def items_without_patients(cohort: str | Path, patients: set[str]) -> list[dict]:
    """The datalist items of ``cohort`` whose patient is not in ``patients``."""
    return [item for item in Cohort(cohort).entries() if _patient(item) not in patients]


def prepared_cohort(src: str | Path, cohorts_dir: str | Path) -> Path:
    """``src`` when it is a prepared cohort folder, else ``src`` prepared into ``cohorts_dir/<name>``."""
    return Path(ensure_cohort(src, Path(cohorts_dir) / cohort_name(src)))


def _mirrored(item: dict, root: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    image = read_image(root / item["image"])[:, ::-1]
    mask = read_image(root / item["label"])[:, ::-1] > 0
    case_id = f"{item['id']}_mirror"
    entry = {**item, "id": case_id, "image": f"images/{case_id}.png", "label": f"masks/{case_id}.png"}
    return entry, image, mask


def split_part_cohort(cohort_dir: str | Path, split_file: str | Path, out: str | Path, key: str = "training") -> Path:
    """Copy the ``key`` part of a split into the cohort folder ``out`` and return ``out``.

    This is what the generator trains on: the few real pairs of a k-shot split. A one-image part is
    completed by its left-right mirror image, as the generator's shape prior needs two masks (the
    generator's training flips images left-right anyway). Built in a staging folder, then renamed
    (:func:`monai_fetal.staging.staged_folder`).

    Raises:
        InputDataError: the split has no ``key`` items.
    """
    cohort_dir, out = Path(cohort_dir), Path(out)
    items = json.loads(Path(split_file).read_text()).get(key) or []
    if not items:
        raise InputDataError(split_file, f"has no '{key}' images", "write the split with at least one image there")
    with output_lock(out), staged_folder(out, "split-part") as staging:
        for folder in ("images", "masks"):
            (staging / folder).mkdir(parents=True)
        for item in items:
            shutil.copy2(cohort_dir / item["image"], staging / item["image"])
            shutil.copy2(cohort_dir / item["label"], staging / item["label"])
        entries = [dict(item) for item in items]
        if len(entries) < MIN_SHAPE_PRIOR_MASKS:
            entry, image, mask = _mirrored(items[0], cohort_dir)
            write_pair(staging, entry["id"], to_uint8(image), mask)
            entries.append(entry)
        Cohort.write(staging, entries, out.name)
    return out
