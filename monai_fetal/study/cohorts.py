"""Cohort folders the study derives: the source cohort prepared once, and a split's part as its own folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from monai_fetal.atomic import write_json_atomic
from monai_fetal.data.cohort import DATALIST_NAME, write_pair
from monai_fetal.data.io import read_image, to_uint8
from monai_fetal.data.prepare import ensure_cohort
from monai_fetal.errors import InputDataError
from monai_fetal.staging import output_lock, staged_folder

__all__ = ["cohort_name", "prepared_cohort", "same_source", "split_part_cohort"]

MIN_SHAPE_PRIOR_MASKS = 2


def cohort_name(src: str | Path) -> str:
    """The name of a cohort: its folder's name."""
    return Path(src).resolve().name


def same_source(a: str | Path, b: str | Path) -> bool:
    """Whether two cohort arguments name the same folder."""
    return Path(a).resolve() == Path(b).resolve()


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
        write_json_atomic(staging / DATALIST_NAME, {"name": out.name, "numTraining": len(entries), "training": entries})
    return out
