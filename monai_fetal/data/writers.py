"""MONAI image writers whose files appear whole or not at all (temporary file in the same folder, then rename)."""

from __future__ import annotations

from monai.config import PathLike
from monai.data import PILWriter

from monai_fetal.atomic import atomic_path

__all__ = ["AtomicPILWriter"]


class AtomicPILWriter(PILWriter):
    """MONAI's ``PILWriter`` writing through :func:`~monai_fetal.atomic.atomic_path`: a failed or interrupted
    write (a full disk) leaves an earlier file of that name as it was and no temporary file.

    Use it as ``SaveImaged``'s ``writer`` (``"monai_fetal.data.writers.AtomicPILWriter"`` in a config).
    """

    def write(self, filename: PathLike, verbose: bool = False, **kwargs: object) -> None:
        with atomic_path(filename) as tmp:
            super().write(tmp, verbose=verbose, **kwargs)
