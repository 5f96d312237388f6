"""The trainer handler that saves a grid of generated samples every few epochs, for either generator."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from ignite.engine import Engine, Events
from torch import nn

from monai_fetal.errors import ConfigError
from monai_fetal.visualize import save_pair_grid

__all__ = ["SampleGrid"]

logger = logging.getLogger(__name__)


class SampleGrid:
    """Every ``interval`` epochs and at the end, sample with ``model`` in eval mode and save ``output_dir/epoch_NNNN.png``.

    A grid already saved for an epoch is kept (a resumed run does not sample it again). Subclasses give
    :meth:`sample`: the images and the masks whose contours are drawn over them.

    Args:
        model: the network put in eval mode while sampling (its mode is restored after).
        output_dir: folder of the grids.
        interval: epochs between grids.
        seed: seed of the first sample (the others follow it).

    Raises:
        ConfigError: ``interval`` is not an integer >= 1.
    """

    def __init__(self, model: nn.Module, output_dir: str | Path, interval: int, seed: int) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ConfigError("sample_interval", interval, "an integer >= 1 (epochs between sample grids)")
        self.model = model
        self.output_dir = Path(output_dir)
        self.interval = interval
        self.seed = seed

    def sample(self, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Images ``[N, H, W]`` and masks ``[N, H, W]`` for ``seeds``."""
        raise NotImplementedError

    @property
    def count(self) -> int:
        """Samples per grid."""
        raise NotImplementedError

    def attach(self, engine: Engine) -> None:
        """Run at every ``interval``-th epoch's end and at the end of training."""
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> Path:
        path = self.output_dir / f"epoch_{engine.state.epoch:04d}.png"
        if path.is_file():
            return path
        was_training = self.model.training
        self.model.eval()
        seeds = [self.seed + k for k in range(self.count)]
        try:
            images, masks = self.sample(seeds)
        finally:
            self.model.train(was_training)
        save_pair_grid(list(images), list(masks), path, titles=[f"seed {s}" for s in seeds], columns=4)
        logger.info("sample grid: %s", path)
        return path
