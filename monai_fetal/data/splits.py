"""Seeded k-shot training / validation / test splits of a cohort, by patient.

For a seed the patients are put in one random order and each patient's images in a random order.
Training takes the first image of each of the first ``shots`` patients; validation takes ``val``
images from the last patients of the order, test the images of the patients before them (``test``
images, or every patient left). So for one seed the training set of ``shots=k`` is a subset of that
of ``shots=k+1``, and validation (and test, when ``test`` is given) is the same for every ``shots``:
points of a few-shot curve differ only by the added training images. No patient is on two sides;
the other images of a training patient are used nowhere.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from monai.data import load_decathlon_datalist

from monai_fetal.atomic import write_json_atomic
from monai_fetal.data.cohort import DATALIST_NAME
from monai_fetal.data.patients import patient_of
from monai_fetal.errors import ConfigError, InputDataError, summarise
from monai_fetal.staging import check_no_overlap

__all__ = ["kshot_split", "write_split", "split_path", "read_datalist", "evaluation_items", "SPLITS_DIR"]

SPLITS_DIR = "splits"


def _check_count(key: str, value: object, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ConfigError(key, value, "a non-negative integer number of images" + (", or None" if allow_none else ""))


def _patients(items: list[dict]) -> dict[str, list[dict]]:
    """Items grouped by patient (``patient`` key, else from the id), each group sorted by id."""
    groups: dict[str, list[dict]] = defaultdict(list)
    seen: set[str] = set()
    for index, item in enumerate(items):
        if not isinstance(item, dict) or "id" not in item:
            raise ConfigError(f"items[{index}]", item, "a datalist item (dict) with an 'id'")
        if item["id"] in seen:
            raise ConfigError(f"items[{index}].id", item["id"], "ids that appear once in the datalist")
        seen.add(item["id"])
        groups[str(item.get("patient") or patient_of(str(item["id"])))].append(item)
    return {patient: sorted(group, key=lambda item: str(item["id"])) for patient, group in sorted(groups.items())}


def _take_from_end(order: list[str], groups: dict[str, list[dict]], count: int) -> tuple[list[dict], list[str]]:
    """``count`` images from whole patients taken from the end of ``order`` (the last one possibly in part)."""
    chosen: list[dict] = []
    used: list[str] = []
    while len(chosen) < count and order:
        patient = order.pop()
        used.append(patient)
        chosen.extend(groups[patient][: count - len(chosen)])
    return chosen, used


def kshot_split(
    items: list[dict], shots: int, seed: int, val: int = 5, test: int | None = None
) -> dict[str, list[dict]]:
    """Split datalist items into ``training`` (``shots`` images, one per patient), ``validation`` and ``test``.

    Args:
        items: datalist items, each with ``"id"`` and ``"patient"`` (without ``"patient"``, the
            patient is read from the id, e.g. HC18 ``773_2HC`` is patient ``773``).
        shots: training images, from as many distinct patients.
        seed: seed of the patient and image order.
        val: validation images, from patients not in training.
        test: test images, from patients in neither; ``None`` takes every image of the patients left.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}`` with copies of the items.

    Raises:
        ConfigError: bad arguments, duplicate ids, or more images asked for than the cohort's
            patients allow (the message says how many it allows).
    """
    _check_count("shots", shots)
    _check_count("val", val)
    _check_count("test", test, allow_none=True)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError("seed", seed, "an integer")
    if not isinstance(items, (list, tuple)):
        raise ConfigError("items", type(items).__name__, "a list of datalist items")
    groups = _patients(list(items))
    rng = np.random.default_rng(int(seed))
    names = list(groups)
    order = [names[i] for i in rng.permutation(len(names))]
    groups = {patient: [group[i] for i in rng.permutation(len(group))] for patient, group in groups.items()}
    images = sum(len(group) for group in groups.values())
    summary = f"the cohort has {images} images of {len(names)} patients"

    remaining = list(order)
    validation, val_patients = _take_from_end(remaining, groups, val)
    if len(validation) < val:
        raise ConfigError("val", val, f"at most {len(validation)} validation images: {summary}")
    testing: list[dict] = []
    if test is not None:
        testing, _ = _take_from_end(remaining, groups, test)
        if len(testing) < test:
            raise ConfigError("test", test, f"at most {len(testing)} test images with val={val}: {summary}")
    reserved = 0 if test is not None else 1
    allowed = len(remaining) - reserved
    if shots > allowed:
        left = "" if test is not None else " and at least one test patient"
        raise ConfigError(
            "shots", shots, f"at most {max(allowed, 0)} with val={val}, test={test}{left}: {summary}"
        )
    training = [groups[patient][0] for patient in remaining[:shots]]
    if test is None:
        testing = [item for patient in remaining[shots:] for item in groups[patient]]
    return {
        "training": [dict(item) for item in training],
        "validation": [dict(item) for item in validation],
        "test": [dict(item) for item in testing],
    }


def split_path(cohort_dir: str | Path, shots: int, seed: int) -> Path:
    """Default split file of a cohort: ``cohort_dir/splits/shots{N}_seed{S}.json``."""
    return Path(cohort_dir) / SPLITS_DIR / f"shots{shots}_seed{seed}.json"


def write_split(
    cohort_dir: str | Path,
    shots: int,
    seed: int,
    val: int = 5,
    test: int | None = None,
    out: str | Path | None = None,
) -> Path:
    """Write the k-shot split of ``cohort_dir/datalist.json`` as a MONAI datalist and return its path.

    The file has ``training``, ``validation`` and ``test`` lists whose paths stay relative to the
    cohort folder (wherever the file is written), so
    ``load_decathlon_datalist(path, data_list_key="test", base_dir=cohort_dir)`` reads it. Written
    atomically; the same arguments always write the same file.

    Args:
        cohort_dir: a prepared cohort folder.
        shots, seed, val, test: as :func:`kshot_split`.
        out: the file to write (default :func:`split_path`).

    Raises:
        InputDataError: the cohort has no readable ``datalist.json``, or ``out`` is one of the cohort's files,
            a folder, or an existing file that is not a split.
        ConfigError: as :func:`kshot_split`.
    """
    cohort_dir = Path(cohort_dir)
    content = read_datalist(cohort_dir)
    path = Path(out) if out is not None else split_path(cohort_dir, shots, seed)
    _check_split_target(path, cohort_dir)
    split = kshot_split(content["training"], shots, seed, val=val, test=test)
    name = content.get("name", cohort_dir.name)
    write_json_atomic(
        path,
        {
            "name": f"{name} shots={shots} seed={seed}",
            "description": f"k-shot split by patient of {name}; paths are relative to the cohort folder",
            "split": {"cohort": name, "shots": shots, "seed": seed, "val": val, "test": test},
            "numTraining": len(split["training"]),
            "numValidation": len(split["validation"]),
            "numTest": len(split["test"]),
            **split,
        },
    )
    return path


def _read_json(path: Path, what: str, fix: str) -> dict:
    """The JSON object in ``path``.

    Raises:
        InputDataError: ``path`` is missing, unreadable, not JSON, or not an object.
    """
    if not path.is_file():
        raise InputDataError(path, "not found" if not path.exists() else "is not a file", fix)
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputDataError(path, f"is not a readable {what} ({err})", fix) from err
    if not isinstance(content, dict):
        raise InputDataError(path, f"is not a {what}: it holds a JSON {type(content).__name__}, not an object", fix)
    return content


def _check_items(path: Path, key: str, items: object, fix: str) -> list[dict]:
    """``items`` (the ``key`` list of the datalist ``path``) checked: a non-empty list of items with an image,
    a label and an id."""
    if not isinstance(items, list):
        found = "no such key" if items is None else f"a JSON {type(items).__name__}"
        raise InputDataError(path, f"'{key}' is not a list of items ({found})", fix)
    if not items:
        raise InputDataError(path, f"'{key}' lists no images", fix)
    bad = [
        f"{key}[{index}]"
        for index, item in enumerate(items)
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("image", "label", "id"))
    ]
    if bad:
        raise InputDataError(path, f"items without a string 'image', 'label' and 'id': {summarise(bad)}", fix)
    return items


def read_datalist(cohort_dir: str | Path) -> dict:
    """The content of ``cohort_dir/datalist.json``, its ``training`` list checked (non-empty, items with an
    image, a label and an id).

    Raises:
        InputDataError: the datalist is missing, unreadable, not JSON, or has no usable ``training`` list.
    """
    cohort_dir = Path(cohort_dir)
    path = cohort_dir / DATALIST_NAME
    if not path.exists():
        raise InputDataError(path, "not found", f"prepare the cohort first: monai-fetal prepare SRC {cohort_dir}")
    fix = f"prepare the cohort again: monai-fetal prepare SRC {cohort_dir} --overwrite"
    content = _read_json(path, "MONAI datalist (an object with a 'training' list)", fix)
    _check_items(path, "training", content.get("training"), fix)
    return content


def _check_split_target(path: Path, cohort_dir: Path) -> None:
    """Refuse to write a split over the cohort's own files, a folder, or a file that is not a split."""
    check_no_overlap(path, [cohort_dir / DATALIST_NAME, cohort_dir / "spacing.csv"], cohorts=[cohort_dir])
    if path.is_dir():
        raise InputDataError(path, "is a folder", "give the split a file name ending in .json")
    if path.exists():
        try:
            is_split = isinstance(json.loads(path.read_text()).get("split"), dict)
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            is_split = False
        if not is_split:
            raise InputDataError(path, "exists and is not a split file, which split never replaces", "give a new file name")


def evaluation_items(cohort_dir: str | Path, split_file: str | Path | None = None, key: str = "test") -> list[dict]:
    """The items to evaluate, with absolute paths: every image of the cohort, or the ``key`` part of a split.

    A split must be of this cohort (its ``split.cohort`` is the cohort's name where it records one) and list
    only ids of the cohort; every listed image and mask must exist.

    Raises:
        InputDataError: the datalist or split is missing or malformed, the part is empty, the split is of
            another cohort or lists ids the cohort lacks, or listed files are missing.
    """
    cohort_dir = Path(cohort_dir)
    content = read_datalist(cohort_dir)
    source = cohort_dir / DATALIST_NAME
    if split_file:
        source = Path(split_file)
        fix = f"write the split of this cohort: monai-fetal split {cohort_dir} --shots N"
        split = _read_json(source, "split file", fix)
        _check_items(source, key, split.get(key), fix)
        recorded = split.get("split", {}).get("cohort") if isinstance(split.get("split"), dict) else None
        name = content.get("name", cohort_dir.name)
        if recorded is not None and recorded != name:
            raise InputDataError(source, f"is a split of cohort {recorded!r}, not of {name!r} ({cohort_dir})", fix)
        known = {item["id"] for item in content["training"]}
        unknown = [item["id"] for item in split[key] if item["id"] not in known]
        if unknown:
            raise InputDataError(source, f"lists {len(unknown)} ids that {cohort_dir} does not have: {summarise(unknown)}", fix)
    items = load_decathlon_datalist(str(source), data_list_key=key if split_file else "training", base_dir=str(cohort_dir))
    missing = [path for item in items for path in (item["image"], item["label"]) if not Path(path).is_file()]
    if missing:
        raise InputDataError(
            source,
            f"lists {len(missing)} files that do not exist: {summarise(missing)}",
            f"prepare the cohort again: monai-fetal prepare SRC {cohort_dir} --overwrite",
        )
    return items
