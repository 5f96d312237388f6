"""Resumable training: load the newest epoch checkpoint at start, keep the newest ones across resumed runs,
keep the best network by a metric."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from ignite.handlers import DiskSaver
from monai.handlers import CheckpointLoader, CheckpointSaver

from monai_fetal.atomic import atomic_path
from monai_fetal.checkpoint_files import epoch_checkpoints, latest_checkpoint
from monai_fetal.errors import InputDataError

__all__ = ["BestModelSaver", "ResumableCheckpointSaver", "ResumeHandler", "latest_checkpoint"]

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


class ResumableCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` whose ``n_saved`` also counts the epoch checkpoints of earlier runs,
    and whose epoch checkpoints are written atomically.

    MONAI writes them in place (ignite's ``DiskSaver`` with ``atomic=False``), so a run killed while
    writing leaves a truncated ``checkpoint_epoch=N.pt`` that the next run cannot resume from. Here
    they go through ignite's atomic ``DiskSaver`` (a temporary file renamed into place, readable as
    MONAI wants), so the newest checkpoint is always whole.

    MONAI's removes only the files it wrote itself, so the checkpoints of a killed run stay beside those
    of the run that resumed it. After each epoch checkpoint, this one also removes the older
    ``checkpoint_epoch=N.pt`` in ``save_dir`` beyond the newest ``n_saved`` (counting the one just written);
    it never removes that one, newer ones, or other files (``model.pt``, best-metric files).
    """

    def __init__(self, save_dir: str, save_dict: dict, n_saved: int | None = None, **kwargs: object) -> None:
        super().__init__(save_dir, save_dict, n_saved=n_saved, **kwargs)
        self.n_saved = n_saved
        if self._interval_checkpoint is not None:
            self._interval_checkpoint.save_handler = DiskSaver(dirname=self.save_dir, require_empty=False, atomic=True)

    def interval_completed(self, engine: Engine) -> None:
        super().interval_completed(engine)
        if self.n_saved is None or not self.epoch_level:
            return
        up_to_now = [path for epoch, path in epoch_checkpoints(self.save_dir) if epoch <= engine.state.epoch]
        for path in up_to_now[self.n_saved :]:
            path.unlink()
            logger.info("removed %s (keeping the newest %d epoch checkpoints)", path, self.n_saved)


class BestModelSaver:
    """Save the network's state dict to ``path`` whenever the evaluator's ``metric`` improves.

    Its state (best value and epoch) goes into the training checkpoints through
    ``state_dict``/``load_state_dict``, so a resumed run does not overwrite a better model. With
    ``write=False`` (ranks other than 0 in a distributed run) it tracks the best value but writes nothing.
    Epochs before ``min_epoch`` are not candidates: the validation at epoch 0 (before any training) is a
    baseline to log, and its network has no trained head locator.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        path: str | Path,
        metric: str,
        higher_is_better: bool = True,
        write: bool = True,
        min_epoch: int = 1,
    ) -> None:
        self.network = network
        self.write = write
        self.min_epoch = min_epoch
        self.path = Path(path)
        self.metric = metric
        self.sign = 1.0 if higher_is_better else -1.0
        self.best = -math.inf
        self.best_epoch = -1

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        value = engine.state.metrics.get(self.metric)
        if engine.state.epoch < self.min_epoch or value is None or not math.isfinite(value) or self.sign * value <= self.best:
            return
        self.best = self.sign * float(value)
        self.best_epoch = int(engine.state.epoch)
        if not self.write:
            return
        with atomic_path(self.path) as tmp:
            torch.save(self.network.state_dict(), tmp)
        logger.info("%s improved to %.4f: saved %s", self.metric, value, self.path)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
