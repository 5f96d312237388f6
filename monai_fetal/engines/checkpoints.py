"""Resumable training: load the newest epoch checkpoint at start, keep the newest ones across resumed runs,
keep the best network by a metric: MONAI's ``CheckpointLoader`` and ``CheckpointSaver`` with what they lack."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from ignite.handlers import DiskSaver
from monai.handlers import CheckpointLoader, CheckpointSaver

from monai_fetal.checkpoint_files import epoch_checkpoints, latest_checkpoint
from monai_fetal.errors import InputDataError

__all__ = ["ResumableCheckpointSaver", "ResumeHandler", "latest_checkpoint"]

logger = logging.getLogger(__name__)


class ResumeHandler:
    """At the trainer's start, resume from the newest epoch checkpoint in ``checkpoint_dir`` if there is one.

    Loading is MONAI's ``CheckpointLoader`` (strict, ``weights_only``-safe state dicts); a killed run
    therefore continues from its last completed epoch and ends at the same ``max_epochs``.
    """

    def __init__(self, checkpoint_dir: str | Path, load_dict: dict, map_location: str | torch.device | None = None) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.load_dict = load_dict
        self.map_location = map_location

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        path = latest_checkpoint(self.checkpoint_dir)
        if path is None:
            return
        logger.info("resuming from %s", path)
        try:
            CheckpointLoader(load_path=str(path), load_dict=self.load_dict, map_location=self.map_location)(engine)
        except (KeyError, RuntimeError, ValueError) as error:
            raise InputDataError(
                path,
                f"cannot be resumed with this configuration ({str(error).splitlines()[0]})",
                "rerun with the settings that wrote it, or give a new output folder to start afresh",
            ) from error


class _AtomicSaver(DiskSaver):
    """ignite's atomic ``DiskSaver``, writing to ``filename`` when one is given (the save then replaces the old file,
    so ``remove`` leaves it in place: the best model is never missing, not even between two saves)."""

    def __init__(self, dirname: str, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, require_empty=False, atomic=True)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint, self.filename or filename, metadata)

    def remove(self, filename: str) -> None:
        if self.filename is None:
            super().remove(filename)


class ResumableCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` with atomic writes, resumable key-metric tracking, and ``n_saved`` that also counts
    the epoch checkpoints of earlier runs.

    - **Atomic writes.** MONAI writes in place (ignite's ``DiskSaver`` with ``atomic=False``), so a run killed while
      writing leaves a truncated file. Here every file goes through ignite's atomic ``DiskSaver`` (a temporary file
      renamed into place, readable as MONAI wants), and a fixed ``key_metric_filename`` (``model.pt``) is replaced,
      never removed first.
    - **Key metric** (``save_key_metric=True``, attached to the evaluator): epochs before ``key_metric_min_epoch`` are
      not candidates (the validation at epoch 0, before any training, is a baseline to log), nor are non-finite
      values (ignite would keep a NaN as a best that nothing beats). ``state_dict``/``load_state_dict`` carry the
      best value through the training checkpoints, so a resumed run does not overwrite a better model. Only rank 0
      writes (ignite's ``DiskSaver``).
    - **No final file from a failed run.** MONAI's saves the final model when the run raises too (deleting the last
      completed run's file first), so a refused resume or a bad image mid-epoch replaced a trained ``unet.pt`` with an
      untrained or half-trained network. Here a failed run writes no final file: the last completed run's stays, and
      the epoch checkpoints let a rerun go on.
    - **Earlier runs.** MONAI's removes only the files it wrote itself, so the checkpoints of a killed run stay beside
      those of the run that resumed it. After each epoch checkpoint, this one also removes the older
      ``checkpoint_epoch=N.pt`` in ``save_dir`` beyond the newest ``n_saved`` (counting the one just written); it never
      removes that one, newer ones, or other files (``model.pt``).
    """

    def __init__(
        self,
        save_dir: str,
        save_dict: dict,
        n_saved: int | None = None,
        key_metric_filename: str | None = None,
        key_metric_min_epoch: int = 1,
        **kwargs: object,
    ) -> None:
        super().__init__(save_dir, save_dict, n_saved=n_saved, key_metric_filename=key_metric_filename, **kwargs)
        self.n_saved = n_saved
        self.key_metric_min_epoch = key_metric_min_epoch
        if self._interval_checkpoint is not None:
            self._interval_checkpoint.save_handler = _AtomicSaver(self.save_dir)
        if self._key_metric_checkpoint is not None:
            self._key_metric_checkpoint.save_handler = _AtomicSaver(self.save_dir, key_metric_filename)
        if self._final_checkpoint is not None:
            self._final_checkpoint.save_handler = _AtomicSaver(self.save_dir, self._final_filename)

    def exception_raised(self, engine: Engine, e: Exception) -> None:
        """Re-raise ``e`` without writing the final file (the class docstring)."""
        raise e

    def metrics_completed(self, engine: Engine) -> None:
        score = self._key_metric_checkpoint.score_function(engine)
        if engine.state.epoch >= self.key_metric_min_epoch and math.isfinite(score):
            super().metrics_completed(engine)

    def interval_completed(self, engine: Engine) -> None:
        super().interval_completed(engine)
        if self.n_saved is None or not self.epoch_level:
            return
        up_to_now = [path for epoch, path in epoch_checkpoints(self.save_dir) if epoch <= engine.state.epoch]
        for path in up_to_now[self.n_saved :]:
            path.unlink()
            logger.info("removed %s (keeping the newest %d epoch checkpoints)", path, self.n_saved)

    def state_dict(self) -> dict:
        """The key-metric tracking list (best values and their files), for the training checkpoints."""
        return dict(self._key_metric_checkpoint.state_dict()) if self._key_metric_checkpoint is not None else {}
