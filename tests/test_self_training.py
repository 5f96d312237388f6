"""Self-training of the head locator: only the locator changes, pseudo-labels pass the quality bar, a rerun skips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_fetal.engines import LocatorSelfTraining
from monai_fetal.engines.self_training import SELF_TRAINING_NAME
from monai_fetal.networks import SamRuntime, build_prompted_sam
from monai_fetal.shape.ellipse import Ellipse, ellipse_to_mask

FRAME = 256


def _head_frame(cx: float, cy: float, seed: int) -> dict:
    """A framed image ``[3, S, S]`` with a bright skull-like ring around a darker head, and its mask ``[1, S, S]``."""
    rng = np.random.default_rng(seed)
    head = ellipse_to_mask(Ellipse(cx, cy, 60.0, 45.0, 0.3), (FRAME, FRAME)).astype(bool)
    inner = ellipse_to_mask(Ellipse(cx, cy, 52.0, 38.0, 0.3), (FRAME, FRAME)).astype(bool)
    image = 0.25 + 0.05 * rng.standard_normal((FRAME, FRAME))
    image[head & ~inner] = 0.9
    image[inner] = 0.15
    frame = torch.as_tensor(np.clip(image, 0, 1), dtype=torch.float32).expand(3, FRAME, FRAME).clone()
    return {"image": frame, "label": torch.as_tensor(head[None], dtype=torch.float32)}


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return SamRuntime(build_prompted_sam("lite_medsam", trainable="decoder")).eval()


def _self_training(network, model: Path, unlabelled: list[dict]) -> LocatorSelfTraining:
    labelled = [_head_frame(110.0, 120.0, 0), _head_frame(150.0, 130.0, 1)]
    return LocatorSelfTraining(
        network, model, labelled=dict, unlabelled=dict, labelled_items=labelled, unlabelled_items=unlabelled,
        rounds=1, steps=3, batch_size=2, min_quality=0.0,
    )  # fmt: skip


def test_only_the_locator_is_retrained_and_a_rerun_skips(network, tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    torch.save(network.state_dict(), model)
    before = torch.load(model, weights_only=True)
    unlabelled = [{"image": _head_frame(100.0 + 20 * k, 125.0, 10 + k)["image"]} for k in range(3)]
    stats = _self_training(network, model, unlabelled).run()
    assert stats["labelled"] == 2 and stats["unlabelled"] == 3
    assert stats["rounds"][0]["pseudo_labels"] == 3  # min_quality 0: every pseudo-label is kept
    after = torch.load(model, weights_only=True)
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert changed and all(key.startswith("locator.") for key in changed)
    assert bool(after["locator.trained"])
    record = json.loads((tmp_path / SELF_TRAINING_NAME).read_text())
    assert record == stats
    written = model.read_bytes()
    assert _self_training(network, model, unlabelled).run() == stats  # complete: skipped
    assert model.read_bytes() == written


def test_no_unlabelled_image_changes_nothing(network, tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    torch.save(network.state_dict(), model)
    written = model.read_bytes()
    assert _self_training(network, model, []).run() == {}
    assert model.read_bytes() == written and not (tmp_path / SELF_TRAINING_NAME).exists()
