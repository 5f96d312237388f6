"""Synthesis of a cohort folder of image-mask pairs with a trained generator: atomic per pair, resumable.

Pair ``i`` is ``images/syn_NNNNN.png`` and ``masks/syn_NNNNN.png``; its starting noise comes from its own
seed (:func:`pair_seed`) and its mask from the mask source's ``i``-th mask, so a rerun (or a run with a
larger ``n``) reproduces pair ``i`` exactly with DDIM and only writes the pairs that are missing. The
mask is written before the image, each by a temporary file renamed into place, so a pair is complete
once its image exists; leftovers of a killed run (temporary files, a mask without its image) are
cleaned or rewritten. ``synthesis.json`` records the options; a rerun with other options (but ``n``)
into the same folder is refused rather than mixing two sets, unless ``overwrite`` replaces that set.

The folder carries the tool's marker (:mod:`monai_fetal.staging`) from the start: the synthesiser writes
only into a new or empty folder or one it marked itself (a set of an earlier version, without a marker,
is taken over when its ``synthesis.json`` matches the options), never into a cohort that ``prepare`` or
``phantom`` wrote or a folder of the user's, and ``overwrite`` removes only what the marker lists.
Runs into one folder take turns (:func:`~monai_fetal.staging.output_lock`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import DiffusionInferer
from monai.transforms import RandAffine
from tqdm import tqdm

from monai_fetal.atomic import write_json_atomic
from monai_fetal.data.cohort import Cohort, CohortItem, find_cases, write_pair
from monai_fetal.data.io import read_mask
from monai_fetal.engines.diffusion import clean_head_mask, make_scheduler, sample_pairs
from monai_fetal.engines.latent import latent_inferer, sample_latent_images
from monai_fetal.errors import ConfigError, InputDataError
from monai_fetal.networks.diffusion import MaskConditionedDiffusion, build_generator, find_generator_files, load_generator_weights, read_settings
from monai_fetal.networks.latent import LATENT_SETTINGS_NAME, UNET_NAME, LatentGenerator, load_latent_generator
from monai_fetal.networks.speckle import SpeckleTexture
from monai_fetal.shape.outline import fill_head_annotation
from monai_fetal.shape.prior import EllipseShapePrior
from monai_fetal.staging import MARKER_NAME, output_lock, read_marker, write_marker

__all__ = ["PriorMasks", "FileMasks", "PairSynthesizer", "pair_seed", "mask_source", "load_synthesis_generator", "MANIFEST_NAME", "SET_ENTRIES"]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "synthesis.json"
SET_ENTRIES = ("images", "masks", "datalist.json", MANIFEST_NAME)
"""What the synthesiser writes in its folder (and its marker lists); nothing else there is touched."""
PREFIX = "syn_"
_COMMAND = "synthesize"
_MAX_ATTEMPTS = 8  # joint mode: seeds tried per pair until a head is generated
_TEXTURE_STREAM = 1 << 20  # pair_seed's attempt for the texture's noise: a stream no sampling attempt uses


def pair_seed(seed: int, index: int, attempt: int = 0) -> int:
    """The seed of pair ``index`` (and of its ``attempt``-th retry): independent streams per pair."""
    return int(np.random.SeedSequence([int(seed), int(index), int(attempt)]).generate_state(1)[0])


def _check_size(size: object, key: str) -> tuple[int, int] | None:
    if size is None:
        return None
    ok = isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 16 for v in size)
    if not ok:
        raise ConfigError(key, size, "[rows, cols], two integers >= 16, or null for the default size")
    return int(size[0]), int(size[1])


class PriorMasks:
    """Masks drawn from an ellipse shape prior: mask ``i`` depends only on ``seed`` and ``i``.

    Args:
        prior: the fitted prior (``shape_prior.json`` of the generator folder).
        count: masks available (the number of pairs).
        size: ``(rows, cols)`` of the masks; default the prior's reference size (that of the real images).
        seed: seed of the draws.
    """

    def __init__(self, prior: EllipseShapePrior, count: int, size: Sequence[int] | None = None, seed: int = 0) -> None:
        self.size = _check_size(None if size is None else list(size), "output_size") or prior.size
        self.masks = prior.sample(count, self.size, seed)

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.masks[index]

    def describe(self) -> dict:
        return {"source": "shape_prior", "size": list(self.size)}


class FileMasks:
    """Masks read from files (a cohort folder, an HC18 folder or a folder of mask images), used in turn.

    Args:
        folder: where the masks are; outlines are filled by ellipse fit.
        size: resize every mask to ``(rows, cols)`` (nearest neighbour); default each mask's own size.
        affine: move each mask by a random affine (rotation up to 20 degrees, scale within 15 %, shift up
            to 10 % of each side), drawn from the pair's seed: new heads from real ones. A head pushed out
            of the image is left unmoved.
        seed: seed of the affine draws.

    Raises:
        InputDataError: no masks found, or an unreadable mask.
    """

    def __init__(self, folder: str | Path, size: Sequence[int] | None = None, affine: bool = False, seed: int = 0) -> None:
        folder = Path(folder)
        self.folder = folder
        self.size = _check_size(None if size is None else list(size), "output_size")
        self.affine = bool(affine)
        self.seed = seed
        try:
            self.paths = [case.mask for case in find_cases(folder)]
        except InputDataError:
            self.paths = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")) if folder.is_dir() else []
        if not self.paths:
            raise InputDataError(folder, "holds no mask files", "give a cohort folder or a folder of head mask images")

    def __len__(self) -> int:
        return len(self.paths)

    def _move(self, mask: np.ndarray, index: int) -> np.ndarray:
        rows, cols = mask.shape
        transform = RandAffine(
            prob=1.0,
            rotate_range=math.radians(20),
            scale_range=0.15,
            translate_range=(0.1 * rows, 0.1 * cols),
            mode="nearest",
            padding_mode="zeros",
        )
        transform.set_random_state(seed=pair_seed(self.seed, index) % 2**32)
        moved = np.asarray(transform(mask[None]))[0]
        return moved if moved.sum() >= 0.5 * mask.sum() else mask

    def __getitem__(self, index: int) -> np.ndarray:
        path = self.paths[index % len(self.paths)]
        mask = fill_head_annotation(read_mask(path)).astype(np.float32)
        if self.size is not None and mask.shape != self.size:
            mask = F.interpolate(torch.from_numpy(mask)[None, None], size=self.size, mode="nearest")[0, 0].numpy()
        if self.affine:
            mask = self._move(mask, index)
        return (mask > 0).astype(np.uint8)

    def describe(self) -> dict:
        return {"source": str(self.folder.resolve()), "size": None if self.size is None else list(self.size), "affine": self.affine}


def mask_source(
    generator_dir: str | Path,
    count: int,
    mask_dir: str | Path | None = None,
    size: Sequence[int] | None = None,
    seed: int = 0,
    affine: bool = False,
) -> PriorMasks | FileMasks:
    """Masks of mask files under ``mask_dir`` (randomly moved with ``affine``), else of the generator's ``shape_prior.json``.

    Raises:
        ConfigError: ``affine`` without ``mask_dir``.
    """
    if affine and not mask_dir:
        raise ConfigError("mask_affine", affine, "false unless mask_dir names real masks to move")
    if mask_dir:
        return FileMasks(mask_dir, size, affine, seed)
    folder = Path(generator_dir)
    folder = folder if folder.is_dir() else folder.parent if (folder.parent / "shape_prior.json").is_file() else folder.parent.parent
    return PriorMasks(EllipseShapePrior.load(folder / "shape_prior.json"), count, size, seed)


def load_synthesis_generator(
    generator_dir: str | Path, sampler: str = "ddim", steps: int = 50, device: str | torch.device = "cpu", x0_clip: float | None = None
) -> tuple[MaskConditionedDiffusion | LatentGenerator, dict, DiffusionInferer, Path]:
    """``(generator, settings, inferer, weights)`` of a latent generator folder or a pixel-space one.

    A folder with ``latent_generator.json`` (from ``train-generator --mode latent``) gives the latent
    generator and MONAI's ``LatentDiffusionInferer``; otherwise the pixel-space generator of the folder
    (or checkpoint) and ``DiffusionInferer``, both set to ``steps`` steps of ``sampler``. ``x0_clip``
    bounds the predicted clean sample (0: none); ``None`` takes the generator's kind default
    (:data:`~monai_fetal.engines.latent.LATENT_X0_CLIP` for latents, 1 for images in [-1, 1]).
    """
    folder = Path(generator_dir)
    bound = {} if x0_clip is None else {"x0_clip": x0_clip}
    if (folder / LATENT_SETTINGS_NAME).is_file():
        generator = load_latent_generator(folder, device)
        return generator, generator.settings, latent_inferer(generator.settings, sampler, steps, **bound), folder / UNET_NAME
    settings_path, weights = find_generator_files(folder)
    settings = read_settings(settings_path)
    generator = load_generator_weights(build_generator(settings), weights, device)
    return generator, settings, DiffusionInferer(make_scheduler(settings, sampler, steps, **bound)), weights


def _read_manifest(path: Path) -> dict | None:
    """The options recorded in ``synthesis.json`` (``None``: none, or not a JSON object)."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _x0_clip(scheduler: object) -> float:
    """The scheduler's bound of the predicted clean sample (0: not clipped)."""
    return float(scheduler.clip_sample_values[1]) if scheduler.clip_sample else 0.0


class PairSynthesizer:
    """Write ``num_samples`` synthetic pairs into the cohort folder ``output_dir`` (see the module docstring).

    Args:
        generator: the trained generator (EMA weights, eval mode): pixel-space or latent.
        settings: its settings.
        inferer: ``DiffusionInferer`` (``LatentDiffusionInferer`` for a latent generator) with the sampling
            scheduler (DDIM: pair ``i`` depends only on its seed); its bound of the predicted clean sample is
            recorded in the manifest when it is not 1 (the bound every set had before it could be set).
        masks: a :class:`PriorMasks` or :class:`FileMasks`; in ``joint`` mode it only sets the output size.
        output_dir: the cohort folder to write.
        num_samples: pairs wanted.
        guidance: classifier-free guidance scale (>= 1; 1 is plain conditional sampling).
        seed: the seed of the set.
        batch_size: pairs sampled at once.
        weights: the weights file, recorded in the manifest (its digest) so that a folder is never
            completed with another generator.
        progress: show a progress bar.
        overwrite: replace a set the synthesiser wrote in ``output_dir`` with other options (only its
            :data:`SET_ENTRIES`); without it such a folder is refused.
        autocast: sample a latent generator under bfloat16 autocast (see
            :func:`~monai_fetal.engines.latent.sample_latent_images`); recorded in the manifest when on, since the
            pairs differ slightly (a float32 set's manifest is as before it existed, so earlier sets resume). A
            pixel-space generator samples in float32 either way.
        speckle: texture added to each image at the output size, its noise drawn from the pair's seed
            (:func:`~monai_fetal.networks.speckle.speckle_of`: the generator folder's ``speckle.json``); recorded
            in the manifest when given.
    """

    def __init__(
        self,
        generator: MaskConditionedDiffusion | LatentGenerator,
        settings: Mapping,
        inferer: DiffusionInferer,
        masks: PriorMasks | FileMasks,
        output_dir: str | Path,
        num_samples: int,
        guidance: float = 1.0,
        seed: int = 0,
        batch_size: int = 8,
        weights: str | Path | None = None,
        progress: bool = True,
        overwrite: bool = False,
        autocast: bool = False,
        speckle: SpeckleTexture | None = None,
    ) -> None:
        for key, value in (("num_samples", num_samples), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(key, value, "an integer >= 1")
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not 1.0 <= guidance <= 20.0:
            raise ConfigError("guidance", guidance, "a classifier-free guidance scale from 1 (none) to 20")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError("seed", seed, "an integer")
        self.generator = generator
        self.settings = settings
        self.inferer = inferer
        self.masks = masks
        self.output_dir = Path(output_dir)
        self.num_samples = num_samples
        self.guidance = float(guidance)
        self.seed = seed
        self.batch_size = batch_size
        self.weights = weights
        self.progress = progress
        self.overwrite = overwrite
        self.autocast = bool(autocast) and isinstance(generator, LatentGenerator)
        self.speckle = speckle

    def manifest(self) -> dict:
        """The options that define the set (everything but its size)."""
        scheduler = self.inferer.scheduler
        x0_clip = _x0_clip(scheduler)
        return {
            "generator": dict(self.settings),
            "weights_sha256": None if self.weights is None else _file_digest(self.weights),
            "sampler": type(scheduler).__name__,
            "steps": int(scheduler.num_inference_steps),
            "guidance": self.guidance,
            "seed": self.seed,
            "masks": self.masks.describe(),
            **({"x0_clip": x0_clip} if x0_clip != 1.0 else {}),
            **({"autocast": True} if self.autocast else {}),
            **({"speckle": self.speckle.digest()} if self.speckle is not None else {}),
        }

    def _claim_output(self) -> None:
        """Make ``output_dir`` this set's folder: mark it and write the manifest (see the module docstring).

        Raises:
            InputDataError: the folder holds files without the synthesiser's marker, is a cohort another command
                wrote, or holds a set made with other options and ``overwrite`` is off.
        """
        out = self.output_dir
        manifest = json.loads(json.dumps(self.manifest()))
        previous = _read_manifest(out / MANIFEST_NAME)
        marker = read_marker(out)
        names = {p.name for p in out.iterdir()} - {MARKER_NAME} if out.is_dir() else set()
        if marker is None and names and not (previous == manifest and names <= set(SET_ENTRIES)):
            raise InputDataError(
                out,
                f"holds files that monai-fetal synthesize did not write (no {MARKER_NAME} marker of it), which it never "
                "writes into or replaces",
                "choose a new output folder for the synthetic pairs",
            )
        if marker is not None and marker.get("command") != _COMMAND:
            raise InputDataError(
                out,
                f"is a cohort written by monai-fetal {marker.get('command')}, not a synthetic set; synthesize never writes into it",
                "choose a new output folder for the synthetic pairs",
            )
        if previous is not None and previous != manifest:
            changed = sorted(k for k in set(previous) | set(manifest) if previous.get(k) != manifest.get(k))
            if not self.overwrite:
                raise InputDataError(
                    out,
                    f"holds synthetic pairs made with other options ({', '.join(changed)} differ; only the number may change)",
                    "choose a new output folder, or pass --overwrite (the bundle's overwrite: true) to replace that set",
                )
            logger.info("replacing the synthetic set in %s (%s differ)", out, ", ".join(changed))
            self._remove_set()
        out.mkdir(parents=True, exist_ok=True)
        write_marker(out, _COMMAND, SET_ENTRIES)
        write_json_atomic(out / MANIFEST_NAME, manifest)

    def _remove_set(self) -> None:
        """Delete the set's entries, its manifest last: a folder with a manifest holds only that manifest's pairs."""
        for name in SET_ENTRIES:
            path = self.output_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def _remove_leftovers(self) -> None:
        """Delete temporary files of a killed run (``atomic_path`` names start with a dot)."""
        for sub in ("images", "masks"):
            for path in (self.output_dir / sub).glob(".*"):
                logger.info("removing a half-written file of an interrupted run: %s", path)
                path.unlink()

    def case_id(self, index: int) -> str:
        return f"{PREFIX}{index:05d}"

    def missing(self) -> list[int]:
        """Indices of the pairs not yet complete (no image file)."""
        return [i for i in range(self.num_samples) if not (self.output_dir / "images" / f"{self.case_id(i)}.png").is_file()]

    def _sample(self, indices: list[int], attempt: int) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """Images in [0, 1] at the generator's size and masks at the output size (``None``: no head generated)."""
        size = tuple(self.settings["image_size"])
        seeds = [pair_seed(self.seed, i, attempt) for i in indices]
        if self.generator.mode == "joint":
            images, channel = sample_pairs(self.generator, self.inferer, size, seeds)
            shapes = [self.masks[i].shape for i in indices]
            return images[:, 0].cpu().numpy(), [clean_head_mask(m, s) for m, s in zip(channel[:, 0].cpu().numpy(), shapes)]
        full = [self.masks[i] for i in indices]
        small = torch.stack([F.interpolate(torch.from_numpy(m.astype(np.float32))[None, None], size=size, mode="nearest")[0] for m in full])
        if isinstance(self.generator, LatentGenerator):
            images = sample_latent_images(self.generator, self.inferer, seeds, small, self.guidance, self.autocast)
        else:
            images, _ = sample_pairs(self.generator, self.inferer, size, seeds, small, self.guidance)
        return images[:, 0].cpu().numpy(), full

    def _write(self, index: int, image: np.ndarray, mask: np.ndarray) -> None:
        up = F.interpolate(torch.from_numpy(image)[None, None], size=mask.shape, mode="bilinear", align_corners=False)[0, 0].clamp(0.0, 1.0).numpy()
        if self.speckle is not None:
            up = self.speckle.add_to(up, pair_seed(self.seed, index, _TEXTURE_STREAM))
        pixels = np.round(up * 255.0).astype(np.uint8)
        write_pair(self.output_dir, self.case_id(index), pixels, mask)

    def run(self) -> Path:
        """Write the missing pairs, then ``datalist.json`` of all ``num_samples``, under a lock on the folder; returns
        the datalist path."""
        with output_lock(self.output_dir):
            return self._run()

    def _run(self) -> Path:
        self._claim_output()
        self._remove_leftovers()
        todo = self.missing()
        logger.info("%d of %d pairs to synthesise in %s", len(todo), self.num_samples, self.output_dir)
        bar = tqdm(total=len(todo), desc="synthesise", unit="pair", disable=not self.progress)
        for start in range(0, len(todo), self.batch_size):
            pending = todo[start : start + self.batch_size]
            for attempt in range(_MAX_ATTEMPTS):
                images, masks = self._sample(pending, attempt)
                retry = []
                for index, image, mask in zip(pending, images, masks):
                    if mask is None:
                        retry.append(index)
                        continue
                    self._write(index, image, mask)
                    bar.update(1)
                pending = retry
                if not pending:
                    break
            if pending:
                raise RuntimeError(f"no head was generated for pairs {pending} in {_MAX_ATTEMPTS} attempts: train the joint generator longer")
        bar.close()
        name = self.output_dir.resolve().name
        items = [CohortItem(self.case_id(i), self.case_id(i), name, synthetic=True) for i in range(self.num_samples)]
        return Cohort.write(self.output_dir, items, name).datalist
