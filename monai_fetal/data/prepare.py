"""``prepare``: a source cohort (HC18 layout or cohort folder) to a normalised cohort folder."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from tqdm import tqdm

from monai_fetal.atomic import replace_dir
from monai_fetal.data.cohort import DATALIST_NAME, Case, CohortItem, find_cases, write_cohort_index, write_pair
from monai_fetal.data.io import read_image, read_mask, to_uint8
from monai_fetal.errors import InputDataError
from monai_fetal.shape.outline import fill_head_annotation

__all__ = ["prepare_cohort", "prepare_case", "ensure_cohort"]

logger = logging.getLogger(__name__)


def prepare_case(case: Case):
    """Greyscale ``uint8`` image and filled 0/1 mask of one case, validated.

    Raises:
        InputDataError: unreadable files, size mismatch, empty or non-binary mask, or an outline
            that no ellipse fits.
    """
    image = to_uint8(read_image(case.image))
    annotation = read_mask(case.mask, expected_shape=image.shape)
    try:
        mask = fill_head_annotation(annotation)
    except ValueError as err:
        raise InputDataError(case.mask, f"cannot be filled ({err})", "draw the whole head outline or a filled head") from err
    return image, mask


def prepare_cohort(
    src: str | Path,
    out: str | Path,
    cohort: str | None = None,
    overwrite: bool = False,
    skip_bad: bool = False,
    progress: bool = True,
) -> Path:
    """Convert ``src`` into the cohort folder ``out`` and return the path of its ``datalist.json``.

    Outline annotations are filled by ellipse fit. The folder is built under a temporary name and
    renamed at the end: a failed or interrupted run leaves ``out`` as it was. An existing complete ``out`` is
    kept as it is unless ``overwrite``.

    Args:
        src: HC18 folder (flat, or ``images/`` + ``annotations/``) or cohort folder.
        out: the cohort folder to write.
        cohort: cohort name written to each datalist item (default: ``src``'s folder name).
        overwrite: replace an existing ``out``.
        skip_bad: leave out cases that fail validation (logged) instead of stopping.
        progress: show a progress bar.

    Raises:
        InputDataError: ``src`` is unusable, some cases are bad and not ``skip_bad``, ``out``
            exists and is not a cohort folder, or the disk is full (``DiskFullError``).
    """
    src, out = Path(src), Path(out)
    datalist = out / DATALIST_NAME
    if out.exists() and not overwrite:
        if datalist.is_file():
            logger.info("%s is already prepared; pass overwrite to redo it", out)
            return datalist
        if any(out.iterdir()):
            raise InputDataError(out, "exists and is not a cohort folder", "choose a new output folder or empty this one")
    cases = find_cases(src)
    name = cohort or src.resolve().name
    staging = out.with_name(f".{out.name}.partial")
    if staging.exists():
        shutil.rmtree(staging)
    try:
        items = _write_cases(cases, staging, name, skip_bad, progress, src)
        write_cohort_index(staging, items, name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # a failed or interrupted run leaves nothing beside ``out``
        raise
    out.parent.mkdir(parents=True, exist_ok=True)
    replace_dir(staging, out)
    return datalist


def _write_cases(cases: list[Case], staging: Path, name: str, skip_bad: bool, progress: bool, src: Path) -> list[CohortItem]:
    """Validate ``cases`` and write the usable ones into ``staging``; their datalist items."""
    items, failures = [], []
    for case in tqdm(cases, desc=f"prepare {name}", disable=not progress, unit="img"):
        try:
            image, mask = prepare_case(case)
        except InputDataError as err:
            failures.append(err)
            continue
        write_pair(staging, case.id, image, mask)
        items.append(CohortItem(case.id, case.patient, name, case.spacing, case.hc_mm))
    if failures and not skip_bad:
        listing = "\n".join(f"  - {err}" for err in failures)
        raise InputDataError(
            src,
            f"{len(failures)} of {len(cases)} cases cannot be used:\n{listing}",
            "correct or remove those files, or pass --skip-bad to leave them out",
        )
    for err in failures:
        logger.warning("skipped: %s", err)
    if not items:
        raise InputDataError(src, "no usable case", "check the annotations")
    return items


def ensure_cohort(src: str | Path, prepared: str | Path) -> str:
    """``src`` itself when it is a prepared cohort folder, else ``src`` prepared into ``prepared``.

    Lets bundles take either a cohort folder or a raw HC18 folder as ``dataset_dir``.
    """
    if (Path(src) / DATALIST_NAME).is_file():
        return str(src)
    prepare_cohort(src, prepared, progress=False)
    return str(prepared)
