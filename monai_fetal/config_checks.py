"""Validation of bundle config values, called from config expressions so that bad values fail early."""

from __future__ import annotations

import ast
import difflib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from monai_fetal.errors import ConfigError

__all__ = ["CHOICES", "check_choice", "check_command_line_ids", "check_option", "check_positive"]

CHOICES: dict[str, tuple[str, ...]] = {
    "model_name": ("lite_medsam", "vit_b", "vit_l", "vit_h"),
    "trainable": ("decoder", "decoder+prompt", "full"),
    "augmentation": ("none", "weak", "strong"),
    "prompt": ("gt_box", "auto"),
    "effort": ("full", "fast"),
    "precision": ("fp32", "bf16", "ov-fp32", "ov-bf16", "ov-int8"),
    "generator_mode": ("latent", "concat", "controlnet", "joint"),
    "conditioning": ("fine_tune", "low_rank", "controlnet"),
    "preset": ("cpu", "gpu"),
    "sampler": ("ddim", "ddpm"),
}
"""The one registry of allowed option values: bundle configs check with :func:`check_option`, the CLI offers them as ``choices``."""

# options of ``python -m monai.bundle run`` itself, not config ids
_RUN_OPTIONS = ("config_file", "meta_file", "logging_file", "args_file", "run_id", "init_id", "final_id", "tracking", "workflow_type")


def check_choice(key: str, value: object, choices: Sequence[object]) -> object:
    """Return ``value`` if it is one of ``choices``, else raise :class:`ConfigError` naming ``key``."""
    if value not in choices:
        raise ConfigError(key, value, "one of " + ", ".join(repr(c) for c in choices))
    return value


def check_option(key: str, value: object) -> object:
    """Return ``value`` if it is one of ``CHOICES[key]``, else raise :class:`ConfigError` naming ``key`` and the choices."""
    return check_choice(key, value, CHOICES[key])


def check_positive(key: str, value: object, allow_zero: bool = False) -> object:
    """Return ``value`` if it is a number > 0 (or >= 0), else raise :class:`ConfigError` naming ``key``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value > 0 or (allow_zero and value == 0))
    if not ok:
        raise ConfigError(key, value, "a number >= 0" if allow_zero else "a number > 0")
    return value


def _config_files(value: str) -> list[Path]:
    """``--config_file``'s value: one path, or a Python list of paths (several configs merged)."""
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        parsed = value
    return [Path(p) for p in ([parsed] if isinstance(parsed, str) else parsed)]


def _options(args: Sequence[str]) -> dict[str, str | None]:
    """``--key value`` and ``--key=value`` pairs of a command line (``None`` for a flag without value)."""
    options: dict[str, str | None] = {}
    for i, arg in enumerate(args):
        if arg.startswith("--"):
            key, _, value = arg[2:].partition("=")
            following = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else None
            options[key] = value or following
    return options


def check_command_line_ids(argv: Sequence[str] | None = None) -> None:
    """Under ``python -m monai.bundle run``, refuse ``--id`` overrides that no config file defines.

    MONAI adds an unknown override as a new id, so ``--max_epoch 3`` would silently leave ``max_epochs``
    as it was. Called first in the bundles' ``initialize`` lists, before anything is written; other
    callers (the CLI wrappers, MONAI Label, tests) are left alone: their ``sys.argv`` is not a bundle run.

    Raises:
        ConfigError: naming the unknown id and the closest id the configs define.
    """
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] != "run" or Path(argv[0]).parts[-2:] != ("bundle", "__main__.py"):
        return
    options = _options(argv[2:])
    if not options.get("config_file"):
        return
    files = _config_files(options["config_file"])
    known = set(_RUN_OPTIONS)
    for path in files:
        known.update(json.loads(path.read_text()))
    for key in options:
        if key.split("#")[0] not in known:
            close = difflib.get_close_matches(key.split("#")[0], sorted(known), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "see the bundle's docs/README.md"
            names = ", ".join(p.name for p in files)
            raise ConfigError(key, options[key], f"an id defined by {names} ({hint}); unknown ids would be ignored")
