"""The sample-grid handler both generators' trainers use: when it samples, what it keeps, and the model's mode."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from ignite.engine import Engine
from torch import nn

from monai_fetal.engines.sample_grid import SampleGrid
from monai_fetal.errors import ConfigError


class RecordingGrid(SampleGrid):
    """Samples square ramps and records the seeds and the model's mode at each call."""

    def __init__(self, model: nn.Module, output_dir, interval: int = 1, seed: int = 3, fail: bool = False) -> None:
        super().__init__(model, output_dir, interval, seed)
        self.calls: list[tuple[list[int], bool]] = []
        self.fail = fail

    @property
    def count(self) -> int:
        return 2

    def sample(self, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
        self.calls.append((seeds, self.model.training))
        if self.fail:
            raise RuntimeError("sampling failed")
        images = np.stack([np.tile(np.linspace(0, 1, 16), (16, 1))] * len(seeds))
        masks = np.zeros_like(images, dtype=np.uint8)
        masks[:, 4:12, 4:12] = 1
        return images, masks


def at_epoch(epoch: int) -> SimpleNamespace:
    return SimpleNamespace(state=SimpleNamespace(epoch=epoch))


def test_grid_written_once_per_epoch_in_eval_mode(tmp_path) -> None:
    model = nn.Linear(1, 1).train()
    grid = RecordingGrid(model, tmp_path)
    path = grid(at_epoch(2))
    assert path == tmp_path / "epoch_0002.png" and path.stat().st_size > 0
    assert grid.calls == [([3, 4], False)]
    assert model.training
    assert grid(at_epoch(2)) == path and len(grid.calls) == 1  # a resumed run keeps the saved grid


def test_mode_restored_when_sampling_fails(tmp_path) -> None:
    model = nn.Linear(1, 1).train()
    with pytest.raises(RuntimeError, match="sampling failed"):
        RecordingGrid(model, tmp_path, fail=True)(at_epoch(1))
    assert model.training
    assert not (tmp_path / "epoch_0001.png").exists()


def test_attach_samples_every_interval_and_at_the_end(tmp_path) -> None:
    engine = Engine(lambda engine, batch: None)
    grid = RecordingGrid(nn.Linear(1, 1), tmp_path, interval=2)
    grid.attach(engine)
    engine.run([0], max_epochs=3)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["epoch_0002.png", "epoch_0003.png"]


@pytest.mark.parametrize("interval", [0, 1.5, True])
def test_bad_interval_refused(tmp_path, interval) -> None:
    with pytest.raises(ConfigError, match="sample_interval"):
        RecordingGrid(nn.Linear(1, 1), tmp_path, interval=interval)
