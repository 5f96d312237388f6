"""Images without masks (generator priors, self-training): from a benchmark protocol, a cohort's
``unlabelled/`` folder, or a plain folder of images."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from monai_fetal.data.cohort import UNLABELLED_DIR, Cohort, image_files
from monai_fetal.data.io import strip_suffix
from monai_fetal.data.patients import patient_of
from monai_fetal.errors import ConfigError, InputDataError

__all__ = ["PROTOCOL_PARTS", "HELD_OUT_PARTS", "protocol_folder", "unlabelled_items", "training_images"]

HELD_OUT_PARTS = ("validation", "test")
"""Split parts whose images (and their patients' other images) are never trained on without masks."""
PROTOCOL_PARTS = ("unlabelled_pool", "labelled_pool")
"""Protocol parts a model may train on without masks; the protocol's ``test`` part never is."""


def protocol_folder(protocol: str | Path | None, part: str = "unlabelled_pool") -> str | None:
    """The folder name (e.g. ``hc18_train``) whose images a protocol's ``part`` lists; ``None`` without a protocol."""
    if not protocol:
        return None
    try:
        return str(json.loads(Path(protocol).read_text())[part]["folder"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise InputDataError(protocol, f"has no '{part}.folder' ({err})", "give ../shared/data/benchmark_protocol.json or a file of that form") from err


def _protocol_images(folder: Path, protocol: Path, part: str) -> list[Path]:
    if part not in PROTOCOL_PARTS:
        raise ConfigError("protocol_part", part, "one of " + ", ".join(repr(p) for p in PROTOCOL_PARTS) + " (test images are never trained on)")
    try:
        names = json.loads(protocol.read_text())[part]["images"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise InputDataError(protocol, f"has no list '{part}.images' ({err})", "give ../shared/data/benchmark_protocol.json or a file of that form") from err
    images = folder / "images" if (folder / "images").is_dir() else folder
    missing = [n for n in names if not (images / n).is_file()]
    if missing:
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise InputDataError(images, f"lacks {', '.join(missing[:10])}{more} listed in {protocol}", "give the folder the protocol names")
    return [images / n for n in names]


def _held_out_patients(split: Path) -> set[str]:
    """The patients of a split's validation and test images: their datalist ``patient`` and what their ids tell
    (:func:`patient_of`, the id itself where it tells nothing)."""
    try:
        content = json.loads(split.read_text())
        items = [item for key in HELD_OUT_PARTS for item in content.get(key) or []]
        return {str(item.get("patient") or item["id"]) for item in items} | {patient_of(str(item["id"])) for item in items}
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise InputDataError(split, f"is not a readable split file ({err})", "give the split.json that monai-fetal split or finetune wrote") from err


def unlabelled_items(
    folder: str | Path, protocol: str | Path | None = None, part: str = "unlabelled_pool", split: str | Path | None = None
) -> list[dict]:
    """``[{"image": path, "id": id}]`` of images to train on without their masks.

    Args:
        folder: an HC18 folder (``images/``), a cohort folder (its ``unlabelled/`` folder when present,
            else its ``images/``), or a folder of images.
        protocol: a benchmark protocol JSON; when given, exactly the images of its ``part`` are taken
            from ``folder`` (annotations are never read).
        part: the protocol part (``unlabelled_pool`` by default; ``test`` is refused).
        split: a split file (``split.json`` of ``finetune``): its validation and test images, and every other image
            of their patients, are left out, so a cohort without ``unlabelled/`` (whose ``images/`` hold them) never
            lets self-training see what the run is validated or tested on.

    Raises:
        InputDataError: the folder, a listed image or the split is missing, or no image is found (or none is left).
        ConfigError: ``part`` is not a part that may be trained on.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputDataError(folder, "is not a folder", "give a folder of images, an HC18 folder or a cohort folder")
    if protocol:
        paths = _protocol_images(folder, Path(protocol), part)
    else:
        cohort = Cohort(folder)
        if (folder / UNLABELLED_DIR).is_dir():
            paths = cohort.unlabelled_images()
        else:
            paths = image_files(folder / "images" if (folder / "images").is_dir() else folder)
    if not paths:
        raise InputDataError(folder, "holds no image (.png, .nii.gz, .nrrd, ...)", "give a folder with ultrasound images")
    if split:
        held_out = _held_out_patients(Path(split))
        paths = [p for p in paths if patient_of(strip_suffix(p.name)) not in held_out]
        if not paths:
            raise InputDataError(folder, f"holds only images of the validation and test patients of {split}", "give a folder of other images")
    return [{"image": str(p), "id": strip_suffix(p.name)} for p in paths]


def training_images(folders: Sequence[str | Path], protocol: str | Path | None = None) -> list[str]:
    """The image paths of ``folders`` (as :func:`unlabelled_items` finds them) that a generator may have seen.

    Of a folder named as ``protocol``'s folder (``hc18_train``), only the protocol's unlabelled pool is taken;
    other folders are taken whole.
    """
    pool_folder = protocol_folder(protocol)
    return [item["image"] for folder in folders for item in unlabelled_items(folder, protocol if pool_folder == Path(folder).name else None)]
