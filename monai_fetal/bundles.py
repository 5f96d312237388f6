"""Locating and running the project's MONAI bundles with overrides (what the CLI wrappers call)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from monai.bundle import ConfigWorkflow

from monai_fetal.errors import ConfigError, user_error_in

__all__ = ["BUNDLES", "bundle_dir", "run_bundle"]

BUNDLES = ("fetal_head_sam", "fetal_us_diffusion")
_BUNDLES_ENV = "MONAI_FETAL_BUNDLES"


def bundle_dir(name: str) -> Path:
    """Folder of bundle ``name``: under ``$MONAI_FETAL_BUNDLES`` if set, else the checkout's ``bundles/``."""
    if name not in BUNDLES:
        raise ConfigError("bundle", name, "one of " + ", ".join(BUNDLES))
    root = Path(os.environ.get(_BUNDLES_ENV, Path(__file__).resolve().parents[1] / "bundles"))
    path = root / name
    if not (path / "configs" / "metadata.json").is_file():
        raise ConfigError(_BUNDLES_ENV, str(root), f"a folder that holds {name}/configs (the repository's bundles/)")
    return path


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
    files = [config] if isinstance(config, str) else list(config)
    workflow = ConfigWorkflow(
        config_file=[str(configs / c) for c in files],
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"),
        workflow_type=None,
    )
    workflow.parser["bundle_root"] = str(root)
    for key, value in (overrides or {}).items():
        top = key.split("#")[0]
        if top not in workflow.parser.config:
            raise ConfigError(key, value, f"an id of {name}/configs/{' + '.join(files)}")
        workflow.parser[key] = value
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
