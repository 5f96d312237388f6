"""Validation of bundle config values, called from config expressions so that bad values fail early."""

from __future__ import annotations

from collections.abc import Sequence

from monai_fetal.errors import ConfigError

__all__ = ["check_choice", "check_positive"]


def check_choice(key: str, value: object, choices: Sequence[object]) -> object:
    """Return ``value`` if it is one of ``choices``, else raise :class:`ConfigError` naming ``key``."""
    if value not in choices:
        raise ConfigError(key, value, "one of " + ", ".join(repr(c) for c in choices))
    return value


def check_positive(key: str, value: object, allow_zero: bool = False) -> object:
    """Return ``value`` if it is a number > 0 (or >= 0), else raise :class:`ConfigError` naming ``key``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value > 0 or (allow_zero and value == 0))
    if not ok:
        raise ConfigError(key, value, "a number >= 0" if allow_zero else "a number > 0")
    return value
