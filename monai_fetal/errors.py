"""Errors raised for bad input: each names the file or key at fault and the fix."""

from __future__ import annotations

from pathlib import Path


class MonaiFetalError(Exception):
    """Base class of the errors that ``monai-fetal`` reports to the user in one paragraph."""


class InputDataError(MonaiFetalError, ValueError):
    """An input file or folder cannot be used as it is.

    Args:
        path: the file or folder at fault.
        problem: what is wrong with it.
        fix: what the user should do about it.
    """

    def __init__(self, path: str | Path, problem: str, fix: str) -> None:
        self.path = Path(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.path}: {problem}. Fix: {fix}")


class ConfigError(MonaiFetalError, ValueError):
    """A configuration value or command-line option is not valid.

    Args:
        key: the config id or option name.
        value: the value that was given.
        expected: what would have been accepted.
    """

    def __init__(self, key: str, value: object, expected: str) -> None:
        self.key = key
        self.value = value
        super().__init__(f"bad value {value!r} for '{key}': expected {expected}.")
