"""Errors raised for bad input: each names the file or key at fault and the fix."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable
from pathlib import Path

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_NO_ACCESS_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)
SHOWN = 10  # an error about many things names this many and counts the rest


def summarise(things: Iterable[object], separator: str = ", ", shown: int = SHOWN) -> str:
    """The first ``shown`` of ``things`` joined by ``separator``, and how many more there are: an error about
    2000 files stays one paragraph."""
    things = [str(thing) for thing in things]
    text = separator.join(things[:shown])
    return text if len(things) <= shown else f"{text}{separator}... and {len(things) - shown} more ({len(things)} in all)"


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


def _path_error(error: OSError) -> InputDataError | None:
    """The user error of an ``OSError`` about a path the user gave (no access, a file where a folder is needed)."""
    path = error.filename or "a file or folder"
    reason = os.strerror(error.errno) if error.errno else str(error)
    if error.errno in DISK_FULL_ERRNOS:
        return DiskFullError(path, reason)
    if error.errno in _NO_ACCESS_ERRNOS:
        return InputDataError(path, f"cannot be accessed ({reason})", "fix its permissions, or choose a location you can write to")
    if error.errno in (errno.EEXIST, errno.ENOTDIR):
        return InputDataError(
            path, f"is, or lies under, a file where a folder is needed ({reason})", "give a folder path, or move that file away"
        )
    if error.errno == errno.EISDIR:
        return InputDataError(path, f"is a folder where a file is needed ({reason})", "give a file path")
    return None


def user_error_in(error: BaseException) -> MonaiFetalError | None:
    """The user error behind ``error`` (bundle expressions wrap exceptions): a :class:`MonaiFetalError` in its
    chain; for an ``OSError`` of a full disk or quota a :class:`DiskFullError`, and of a path without access or a
    file where a folder is needed an :class:`InputDataError`; a :class:`DiskFullError` for a MONAI ``SaveImage``
    failure whose writer met a full disk; ``None`` if there is none."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, MonaiFetalError):
            return error
        if isinstance(error, OSError) and _path_error(error) is not None:
            return _path_error(error)
        saving = _SAVE_IMAGE_FAILURE.search(str(error)) if isinstance(error, RuntimeError) else None
        if saving is not None:
            return DiskFullError(saving["path"], saving["reason"])
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
