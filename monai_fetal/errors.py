"""Errors raised for bad input: each names the file or key at fault and the fix."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


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


class DiskFullError(InputDataError):
    """An output file cannot be written: its disk (or the user's quota) is full.

    Args:
        path: the file being written.
        reason: the system's words for it (default: "No space left on device").
    """

    def __init__(self, path: str | Path, reason: str = os.strerror(errno.ENOSPC)) -> None:
        super().__init__(
            path, f"cannot be written ({reason})", "free disk space, or choose another output folder (--out) on a disk with room"
        )


# MONAI's SaveImage turns its writers' exceptions into text inside one RuntimeError (the chain is lost)
_SAVE_IMAGE_FAILURE = re.compile(
    r"cannot find a suitable writer for (?P<path>.+?)\.\n.*DiskFullError: .*?cannot be written \((?P<reason>[^)]*)\)", re.S
)


def user_error_in(error: BaseException) -> MonaiFetalError | None:
    """The user error behind ``error`` (bundle expressions wrap exceptions): a :class:`MonaiFetalError` in its
    chain, or a :class:`DiskFullError` for an ``OSError`` of a full disk or quota, or for a MONAI ``SaveImage``
    failure whose writer met one; ``None`` if there is none."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, MonaiFetalError):
            return error
        if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
            return DiskFullError(error.filename or "an output file", os.strerror(error.errno))
        saving = _SAVE_IMAGE_FAILURE.search(str(error)) if isinstance(error, RuntimeError) else None
        if saving is not None:
            return DiskFullError(saving["path"], saving["reason"])
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
