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

from monai_fetal.atomic import write_json_atomic
from monai_fetal.data.cohort import DATALIST_NAME
from monai_fetal.data.patients import patient_of
from monai_fetal.errors import ConfigError, InputDataError

__all__ = ["kshot_split", "write_split", "split_path", "SPLITS_DIR"]

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
        InputDataError: the cohort has no readable ``datalist.json``.
        ConfigError: as :func:`kshot_split`.
    """
    cohort_dir = Path(cohort_dir)
    datalist = cohort_dir / DATALIST_NAME
    if not datalist.is_file():
        raise InputDataError(datalist, "not found", f"prepare the cohort first: monai-fetal prepare SRC {cohort_dir}")
    try:
        content = json.loads(datalist.read_text())
        items = content["training"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise InputDataError(
            datalist, f"is not a MONAI datalist with a 'training' list ({err})", "prepare the cohort again"
        ) from err
    split = kshot_split(items, shots, seed, val=val, test=test)
    path = Path(out) if out is not None else split_path(cohort_dir, shots, seed)
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
