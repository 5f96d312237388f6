"""Epoch checkpoint files as MONAI's ``CheckpointSaver`` names them (``checkpoint_epoch=N.pt``).

A file-layout convention shared by the engines that write them and the loaders that read them back
(``monai_fetal.networks.diffusion``), so it sits below both.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["epoch_checkpoints", "latest_checkpoint"]

_EPOCH_FILE = re.compile(r"checkpoint_epoch=(\d+)\.pt$")


def epoch_checkpoints(checkpoint_dir: str | Path) -> list[tuple[int, Path]]:
    """``(N, path)`` of each ``checkpoint_epoch=N.pt`` in the folder, newest first (empty if no folder)."""
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return []
    return sorted(((int(m.group(1)), p) for p in folder.iterdir() if (m := _EPOCH_FILE.search(p.name))), reverse=True)


def latest_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """Newest ``checkpoint_epoch=N.pt`` in the folder, or ``None``."""
    found = epoch_checkpoints(checkpoint_dir)
    return found[0][1] if found else None
