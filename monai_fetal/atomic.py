"""Atomic file writes: a temporary file in the target's folder, renamed over the target when complete."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from monai_fetal.errors import DISK_FULL_ERRNOS, DiskFullError, MonaiFetalError

__all__ = ["atomic_path", "current_umask", "write_text_atomic", "write_json_atomic", "remove_stale"]

_LOW_SPACE = 1 << 20  # bytes: a write that fails with less free space than this is put down to a full disk


def current_umask() -> int:
    """The process's file-creation mask (read without changing it for longer than a call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _disk_is_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < _LOW_SPACE
    except OSError:
        return False


@contextmanager
def _full_disk_reported(path: Path) -> Iterator[None]:
    """Raise :class:`DiskFullError` naming ``path`` where a write fails on a full disk or quota.

    Some writers do not say so (ITK and ``torch.save`` raise ``RuntimeError``), so a failure is also
    put down to a full disk where the disk has (almost) no free space left.
    """
    try:
        yield
    except Exception as err:
        if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
            raise DiskFullError(path, os.strerror(err.errno)) from err
        if not isinstance(err, MonaiFetalError) and _disk_is_full(path.parent):
            raise DiskFullError(path) from err
        raise


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); rename it to ``path`` if the block succeeds.

    If the block raises, the temporary file is removed and ``path`` is left as it was.

    Raises:
        DiskFullError: the disk or quota is full (``path`` is left as it was).
    """
    path = Path(path)
    with _full_disk_reported(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        suffix = "".join(path.suffixes) or ".tmp"
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.close(fd)
        try:
            yield Path(tmp)
            os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes files private; give them the usual permissions
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, data: object) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def remove_stale(folder: str | Path, names: list[str]) -> None:
    """Remove the earlier results ``names`` from ``folder`` where they exist, so a failed run cannot leave them to
    be read as its own."""
    for name in names:
        Path(folder, name).unlink(missing_ok=True)
