"""Output folders that are written safely: never over an input, one run at a time, whole or not at all.

Every folder ``monai-fetal`` writes as a whole (a cohort of ``prepare``, ``phantom``...) is built by
:func:`staged_folder`: under a lock on the output (:func:`output_lock`), in a staging folder of its own beside
the output, renamed into place when complete. It carries a marker file (:data:`MARKER_NAME`) that lists what
the tool wrote there; a later ``overwrite`` replaces only those entries and keeps everything else (a cohort's
``splits/``, a user's notes), and refuses a non-empty folder without a marker (one the tool did not write).
"""

from __future__ import annotations

import errno
import fcntl
import glob
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from monai_fetal.atomic import current_umask, write_json_atomic
from monai_fetal.errors import InputDataError

__all__ = [
    "MARKER_NAME",
    "check_no_overlap",
    "data_folders",
    "output_lock",
    "owned_entries",
    "read_marker",
    "staged_folder",
    "staging_folder",
    "write_marker",
]

logger = logging.getLogger(__name__)

MARKER_NAME = ".monai-fetal.json"
_TOOL = "monai-fetal"
_DATA_SUBFOLDERS = ("images", "masks", "annotations", "unlabelled")
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def _absolute(path: str | Path) -> Path:
    """``path`` made absolute with symbolic links resolved (also where it does not exist yet)."""
    return Path(os.path.realpath(Path(path).expanduser()))


def data_folders(src: str | Path) -> list[Path]:
    """The folders of a source cohort that hold its files: ``images/``, ``masks/``, ``annotations/`` and
    ``unlabelled/`` where they exist, else the folder itself (the flat HC18 layout)."""
    src = Path(src)
    found = [src / name for name in _DATA_SUBFOLDERS if (src / name).is_dir()]
    return found or [src]


def check_no_overlap(
    out: str | Path, inputs: Iterable[str | Path], cohorts: Iterable[str | Path] = (), replaced: bool = False
) -> None:
    """Refuse an output path that would write over an input.

    ``out`` may not be, or hold, any of ``inputs`` or ``cohorts`` (files or folders), or be or lie inside a data
    folder (:func:`data_folders`) of one of ``cohorts``; an output folder that is ``replaced`` as a whole may not
    be, or hold, the current folder either.

    Raises:
        InputDataError: naming ``out``, the input it overlaps and the fix.
    """
    target = _absolute(out)
    fix = "give an output folder of its own, outside the inputs (a new name such as ./prepared)"
    cwd = _absolute(Path.cwd())
    if replaced and (target == cwd or target in cwd.parents):
        raise InputDataError(out, "is the current folder or holds it; the run would replace it", fix)
    cohorts = [Path(c) for c in cohorts]
    for given in [*(Path(i) for i in inputs), *cohorts]:
        source = _absolute(given)
        if target == source:
            raise InputDataError(out, f"is also an input ({given}); writing it would destroy that input", fix)
        if target in source.parents:
            raise InputDataError(out, f"holds the input {given}; writing it would destroy that input", fix)
    for cohort in cohorts:
        for folder in data_folders(cohort):
            inside = _absolute(folder)
            if inside == target or inside in target.parents:
                raise InputDataError(out, f"is or lies inside the input's data folder {folder}; it would mix with its files", fix)


def _lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


def _not_writable(out: Path, err: OSError) -> InputDataError:
    return InputDataError(out, f"cannot be written ({err.strerror})", "choose an output folder you can write to, or fix its permissions")


@contextmanager
def output_lock(out: str | Path) -> Iterator[None]:
    """Hold an advisory lock (``flock``) on the output path ``out`` for the block; a second run waits for it.

    The lock is the file ``.NAME.lock`` beside ``out``, holding the process id of its owner; a waiting run logs
    that id. The file is removed when the lock is released.

    Raises:
        InputDataError: the folder that would hold ``out`` cannot be written.
    """
    out = _absolute(out)
    lock = _lock_path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~current_umask())
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                logger.warning("%s is being written by another monai-fetal run (pid %s); waiting for it to finish", out, owner)
                fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, lock):  # not a lock file that its last owner removed meanwhile
                break
            os.close(fd)
    except OSError as err:
        if err.errno in _NOT_WRITABLE:
            raise _not_writable(out, err) from err
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def read_marker(folder: str | Path) -> dict | None:
    """The tool's marker of ``folder`` (``{"written_by", "command", "entries"}``), ``None`` where it has none."""
    path = Path(folder) / MARKER_NAME
    try:
        marker = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("written_by") != _TOOL or not isinstance(marker.get("entries"), list):
        return None
    return marker


def owned_entries(folder: str | Path) -> set[str] | None:
    """Names of the entries of ``folder`` that ``monai-fetal`` wrote there (from its marker), ``None`` if it has
    no marker."""
    marker = read_marker(folder)
    return None if marker is None else {str(name) for name in marker["entries"]}


def write_marker(folder: str | Path, command: str, entries: Iterable[str]) -> None:
    """Mark ``folder`` as written by ``monai-fetal COMMAND``, owning the entries named ``entries`` (atomic)."""
    write_json_atomic(Path(folder) / MARKER_NAME, {"written_by": _TOOL, "command": command, "entries": sorted(entries)})


def _check_replaceable(out: Path) -> list[str]:
    """The entries of the existing ``out`` that a replacement must keep (``[]`` if ``out`` does not exist).

    Raises:
        InputDataError: ``out`` is not a folder, or holds files but no marker of the tool.
    """
    if not out.exists():
        return []
    if not out.is_dir():
        raise InputDataError(out, "is a file, not a folder", "give a folder path for the output, or move that file away")
    names = sorted(p.name for p in out.iterdir())
    owned = owned_entries(out)
    if owned is None and names:
        raise InputDataError(
            out,
            f"holds files monai-fetal did not write (no {MARKER_NAME} marker), which --overwrite never replaces",
            "choose a new output folder, or move those files away yourself",
        )
    return [name for name in names if name not in (owned or set()) and name != MARKER_NAME]


@contextmanager
def staging_folder(out: str | Path) -> Iterator[Path]:
    """Yield a new empty folder beside ``out`` (``.NAME.partial-XXXX``, the usual permissions) to build ``out`` in;
    the block renames it (or what it built there) into place. Whatever is left of it is removed after the block,
    also when it fails or is interrupted.

    Staging folders of ``out`` left by killed runs are removed first: call it under :func:`output_lock` (``out``'s),
    so that no live run owns one.

    Raises:
        InputDataError: the folder that would hold ``out`` cannot be written.
    """
    out = Path(out)
    for stale in out.parent.glob(f".{glob.escape(out.name)}.partial*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as err:
        if err.errno in _NOT_WRITABLE:
            raise _not_writable(out, err) from err
        raise
    try:
        staging.chmod(0o777 & ~current_umask())  # mkdtemp makes folders private; give them the usual permissions
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def staged_folder(out: str | Path, command: str) -> Iterator[Path]:
    """Yield an empty staging folder for a new ``out``; when the block succeeds, put it in place of ``out``.

    Run under :func:`output_lock` (``out``'s). The staging folder is unique to the run (``.NAME.partial-XXXX``
    beside ``out``) and removed if the block fails or is interrupted, leaving ``out`` as it was. On success a
    marker listing the written entries is added, ``out`` is replaced by renames, and the entries of the old
    ``out`` that the tool did not write (a cohort's ``splits/``, other files) are moved into the new one.

    Raises:
        InputDataError: ``out`` is a file, holds files without the tool's marker, holds a file of its own with a
            name the run wrote, or cannot be written.
    """
    out = _absolute(out)
    kept = _check_replaceable(out)
    with staging_folder(out) as staging:
        yield staging
        written = sorted(p.name for p in staging.iterdir())
        clash = sorted(set(written) & set(kept))
        if clash:
            raise InputDataError(
                out / clash[0], "is a file monai-fetal did not write, where this run writes one", "move it away and run again"
            )
        write_marker(staging, command, written)
        _swap(staging, out, kept)


def _swap(staging: Path, out: Path, kept: list[str]) -> None:
    """Rename ``staging`` to ``out``, moving the ``kept`` entries of the old ``out`` into it."""
    if not out.exists():
        staging.rename(out)
        return
    old = out.with_name(f".{out.name}.old-{secrets.token_hex(4)}")
    out.rename(old)
    try:
        staging.rename(out)
    except BaseException:
        old.rename(out)
        raise
    for name in kept:
        (old / name).rename(out / name)
    shutil.rmtree(old)
