"""Images without masks (generator priors, self-training): from a benchmark protocol, a cohort's
``unlabelled/`` folder, or a plain folder of images."""

from __future__ import annotations

import json
from pathlib import Path

from monai_fetal.data.io import IMAGE_SUFFIXES, strip_suffix
from monai_fetal.errors import ConfigError, InputDataError

__all__ = ["UNLABELLED_DIR", "PROTOCOL_PARTS", "unlabelled_items"]

UNLABELLED_DIR = "unlabelled"
PROTOCOL_PARTS = ("unlabelled_pool", "labelled_pool")
"""Protocol parts a model may train on without masks; the protocol's ``test`` part never is."""


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


def unlabelled_items(folder: str | Path, protocol: str | Path | None = None, part: str = "unlabelled_pool") -> list[dict]:
    """``[{"image": path, "id": id}]`` of images to train on without their masks.

    Args:
        folder: an HC18 folder (``images/``), a cohort folder (its ``unlabelled/`` folder when present,
            else its ``images/``), or a folder of images.
        protocol: a benchmark protocol JSON; when given, exactly the images of its ``part`` are taken
            from ``folder`` (annotations are never read).
        part: the protocol part (``unlabelled_pool`` by default; ``test`` is refused).

    Raises:
        InputDataError: the folder or a listed image is missing, or no image is found.
        ConfigError: ``part`` is not a part that may be trained on.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputDataError(folder, "is not a folder", "give a folder of images, an HC18 folder or a cohort folder")
    if protocol:
        paths = _protocol_images(folder, Path(protocol), part)
    else:
        source = next((folder / d for d in (UNLABELLED_DIR, "images") if (folder / d).is_dir()), folder)
        paths = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(IMAGE_SUFFIXES))
    if not paths:
        raise InputDataError(folder, "holds no image (.png, .nii.gz, .nrrd, ...)", "give a folder with ultrasound images")
    return [{"image": str(p), "id": strip_suffix(p.name)} for p in paths]
