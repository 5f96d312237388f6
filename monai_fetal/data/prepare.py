"""``prepare``: a source cohort (HC18 layout or cohort folder) to a normalised cohort folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tqdm import tqdm

from monai_fetal.data.cohort import Case, Cohort, CohortItem, find_cases, write_pair
from monai_fetal.data.io import read_image, read_mask, to_uint8
from monai_fetal.errors import InputDataError, summarise
from monai_fetal.shape.outline import fill_head_annotation
from monai_fetal.staging import check_no_overlap, output_lock, staged_folder

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

    Outline annotations are filled by ellipse fit. The folder is built in a staging folder of its own and
    renamed at the end, under a lock on ``out`` (a second run to the same ``out`` waits): a failed or
    interrupted run leaves ``out`` as it was (see :mod:`monai_fetal.staging`). An existing complete ``out`` is
    kept as it is unless ``overwrite``; ``overwrite`` replaces only what ``monai-fetal`` wrote there and keeps
    the rest (a cohort's ``splits/``).

    Args:
        src: HC18 folder (flat, or ``images/`` + ``annotations/``) or cohort folder.
        out: the cohort folder to write; it may not be ``src``, hold it, or lie inside its data folders.
        cohort: cohort name written to each datalist item (default: the name in ``src``'s datalist when it is a
            prepared cohort, else ``src``'s folder name).
        overwrite: replace an existing ``out`` that ``monai-fetal`` wrote.
        skip_bad: leave out cases that fail validation (logged) instead of stopping.
        progress: show a progress bar.

    Raises:
        InputDataError: ``src`` is unusable, some cases are bad and not ``skip_bad``, ``out`` overlaps
            ``src``, ``out`` exists and is not a cohort folder (or, with ``overwrite``, was not written by
            ``monai-fetal``), or the disk is full (``DiskFullError``).
    """
    src, out = Path(src), Path(out)
    check_no_overlap(out, [], cohorts=[src], replaced=True)
    datalist = Cohort(out).datalist
    with output_lock(out):
        if out.is_dir() and not overwrite:
            if datalist.is_file():
                logger.info("%s is already prepared; pass overwrite to redo it", out)
                return datalist
            if any(out.iterdir()):
                raise InputDataError(out, "exists and is not a cohort folder", "choose a new output folder or empty this one")
        cases = find_cases(src)
        name = cohort or _cohort_name(src)
        with staged_folder(out, "prepare") as staging:
            items = _write_cases(cases, staging, name, skip_bad, progress, src)
            Cohort.write(staging, items, name)
    return datalist


def _cohort_name(src: Path) -> str:
    """The name in ``src``'s datalist when it is a prepared cohort, else its folder's name."""
    try:
        name = json.loads(Cohort(src).datalist.read_text()).get("name")
    except (OSError, ValueError, AttributeError):
        name = None
    return name if isinstance(name, str) and name else src.resolve().name


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
        raise InputDataError(
            src,
            f"{len(failures)} of {len(cases)} cases cannot be used: {summarise(failures, separator='; ')}",
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
    if Cohort(src).datalist.is_file():
        return str(src)
    prepare_cohort(src, prepared, progress=False)
    return str(prepared)
