"""Cohort folders: finding cases in the HC18 layout or a cohort folder, and reading and writing prepared cohorts
(:class:`Cohort`).

A cohort folder holds ``images/<id>.png``, ``masks/<id>.png`` (filled, 0/255), optional
``spacing.csv`` (``id,mm_per_pixel[,patient][,hc_mm]``), ``datalist.json`` (a MONAI datalist) and optional
``unlabelled/`` (images without masks).
The HC18 layout is any ``<id>.png`` beside ``<id>_Annotation.png`` (outline or filled), flat or in
``images/`` + ``annotations/``: HC18's ``NNN_HC`` names, FETAL_PLANES_DB's ``Patient01234_Plane3_1_of_2``
names, or any other.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monai_fetal.atomic import write_json_atomic, write_text_atomic

from monai_fetal.data.io import IMAGE_SUFFIXES, read_mask, strip_suffix, write_png
from monai_fetal.data.patients import patient_of
from monai_fetal.errors import InputDataError, summarise
from monai_fetal.shape.outline import fill_head_annotation

__all__ = [
    "Case",
    "Cohort",
    "CohortItem",
    "find_cases",
    "image_files",
    "read_filled_masks",
    "spacing_table",
    "write_pair",
    "DATALIST_NAME",
    "SPACING_NAME",
    "UNLABELLED_DIR",
]

DATALIST_NAME = "datalist.json"
SPACING_NAME = "spacing.csv"
UNLABELLED_DIR = "unlabelled"
HC18_CSV_NAMES = ("training_set_pixel_size_and_HC.csv", "test_set_pixel_size.csv")
_ANNOTATION = "_Annotation"


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


def image_files(folder: str | Path) -> list[Path]:
    """The image files (``.png``, ``.nii.gz``, ``.nrrd``...) of ``folder``, by name, hidden files left out."""
    return [
        p for p in sorted(Path(folder).iterdir()) if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(IMAGE_SUFFIXES)
    ]


def _images_in(folder: Path) -> dict[str, Path]:
    return {strip_suffix(p.name): p for p in image_files(folder)}


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


def spacing_table(folder: str | Path) -> dict[str, float]:
    """Pixel sizes (mm) by image id from ``folder``'s ``spacing.csv`` or published HC18 CSV (empty if neither).

    Raises:
        InputDataError: a table without its columns, or with a value that is not a number.
    """
    folder = Path(folder)
    try:
        rows = {**_read_hc18_csv(folder), **_read_spacing_csv(folder)}
    except (KeyError, ValueError) as err:
        if isinstance(err, InputDataError):
            raise
        problem = f"has a pixel-size table that cannot be read ({err})"
        raise InputDataError(folder, problem, "give each image one number of mm per pixel") from err
    return {key: row["spacing"] for key, row in rows.items() if row.get("spacing") is not None}


def _unpaired_error(
    folder: Path, images: dict[str, Path], masks: dict[str, Path], image_dir: Path, mask_dir: Path, suffix: str
) -> InputDataError | None:
    """The error naming each side that lacks its partner and the file looked for, or ``None`` when all pair up.

    ``suffix`` is what a mask's name adds to its image's id (``"_Annotation"`` in the HC18 layout, ``""`` in a cohort folder).
    """
    no_mask = sorted(set(images) - set(masks))
    no_image = sorted(set(masks) - set(images))
    if not no_mask and not no_image:
        return None
    noun = "annotation" if suffix else "mask"
    image_place = "the folder" if image_dir == folder else f"{image_dir.name}/"
    mask_place = "the folder" if mask_dir == folder else f"{mask_dir.name}/"
    parts = []
    if no_mask:
        parts.append(
            f"{len(no_mask)} image(s) in {image_place} have no {noun} ({summarise(no_mask)}): "
            f"no {no_mask[0]}{suffix}.png in {mask_place}"
        )
    if no_image:
        parts.append(
            f"{len(no_image)} {noun}(s) in {mask_place} have no image ({summarise(m + suffix for m in no_image)}): "
            f"no {no_image[0]}.png (or .nii.gz, .nrrd, ...) in {image_place}"
        )
    misnamed = _misnamed_annotations(mask_dir) if suffix and mask_dir != image_dir else []
    if misnamed:
        parts.append(f"{mask_place} holds files not named <id>{suffix}.png, which are ignored ({', '.join(misnamed[:5])})")
    fix = f"name each {noun} <id>{suffix}.png after its image <id>.png, add the missing files, or remove the unpaired ones"
    return InputDataError(folder, "; ".join(parts), fix)


def _misnamed_annotations(mask_dir: Path) -> list[str]:
    """Image files of an annotation folder whose names do not end in ``_Annotation``."""
    return [path.name for key, path in _images_in(mask_dir).items() if not key.endswith(_ANNOTATION)]


def _find_annotated(folder: Path) -> list[Case] | None:
    """Cases of the HC18 layout: ``<id>.png`` beside ``<id>_Annotation.png``, flat or in ``images/`` + ``annotations/``.

    Any id is accepted (HC18's ``NNN_HC``, FETAL_PLANES_DB's ``Patient01234_Plane3_1_of_2``, ...).
    """
    image_dir = folder / "images" if (folder / "images").is_dir() else folder
    note_dir = folder / "annotations" if (folder / "annotations").is_dir() else folder
    files = _images_in(image_dir)
    annotations = {k[: -len(_ANNOTATION)]: v for k, v in _images_in(note_dir).items() if k.endswith(_ANNOTATION)}
    images = {k: v for k, v in files.items() if not k.endswith(_ANNOTATION)}
    if not annotations and not images:
        return None
    error = _unpaired_error(folder, images, annotations, image_dir, note_dir, _ANNOTATION)
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
    error = _unpaired_error(folder, images, masks, image_dir, mask_dir, "")
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
    """Cases of a cohort folder (``images/`` + ``masks/``) or of the HC18 layout (``<id>`` + ``<id>_Annotation``).

    Raises:
        InputDataError: the folder is missing or unreadable, holds neither layout, or has unpaired files.
    """
    folder = Path(src)
    if not folder.is_dir():
        raise InputDataError(folder, "is not a readable folder", "give a cohort folder or an HC18 folder")
    try:
        cases = _find_cohort_folder(folder) or _find_annotated(folder)
    except PermissionError as err:
        raise InputDataError(err.filename or folder, "cannot be read (permission denied)", "fix its permissions") from err
    if not cases:
        raise InputDataError(
            folder,
            "holds no cases",
            "give a folder with images/ and masks/, or <id>.png images with <id>_Annotation.png annotations "
            "(flat, or in images/ and annotations/)",
        )
    return cases


def read_filled_masks(src: str | Path) -> list[np.ndarray]:
    """Filled ``uint8`` 0/1 head masks of every case of ``src`` (outlines are filled by ellipse fit), in case order.

    What :meth:`monai_fetal.shape.prior.EllipseShapePrior.fit` takes:
    ``EllipseShapePrior.fit(read_filled_masks(cohort_dir))``.

    Raises:
        InputDataError: ``src`` holds no cases, or a mask is unreadable, empty or unfillable.
    """
    masks = []
    for case in find_cases(src):
        try:
            masks.append(fill_head_annotation(read_mask(case.mask)))
        except ValueError as err:
            raise InputDataError(case.mask, f"cannot be filled ({err})", "draw the whole head outline or a filled head") from err
    return masks


def write_pair(root: str | Path, case_id: str, image: np.ndarray, mask: np.ndarray) -> None:
    """Write one image (``uint8``) and its filled mask (0/1 or bool, stored 0/255) atomically.

    The mask is written first and the image last, so a pair counts as complete once its image exists.
    """
    root = Path(root)
    write_png(root / "masks" / f"{case_id}.png", (np.asarray(mask) > 0).astype(np.uint8) * 255)
    write_png(root / "images" / f"{case_id}.png", image)


@dataclass(frozen=True)
class Cohort:
    """A prepared cohort folder (``images/``, ``masks/``, ``datalist.json``, optional ``spacing.csv`` and
    ``unlabelled/``): what every command reads, and what ``prepare``, the phantom and the synthesiser write.

    ``Cohort(root).items()`` are the datalist's items with absolute paths (MONAI's
    ``load_decathlon_datalist``), ``entries()`` the same as written (paths relative to ``root``).
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def datalist(self) -> Path:
        """The path of ``datalist.json``."""
        return self.root / DATALIST_NAME

    def _check_prepared(self) -> None:
        if not self.datalist.is_file():
            raise InputDataError(self.datalist, "not found", f"prepare the cohort first: monai-fetal prepare SRC {self.root}")

    def entries(self, key: str = "training") -> list[dict]:
        """The datalist's ``key`` items as written (paths relative to the folder).

        Raises:
            InputDataError: the folder has no datalist (it was not prepared).
        """
        self._check_prepared()
        return json.loads(self.datalist.read_text())[key]

    def items(self, key: str = "training") -> list[dict]:
        """The datalist's ``key`` items with absolute paths.

        Raises:
            InputDataError: the folder has no datalist (it was not prepared).
        """
        self._check_prepared()
        from monai.data import load_decathlon_datalist  # here: `prepare` must not import MONAI and torch

        return load_decathlon_datalist(str(self.datalist), data_list_key=key, base_dir=str(self.root))

    def spacing(self) -> dict[str, float]:
        """Pixel sizes (mm) by image id (:func:`spacing_table`)."""
        return spacing_table(self.root)

    def unlabelled_images(self) -> list[Path]:
        """The images of ``unlabelled/`` (empty where the folder has none)."""
        folder = self.root / UNLABELLED_DIR
        return image_files(folder) if folder.is_dir() else []

    @classmethod
    def write(cls, root: str | Path, items: Iterable[CohortItem | dict], name: str | None = None) -> Cohort:
        """Write ``datalist.json`` for pairs already written under ``root``, and ``spacing.csv`` for the
        :class:`CohortItem` entries whose spacing is known; entries given as dicts are written as they are."""
        root = Path(root)
        items = list(items)
        spaced = [item for item in items if isinstance(item, CohortItem) and item.spacing is not None]
        if spaced:
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(["id", "mm_per_pixel", "patient", "hc_mm"])
            for item in spaced:
                writer.writerow([item.id, item.spacing, item.patient, "" if item.hc_mm is None else item.hc_mm])
            write_text_atomic(root / SPACING_NAME, buffer.getvalue())
        entries = [item.to_datalist() if isinstance(item, CohortItem) else item for item in items]
        write_json_atomic(root / DATALIST_NAME, {"name": name or root.name, "numTraining": len(entries), "training": entries})
        return cls(root)
