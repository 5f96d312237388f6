"""Shipped latent-generator weights: write a release folder from a training run, and check one at load.

A release folder holds ``latent_generator.json``, ``autoencoder.pt`` and ``unet.pt`` (the UNet in half
precision, as diffusion weights are commonly shipped), and optionally ``speckle.json`` (the texture its
autoencoder loses, :mod:`monai_fetal.networks.speckle`; :func:`write_speckle` fits it). Its files are listed with their sha256 in the
bundle's ``large_files.yml`` (MONAI's format: ``large_files: [{path, url, hash_val, hash_type}]``), and
:func:`verified_release` refuses a file whose hash differs, before ``torch.load`` ever reads it.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import torch
import yaml

from monai_fetal.atomic import atomic_path
from monai_fetal.errors import ConfigError, InputDataError
from monai_fetal.networks.latent import (
    AUTOENCODER_NAME,
    LATENT_SETTINGS_NAME,
    UNET_NAME,
    build_autoencoder,
    load_state,
    read_latent_settings,
    save_latent_settings,
)
from monai_fetal.networks.speckle import SPECKLE_NAME, fit_speckle

__all__ = [
    "RELEASE_FILES",
    "OPTIONAL_RELEASE_FILES",
    "sha256_of",
    "write_release",
    "write_speckle",
    "write_large_files",
    "verified_release",
    "checked_prior",
    "checked_init_prior",
    "start_from_prior",
]

RELEASE_FILES = (LATENT_SETTINGS_NAME, AUTOENCODER_NAME, UNET_NAME)
OPTIONAL_RELEASE_FILES = (SPECKLE_NAME,)
SPECKLE_SCALE = 0.4
"""Share of the residual's deviation the fitted texture adds (chosen on unlabelled images by ``benchmarks/speckle_scale.py``)."""


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_release(run_dir: str | Path, release_dir: str | Path) -> Path:
    """Copy a finished prior or conditioning run's settings and final weights into ``release_dir``.

    The UNet's state dict is stored in float16 (half the size; loading casts it back).

    Raises:
        InputDataError: the run lacks its settings or a final weights file.
    """
    run_dir, release_dir = Path(run_dir), Path(release_dir)
    read_latent_settings(run_dir)
    for name in (AUTOENCODER_NAME, UNET_NAME):
        if not (run_dir / name).is_file():
            raise InputDataError(run_dir / name, "not found", "let the training run finish (it writes its final weights at the end)")
    release_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(release_dir / LATENT_SETTINGS_NAME) as tmp:
        shutil.copyfile(run_dir / LATENT_SETTINGS_NAME, tmp)
    with atomic_path(release_dir / AUTOENCODER_NAME) as tmp:
        torch.save(torch.load(run_dir / AUTOENCODER_NAME, map_location="cpu", weights_only=True), tmp)
    unet = torch.load(run_dir / UNET_NAME, map_location="cpu", weights_only=True)
    with atomic_path(release_dir / UNET_NAME) as tmp:
        torch.save({k: v.half() if v.is_floating_point() else v for k, v in unet.items()}, tmp)
    return release_dir


def write_speckle(
    release_dir: str | Path, dataset_dir: str | Path, protocol_file: str | Path | None = None, count: int = 60, scale: float = SPECKLE_SCALE
) -> Path:
    """Fit the speckle texture of the release's autoencoder on ``count`` unlabelled images; write ``speckle.json``.

    The images are those :func:`~monai_fetal.data.unlabelled.unlabelled_items` gives (the protocol's
    ``unlabelled_pool`` when ``protocol_file`` is given; never its test images, and no annotation is read).

    Raises:
        InputDataError: the release lacks its settings or autoencoder, or the images cannot be read.
    """
    from monai_fetal.data.io import read_image
    from monai_fetal.data.unlabelled import unlabelled_items

    release_dir = Path(release_dir)
    settings = read_latent_settings(release_dir)
    autoencoder = load_state(build_autoencoder(settings), release_dir / AUTOENCODER_NAME)
    items = unlabelled_items(dataset_dir, protocol_file)[:count]
    images = (np.asarray(read_image(item["image"]), dtype=np.float32) / 255.0 for item in items)
    return fit_speckle(autoencoder, settings["image_size"], images, scale).save(release_dir / SPECKLE_NAME)


def _listed_files(release_dir: Path) -> list[str]:
    return list(RELEASE_FILES) + [name for name in OPTIONAL_RELEASE_FILES if (release_dir / name).is_file()]


def write_large_files(bundle_root: str | Path, release_dir: str | Path, url: str = "") -> Path:
    """Write ``bundle_root/large_files.yml`` listing the release's files (relative paths) with their sha256."""
    bundle_root, release_dir = Path(bundle_root), Path(release_dir)
    entries = [
        {"path": str((release_dir / name).relative_to(bundle_root)), "url": url, "hash_val": sha256_of(release_dir / name), "hash_type": "sha256"}
        for name in _listed_files(release_dir)
    ]
    path = bundle_root / "large_files.yml"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(yaml.safe_dump({"large_files": entries}, sort_keys=False))
    return path


def verified_release(bundle_root: str | Path, release_dir: str | Path) -> Path:
    """``release_dir`` after checking each of its files against the sha256 in ``bundle_root/large_files.yml``.

    An optional file (``speckle.json``) is checked when ``large_files.yml`` lists it, and refused when it does not.

    Raises:
        InputDataError: ``large_files.yml`` is missing or does not list a file, a file is missing, or its
            hash differs (a damaged or replaced file is never loaded).
    """
    bundle_root, release_dir = Path(bundle_root), Path(release_dir)
    listing = bundle_root / "large_files.yml"
    try:
        entries = {e["path"]: e for e in yaml.safe_load(listing.read_text())["large_files"]}
    except (OSError, yaml.YAMLError, KeyError, TypeError) as err:
        raise InputDataError(listing, f"cannot be read as MONAI's large_files.yml ({err})", "restore it from the repository") from err
    for name in RELEASE_FILES + OPTIONAL_RELEASE_FILES:
        path = release_dir / name
        key = str(path.relative_to(bundle_root)) if path.is_relative_to(bundle_root) else str(path)
        if name in OPTIONAL_RELEASE_FILES and key not in entries:
            if path.is_file():
                raise InputDataError(path, "is not listed in large_files.yml, so it cannot be checked", "delete it, or restore the bundle's models/ folder from the repository")
            continue
        if key not in entries:
            raise InputDataError(listing, f"does not list {key}", "restore large_files.yml from the repository")
        if not path.is_file():
            raise InputDataError(path, "not found", "reinstall the package, or restore the bundle's models/ folder from the repository")
        expected = entries[key]["hash_val"]
        found = sha256_of(path)
        if found != expected:
            raise InputDataError(path, f"has sha256 {found}, expected {expected}: the file is damaged or was replaced", "restore it from the repository (git checkout -- <file>) or reinstall the package")
    return release_dir


def checked_prior(bundle_root: str | Path, prior_dir: str | Path) -> str:
    """``prior_dir`` as a string, verified against ``large_files.yml`` when it is the bundle's shipped prior.

    A prior that the user trained (outside the bundle folder) has no listed hashes and is read as it is.
    """
    bundle_root, prior_dir = Path(bundle_root).resolve(), Path(prior_dir).resolve()
    if prior_dir.is_relative_to(bundle_root):
        verified_release(bundle_root, prior_dir)
    return str(prior_dir)


def _refuse_same_folder(prior_dir: Path, run_dir: Path) -> None:
    if run_dir.resolve() == prior_dir.resolve():
        raise ConfigError("output_dir", str(run_dir), "a new folder: it is the generator the run starts from, whose weights the run would replace")


def checked_init_prior(bundle_root: str | Path, init_prior_dir: str | Path | None, output_dir: str | Path) -> str | None:
    """The generator folder a stage starts from, checked as :func:`checked_prior` does; ``None`` when not given.

    Raises:
        ConfigError: ``output_dir`` is ``init_prior_dir`` (the run would replace the weights it starts from).
    """
    if not init_prior_dir:
        return None
    _refuse_same_folder(Path(init_prior_dir), Path(output_dir))
    return checked_prior(bundle_root, init_prior_dir)


def start_from_prior(prior_dir: str | Path, run_dir: str | Path) -> dict:
    """Give ``run_dir`` the settings and UNet of the generator in ``prior_dir``; its settings.

    A stage that retrains only the autoencoder's decoder (``train_decoder.json``) keeps the latent space, so
    the prior's UNet belongs to the new autoencoder unchanged; with both in ``run_dir``, :func:`write_release`
    makes a release of it. A rerun into the same ``run_dir`` (same UNet) continues.

    Raises:
        InputDataError: ``prior_dir`` lacks its settings or its UNet.
        ConfigError: ``run_dir`` is ``prior_dir``, or holds another generator's weights (an autoencoder or
            UNet the run would leave mismatched or replace), or a generator with other settings.
    """
    prior_dir, run_dir = Path(prior_dir), Path(run_dir)
    _refuse_same_folder(prior_dir, run_dir)
    settings = read_latent_settings(prior_dir)
    if not (prior_dir / UNET_NAME).is_file():
        raise InputDataError(prior_dir / UNET_NAME, "not found", "give a prior folder written by train_prior.json or write_release")
    unet = run_dir / UNET_NAME
    started_here = unet.is_file() and sha256_of(unet) == sha256_of(prior_dir / UNET_NAME)
    if (unet.is_file() or (run_dir / AUTOENCODER_NAME).is_file()) and not started_here:
        raise ConfigError("output_dir", str(run_dir), "a new folder: it holds another generator's weights, which the run would replace or mismatch")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_latent_settings(settings, run_dir / LATENT_SETTINGS_NAME)
    if not started_here:
        with atomic_path(unet) as tmp:
            shutil.copyfile(prior_dir / UNET_NAME, tmp)
    return settings
