"""Cohort folders: finding cases in the HC18 layout or a cohort folder, and writing cohort folders.

A cohort folder holds ``images/<id>.png``, ``masks/<id>.png`` (filled, 0/255), optional
``spacing.csv`` (``id,mm_per_pixel[,patient][,hc_mm]``) and ``datalist.json`` (a MONAI datalist).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monai_fetal.atomic import write_json_atomic, write_text_atomic
from monai_fetal.data.io import IMAGE_SUFFIXES, strip_suffix, write_png
from monai_fetal.data.patients import patient_of
from monai_fetal.errors import InputDataError, summarise

__all__ = ["Case", "CohortItem", "find_cases", "write_pair", "write_cohort_index", "DATALIST_NAME", "SPACING_NAME"]

DATALIST_NAME = "datalist.json"
SPACING_NAME = "spacing.csv"
HC18_CSV_NAMES = ("training_set_pixel_size_and_HC.csv", "test_set_pixel_size.csv")


@dataclass(frozen=True)
class Case:
    """One image of a source cohort and its annotation (filled mask or outline), before preparation."""

    id: str
    image: Path
    mask: Path
    patient: str
    spacing: float | None = None
    hc_mm: float | None = None


@dataclass(frozen=True)
class CohortItem:
    """One prepared pair as listed in a cohort's datalist."""

    id: str
    patient: str
    cohort: str
    spacing: float | None = None
    hc_mm: float | None = None
    synthetic: bool = False

    def to_datalist(self) -> dict:
        """The MONAI datalist entry, with paths relative to the cohort folder."""
        entry = {
            "image": f"images/{self.id}.png",
            "label": f"masks/{self.id}.png",
            "id": self.id,
            "patient": self.patient,
            "cohort": self.cohort,
        }
        if self.spacing is not None:
            entry["spacing"] = self.spacing
        if self.hc_mm is not None:
            entry["hc_mm"] = self.hc_mm
        if self.synthetic:
            entry["synthetic"] = True
        return entry


def _images_in(folder: Path) -> dict[str, Path]:
    return {
        strip_suffix(p.name): p
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(IMAGE_SUFFIXES)
    }


def _number(row: dict, column: str, path: Path, line: int) -> float | None:
    """The positive number in ``row[column]``; ``None`` where the cell is empty or the column absent.

    Raises:
        InputDataError: the cell holds anything else (``n/a``, ``NaN``, text, zero or a negative value),
            naming the file, the line and the column.
    """
    text = (row.get(column) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise InputDataError(
            path,
            f"line {line}: '{column}' is {text!r}, not a positive number",
            "write the value (a number), or leave the cell empty where it is unknown",
        )
    return value


def _read_hc18_csv(folder: Path) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for name in HC18_CSV_NAMES:
        path = folder / name
        if not path.is_file():
            continue
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if "filename" not in (reader.fieldnames or []):
                raise InputDataError(
                    path,
                    f"has no 'filename' column (its header is {','.join(reader.fieldnames or [])!r})",
                    "give it the HC18 header 'filename,pixel size(mm),head circumference (mm)'",
                )
            for row in reader:
                rows[strip_suffix(row["filename"] or "")] = {
                    "spacing": _number(row, "pixel size(mm)", path, reader.line_num),
                    "hc_mm": _number(row, "head circumference (mm)", path, reader.line_num),
                }
    return rows


def _read_spacing_csv(folder: Path) -> dict[str, dict]:
    path = folder / SPACING_NAME
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"id", "mm_per_pixel"} <= set(reader.fieldnames):
            raise InputDataError(path, "has no 'id' and 'mm_per_pixel' columns", "write a header line 'id,mm_per_pixel'")
        return {
            row["id"]: {
                "spacing": _number(row, "mm_per_pixel", path, reader.line_num),
                "hc_mm": _number(row, "hc_mm", path, reader.line_num),
                "patient": row.get("patient") or None,
            }
            for row in reader
        }


def _unpaired_error(folder: Path, images: dict, masks: dict) -> InputDataError | None:
    no_mask = sorted(set(images) - set(masks))
    no_image = sorted(set(masks) - set(images))
    if not no_mask and not no_image:
        return None
    parts = []
    if no_mask:
        parts.append(f"images without a mask: {summarise(no_mask)}")
    if no_image:
        parts.append(f"masks without an image: {summarise(no_image)}")
    return InputDataError(folder, "; ".join(parts), "add the missing files or remove the unpaired ones")


def _find_hc18(folder: Path) -> list[Case] | None:
    image_dir = folder / "images" if (folder / "images").is_dir() else folder
    note_dir = folder / "annotations" if (folder / "annotations").is_dir() else folder
    files = _images_in(image_dir)
    annotations = {k[: -len("_Annotation")]: v for k, v in _images_in(note_dir).items() if k.endswith("_Annotation")}
    images = {k: v for k, v in files.items() if k.endswith("HC") and not k.endswith("_Annotation")}
    if not annotations and not images:
        return None
    error = _unpaired_error(folder, images, annotations)
    if error:
        raise error
    table = _read_hc18_csv(folder)
    return [
        Case(id=k, image=images[k], mask=annotations[k], patient=patient_of(k), **table.get(k, {}))
        for k in sorted(images)
    ]


def _find_cohort_folder(folder: Path) -> list[Case] | None:
    image_dir, mask_dir = folder / "images", folder / "masks"
    if not (image_dir.is_dir() and mask_dir.is_dir()):
        return None
    images, masks = _images_in(image_dir), _images_in(mask_dir)
    error = _unpaired_error(folder, images, masks)
    if error:
        raise error
    table = _read_spacing_csv(folder)
    cases = []
    for k in sorted(images):
        row = table.get(k, {})
        cases.append(
            Case(
                id=k,
                image=images[k],
                mask=masks[k],
                patient=row.get("patient") or patient_of(k),
                spacing=row.get("spacing"),
                hc_mm=row.get("hc_mm"),
            )
        )
    return cases


def find_cases(src: str | Path) -> list[Case]:
    """Cases of a cohort folder (``images/`` + ``masks/``) or of the HC18 layout as published.

    Raises:
        InputDataError: the folder is missing or unreadable, holds neither layout, or has unpaired files.
    """
    folder = Path(src)
    if not folder.is_dir():
        raise InputDataError(folder, "is not a readable folder", "give a cohort folder or an HC18 folder")
    try:
        cases = _find_cohort_folder(folder) or _find_hc18(folder)
    except PermissionError as err:
        raise InputDataError(err.filename or folder, "cannot be read (permission denied)", "fix its permissions") from err
    if not cases:
        raise InputDataError(
            folder,
            "holds no cases",
            "give a folder with images/ and masks/, or HC18 files NNN_HC.png with NNN_HC_Annotation.png",
        )
    return cases


def write_pair(root: str | Path, case_id: str, image: np.ndarray, mask: np.ndarray) -> None:
    """Write one image (``uint8``) and its filled mask (0/1 or bool, stored 0/255) atomically.

    The mask is written first and the image last, so a pair counts as complete once its image exists.
    """
    root = Path(root)
    write_png(root / "masks" / f"{case_id}.png", (np.asarray(mask) > 0).astype(np.uint8) * 255)
    write_png(root / "images" / f"{case_id}.png", image)


def write_cohort_index(root: str | Path, items: Iterable[CohortItem], name: str | None = None) -> Path:
    """Write ``datalist.json`` (and ``spacing.csv`` where spacing is known) for pairs already written.

    Returns:
        the path of the datalist.
    """
    root = Path(root)
    items = list(items)
    spaced = [item for item in items if item.spacing is not None]
    if spaced:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["id", "mm_per_pixel", "patient", "hc_mm"])
        for item in spaced:
            writer.writerow([item.id, item.spacing, item.patient, "" if item.hc_mm is None else item.hc_mm])
        write_text_atomic(root / SPACING_NAME, buffer.getvalue())
    datalist = {
        "name": name or root.name,
        "numTraining": len(items),
        "training": [item.to_datalist() for item in items],
    }
    path = root / DATALIST_NAME
    write_json_atomic(path, datalist)
    return path
