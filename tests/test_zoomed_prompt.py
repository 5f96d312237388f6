"""ZoomedPromptd: a doubtful head tried again by the automatic prompt in a zoomed crop of the image as read."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from monai.data import MetaTensor

from monai_fetal.engines.zoomed_prompt import ZoomedPromptd
from monai_fetal.errors import ConfigError
from monai_fetal.shape.ellipse import Ellipse, ellipse_to_mask
from monai_fetal.transforms.box import box_from_mask

FRAME = 64
WIDTH, HEIGHT = 400, 300  # MONAI's [1, W, H]: x along W
HEAD = Ellipse(32.0, 32.0, 20.0, 15.0, 0.3)  # in the crop's frame: centred, as a zoomed head would be


class _Network(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))


class _AutoPrompt:
    """Stands in for AutoBoxPrompt: segments every image to :data:`HEAD` with a fixed IoU estimate; records the images."""

    def __init__(self, iou: float) -> None:
        self.iou = iou
        self.images: list[torch.Tensor] = []

    def segment(self, network, images: torch.Tensor) -> SimpleNamespace:
        self.images.append(images.clone())
        head = torch.as_tensor(ellipse_to_mask(HEAD, (FRAME, FRAME)) > 0)
        logits = torch.where(head, 10.0, -10.0).float()[None, None]
        return SimpleNamespace(logits=logits, iou=torch.tensor([[self.iou]]), searched=torch.tensor([False]))


def _inferer(located: list[float] | None, last_iou: float, zoomed_iou: float) -> SimpleNamespace:
    scale = FRAME / WIDTH  # the locator's box is in the whole image's frame
    boxes = None if located is None else torch.tensor([[v * scale for v in located]])
    return SimpleNamespace(
        auto_prompt=_AutoPrompt(zoomed_iou), last_located=boxes, last_iou=torch.tensor([[last_iou]]), last_searched=torch.tensor([False])
    )


def _prediction(confident: bool = False) -> MetaTensor:
    """A leaked head, a large rectangle (the head and the sac around it), or a confident head, an ellipse; probability 0.9."""
    probabilities = torch.zeros(1, WIDTH, HEIGHT)
    if confident:
        probabilities[0] = 0.9 * torch.as_tensor(ellipse_to_mask(Ellipse(200.0, 165.0, 40.0, 30.0, 0.0), (HEIGHT, WIDTH)).T > 0)
    else:
        probabilities[0, 100:300, 80:260] = 0.9
    return MetaTensor(probabilities, meta={"filename_or_obj": "scan.png"})


def _data(confident: bool = False) -> dict:
    return {"pred": _prediction(confident), "image_as_read": torch.rand(1, WIDTH, HEIGHT) * 255}


def test_a_doubtful_head_is_replaced_by_the_better_head_of_the_zoomed_crop() -> None:
    inferer = _inferer([170.0, 140.0, 230.0, 190.0], last_iou=0.5, zoomed_iou=0.98)  # the located head: 60 x 50 pixels
    out = ZoomedPromptd("pred", _Network(), inferer, frame_size=FRAME)(_data())["pred"]
    assert isinstance(out, MetaTensor) and out.shape == (1, WIDTH, HEIGHT) and out.meta["filename_or_obj"] == "scan.png"
    (framed,) = inferer.auto_prompt.images
    assert framed.shape == (1, 3, FRAME, FRAME) and float(framed[0, 0, -1, -1]) > 0  # a square crop fills the frame
    side = 0.3 * WIDTH  # twice the head's 60 pixels, raised to the smallest crop (0.3 of the longer side)
    x0, y0, x1, y1 = box_from_mask(out[0].T > 0.5).tolist()
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == pytest.approx((200.0, 165.0), abs=2.0)  # the crop is centred on the head
    assert x1 - x0 == pytest.approx(2 * HEAD.a * side / FRAME * math.hypot(math.cos(0.3), 0.75 * math.sin(0.3)), rel=0.1)
    assert float(inferer.last_iou[0, 0]) == pytest.approx(0.98) and bool(inferer.last_searched[0])


def test_a_confident_head_a_worse_zoom_or_no_locator_leave_the_prediction_as_it_is() -> None:
    located = [170.0, 140.0, 230.0, 190.0]
    cases = [(_inferer(located, 0.99, 0.98), True), (_inferer(located, 0.5, 0.1), False), (_inferer(None, 0.5, 0.98), False)]
    for inferer, confident in cases + [(_inferer([math.nan] * 4, 0.5, 0.98), False)]:
        data = _data(confident)
        before = (inferer.last_iou.clone(), inferer.last_searched.clone())
        out = ZoomedPromptd("pred", _Network(), inferer, frame_size=FRAME)(data)["pred"]
        assert torch.equal(out, data["pred"])
        assert torch.equal(inferer.last_iou, before[0]) and torch.equal(inferer.last_searched, before[1])
    zoom_off = _inferer(located, 0.5, 0.98)
    assert torch.equal(ZoomedPromptd("pred", _Network(), zoom_off, below=0, frame_size=FRAME)(_data())["pred"], _prediction())
    assert zoom_off.auto_prompt.images == []


@pytest.mark.parametrize("below", [-0.1, 1.5, "0.9", True])
def test_a_bad_threshold_is_refused_by_name(below) -> None:
    with pytest.raises(ConfigError, match="zoom_below"):
        ZoomedPromptd("pred", _Network(), _inferer(None, 0.5, 0.9), below=below)


def test_a_missing_image_is_named() -> None:
    zoom = ZoomedPromptd("pred", _Network(), _inferer([170.0, 140.0, 230.0, 190.0], 0.5, 0.98), frame_size=FRAME)
    with pytest.raises(ValueError, match="image_as_read.*missing"):
        zoom({"pred": _prediction()})
