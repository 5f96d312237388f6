"""``segment``: masks and head measurements for images, folders or cohorts, through the bundle's ``inference.json``.

:func:`plan_segmentation` turns what the user named (files, folders, cohort or HC18 folders; boxes; a pixel
size) into datalist items, checking every input before any work; :class:`MeasurementWriter` is the
inference config's handler that measures each mask and writes it, its review overlay, ``measurements.csv``
and the ``segment.json`` manifest; :func:`monai_fetal.jobs.segment_images` is the typed entry point the CLI calls.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_fetal.atomic import write_json_atomic, write_text_atomic
from monai_fetal.data.cohort import Cohort
from monai_fetal.data.io import IMAGE_SUFFIXES, image_spacing, read_image_reduced, strip_suffix, to_uint8
from monai_fetal.data.writers import AtomicPILWriter
from monai_fetal.errors import ConfigError, InputDataError
from monai_fetal.shape.ellipse import Ellipse
from monai_fetal.shape.measure import COLUMNS, FLAG_THRESHOLDS, HeadMeasurement

__all__ = ["MEASUREMENTS_NAME", "MANIFEST_NAME", "MeasurementWriter", "plan_segmentation", "read_boxes_csv", "spacing_of"]

logger = logging.getLogger(__name__)

MEASUREMENTS_NAME = "measurements.csv"
MANIFEST_NAME = "segment.json"
BOX_COLUMNS = ("image", "x0", "y0", "x1", "y1")
_BOX_FIX = "give x0,y0,x1,y1 in pixels with 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height"


def _is_image_file(path: Path) -> bool:
    return (
        path.is_file()
        and not path.name.startswith(".")
        and path.name.lower().endswith(IMAGE_SUFFIXES)
        and not strip_suffix(path.name).endswith("_Annotation")
    )


def _folder_images(folder: Path) -> list[Path]:
    """Images of a folder: ``images/`` (and ``unlabelled/``) of a cohort or HC18 folder, else its own image files."""
    parts = [folder / "images", folder / "unlabelled"] if (folder / "images").is_dir() else [folder]
    files = sorted(p for part in parts if part.is_dir() for p in part.iterdir() if _is_image_file(p))
    if not files:
        fix = "give image files (PNG, NIfTI, NRRD...), or a folder with them or with images/"
        raise InputDataError(folder, "holds no images", fix)
    return files


def _expand(paths: Sequence[str | Path]) -> list[tuple[str, Path]]:
    """``(as given, file)`` per image, folders replaced by their images."""
    expanded: list[tuple[str, Path]] = []
    for given in paths:
        path = Path(given)
        expanded += [(str(p), p) for p in _folder_images(path)] if path.is_dir() else [(str(given), path)]
    seen = Counter(p.resolve() for _, p in expanded)
    repeated = [str(p) for p, n in seen.items() if n > 1]
    if repeated:
        raise InputDataError(repeated[0], "is named more than once", "name each image once")
    return expanded


def _output_names(files: list[Path]) -> list[str]:
    """Unique output names: the stem; where stems collide, the path from the colliding files' common folder
    (``a/scan``, ``b/scan``), and where those collide too, the full file name (``x.nii.gz``, ``x.nrrd``)."""
    names = [strip_suffix(p.name) for p in files]
    for stem, count in Counter(names).items():
        if count == 1:
            continue
        members = [k for k, name in enumerate(names) if name == stem]
        common = Path(os.path.commonpath([files[k].resolve().parent for k in members]))
        relative = {k: files[k].resolve().relative_to(common) for k in members}
        short = {k: (r.parent / strip_suffix(r.name)).as_posix() for k, r in relative.items()}
        clash = Counter(short.values())
        for k in members:
            names[k] = short[k] if clash[short[k]] == 1 else relative[k].as_posix()
    return names


def read_boxes_csv(path: str | Path) -> dict[str, list[float]]:
    """Boxes by image from a CSV with columns ``image,x0,y0,x1,y1`` (pixels), each checked for numbers and a positive area.

    Raises:
        InputDataError: a missing file or column, or a row with a value that is not a finite number, an inverted box or
            a box of zero area (named by its row).
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError(path, "boxes file not found", "give a CSV with columns image,x0,y0,x1,y1")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not set(BOX_COLUMNS) <= {f.strip() for f in reader.fieldnames}:
            raise InputDataError(
                path, f"has columns {reader.fieldnames}, not {', '.join(BOX_COLUMNS)}", "write the header line image,x0,y0,x1,y1"
            )
        boxes: dict[str, list[float]] = {}
        for line, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            where = f"line {line} ({row['image']}: {','.join(row[c] for c in BOX_COLUMNS[1:])})"
            try:
                box = [float(row[c]) for c in BOX_COLUMNS[1:]]
            except ValueError:
                raise InputDataError(path, f"{where}: a coordinate is not a number", _BOX_FIX) from None
            _check_box(box, path, where)
            if row["image"] in boxes:
                raise InputDataError(path, f"{where}: a second box for {row['image']}", "give one box per image")
            boxes[row["image"]] = box
    return boxes


def _check_box(box: Sequence[float], path: str | Path, where: str, size: tuple[int, int] | None = None) -> None:
    x0, y0, x1, y1 = box
    if not all(math.isfinite(v) for v in box):
        raise InputDataError(path, f"{where}: a coordinate is not a finite number", _BOX_FIX)
    if x1 < x0 or y1 < y0:
        raise InputDataError(path, f"{where}: the box is inverted (x1 < x0 or y1 < y0)", _BOX_FIX)
    if x1 == x0 or y1 == y0:
        raise InputDataError(path, f"{where}: the box has zero area", _BOX_FIX)
    if size is not None:
        rows, cols = size
        if x0 < 0 or y0 < 0 or x1 > cols or y1 > rows:
            raise InputDataError(path, f"{where}: the box is not inside the {cols} x {rows} image", _BOX_FIX)


def _box_key(boxes: Mapping[str, object], given: str, path: Path, name: str) -> str | None:
    for key in (given, str(path), str(path.resolve()), path.name, name):
        if key in boxes:
            return key
    return None


def spacing_of(path: Path, spacing: float | None, tables: dict[Path, dict[str, float]]) -> tuple[float | None, str]:
    """Pixel size of image file ``path`` and where it came from: ``spacing`` (``--spacing``), the table of the
    image's folder or its parent (``tables`` caches them by folder), the image header, or unknown."""
    if spacing is not None:
        return spacing, "given"
    for folder in (path.parent, path.parent.parent):
        if folder not in tables:
            tables[folder] = Cohort(folder).spacing()
        value = tables[folder].get(strip_suffix(path.name))
        if value is not None:
            if not math.isfinite(value) or value <= 0:
                problem = f"gives {strip_suffix(path.name)} a pixel size of {value}"
                raise InputDataError(folder, problem, "give a positive number of mm per pixel")
            return value, "table"
    value = image_spacing(path)
    return (value, "header") if value is not None else (None, "unknown")


def plan_segmentation(
    images: Sequence[str | Path],
    boxes: Mapping[str, Sequence[float]] | None = None,
    spacing: float | None = None,
    max_side: int | None = None,
) -> list[dict]:
    """Datalist items for ``inference.json``, every input read and checked before any work.

    Args:
        images: image files, folders of images, cohort folders (``images/``, ``unlabelled/``) or HC18 folders.
        boxes: ``x0, y0, x1, y1`` in pixels by image (the path as given, its file name or its output name).
        spacing: mm per pixel for every image (else the folder's ``spacing.csv`` or HC18 CSV, else the header).
        max_side: images with a longer side are reduced on read (:class:`monai_fetal.transforms.LoadGreyscaled`).

    Returns:
        ``{"image", "path" (the same, kept as text), "name", "spacing" (NaN: unknown), "spacing_source", "reduction",
        "rows", "cols", "box"?}`` per image (``rows``, ``cols``: the file's size); ``box``
        in the pixels of the image as read (reduced where it was).

    Raises:
        InputDataError: a missing, corrupt or non-2-D image, a folder without images, a box outside its image,
            inverted, NaN or of zero area, a box for no image, or a bad pixel size.
    """
    if spacing is not None and (not math.isfinite(spacing) or spacing <= 0):
        raise ConfigError("spacing", spacing, "mm per pixel as a positive number")
    boxes = dict(boxes or {})
    expanded = _expand(images)
    names = _output_names([p for _, p in expanded])
    tables: dict[Path, dict[str, float]] = {}
    items, used = [], set()
    for (given, path), name in zip(expanded, names):
        _, factor, shape = read_image_reduced(path, max_side)  # a corrupt image is named before any mask is written
        value, source = spacing_of(path, spacing, tables)
        item = {"image": str(path), "path": str(path), "name": name, "spacing": math.nan if value is None else value}
        item["spacing_source"] = source
        item.update(reduction=factor, rows=shape[0], cols=shape[1])
        key = _box_key(boxes, given, path, name)
        if key is not None:
            box = [float(v) for v in boxes[key]]
            if len(box) != 4:
                raise ConfigError(f"boxes[{key}]", box, "4 numbers x0, y0, x1, y1")
            _check_box(box, path, f"box {','.join(f'{v:g}' for v in box)}", shape)
            item["box"] = [v / factor for v in box]
            used.add(key)
        items.append(item)
    unused = sorted(set(boxes) - used)
    if unused:
        raise InputDataError(
            unused[0], f"has a box but is not among the {len(items)} images to segment", "name the image as given or by its file name"
        )
    return items


def _upsample(mask: np.ndarray, factor: int, shape: Sequence[int]) -> np.ndarray:
    if factor == 1:
        return mask
    return np.repeat(np.repeat(mask, factor, axis=0), factor, axis=1)[: shape[0], : shape[1]]


class MeasurementWriter:
    """Write each predicted head's ``<name>_mask.png`` (0/255, the image's own size), optionally
    ``<name>_overlay.png``, then ``measurements.csv`` and ``segment.json`` (input -> outputs, spacing source,
    quality terms) once every image is done.

    Existing outputs are refused (before the first image) unless ``overwrite``. Expects items from
    :func:`plan_segmentation`, predictions ``[W, H]`` and their measurements (``inference.json``'s
    postprocessing, which ends with :class:`~monai_fetal.engines.head_measure.MeasureHeadd`).

    Args:
        output_dir: the output folder.
        overwrite: replace outputs of an earlier run.
        overlay: also write a review PNG per image (mask outline, fitted ellipse, HC).
        extra: values recorded in ``segment.json`` (model, checkpoint).
    """

    def __init__(self, output_dir: str | Path, overwrite: bool = False, overlay: bool = False, extra: dict | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.overwrite = overwrite
        self.overlay = overlay
        self.thresholds: dict[str, float] = {}
        self.extra = dict(extra or {})
        self.rows: list[dict] = []
        self.manifest: list[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.write_items)
        engine.add_event_handler(Events.COMPLETED, self.write_tables)

    def outputs(self, name: str) -> dict[str, Path]:
        """The files written for the image named ``name``."""
        files = {"mask": self.output_dir / f"{name}_mask.png"}
        if self.overlay:
            files["overlay"] = self.output_dir / f"{name}_overlay.png"
        return files

    def start(self, engine: Engine) -> None:
        self.rows, self.manifest = [], []
        planned = [self.output_dir / MEASUREMENTS_NAME, self.output_dir / MANIFEST_NAME]
        planned += [p for item in engine.data_loader.dataset.data for p in self.outputs(item["name"]).values()]
        existing = [p for p in planned if p.exists()]
        if existing and not self.overwrite:
            more = f" and {len(existing) - 1} more outputs of an earlier run" if len(existing) > 1 else ""
            raise InputDataError(existing[0], f"already exists{more}", "pass --overwrite to replace them, or choose another --out")

    def write_items(self, engine: Engine) -> None:
        for item, output in zip(engine.state.batch, engine.state.output):
            self.thresholds = {key: float(output["result"][key]) for key in FLAG_THRESHOLDS}
            self._write_one(item, np.asarray(torch.as_tensor(output["pred"]).cpu()).T > 0, output["measurement"])

    def _write_one(self, item: Mapping, mask: np.ndarray, measured: HeadMeasurement) -> None:
        factor = int(item["reduction"])
        files = self.outputs(str(item["name"]))
        original = (int(item["rows"]), int(item["cols"]))
        writer = AtomicPILWriter(output_dtype=np.uint8, scale=None)  # 0/255 uint8 in: no full-size float copy
        writer.set_data_array(_upsample(mask.astype(np.uint8) * 255, factor, original).T[None], channel_dim=0)
        writer.write(files["mask"])
        if self.overlay:
            self._write_overlay(item, mask, measured, files["overlay"])
        self.rows.append(measured.row(str(item["path"])))
        self.manifest.append(
            {
                "image": str(item["path"]),
                **{key: str(path) for key, path in files.items()},
                "spacing_source": str(item["spacing_source"]),
                "reduction": factor,
                "quality": measured.quality.to_dict(),
                "flagged": measured.flagged,
            }
        )

    def _write_overlay(self, item: Mapping, mask: np.ndarray, measured: HeadMeasurement, path: Path) -> None:
        from monai_fetal.visualize import save_measurement_overlay

        factor = int(item["reduction"])
        picture, _, _ = read_image_reduced(item["path"], factor=factor)
        ellipse, text = None, "no head found"
        if measured.biometry is not None:
            b, e, shift = measured.biometry, measured.biometry.ellipse, (factor - 1) / 2.0
            ellipse = Ellipse((e.cx - shift) / factor, (e.cy - shift) / factor, e.a / factor, e.b / factor, e.theta)
            text = f"HC {b.hc_mm:.1f} mm" if b.hc_mm is not None else f"HC {b.hc:.1f} px (pixel size unknown)"
        text += f", quality {measured.quality.score:.2f}" + (": please check" if measured.flagged else "")
        save_measurement_overlay(to_uint8(picture), mask, path, ellipse, text, measured.flagged)

    def write_tables(self, engine: Engine) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.output_dir / MEASUREMENTS_NAME, buffer.getvalue())
        flagged = sum(entry["flagged"] for entry in self.manifest)
        write_json_atomic(
            self.output_dir / MANIFEST_NAME,
            {**self.extra, **self.thresholds, "n": len(self.manifest), "flagged": flagged, "images": self.manifest},
        )
        logger.info("%d images measured, %d flagged for review", len(self.manifest), flagged)
