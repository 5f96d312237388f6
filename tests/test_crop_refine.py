"""CropRefined: the head decoded again in a crop of the image as read, mapped back in place."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from monai_fetal.engines.crop_refine import CropRefined
from monai_fetal.errors import ConfigError
from monai_fetal.transforms.box import box_from_mask

FRAME = 64
WIDTH, HEIGHT = 300, 200  # MONAI's [1, W, H]: x along W


class _BoxSam(torch.nn.Module):
    """Stands in for SamRuntime: decodes each box to logits +10 inside it and -10 outside; records what it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.images: list[torch.Tensor] = []
        self.boxes: list[torch.Tensor] = []

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        self.images.append(images.clone())
        return torch.zeros(images.shape[0], 8, 4, 4)

    def decode(self, embeddings: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        self.boxes.append(boxes.clone())
        columns, rows = torch.arange(FRAME).view(1, -1), torch.arange(FRAME).view(-1, 1)
        logits = torch.full((len(boxes), 1, FRAME, FRAME), -10.0)
        for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
            inside = (columns >= x0) & (columns <= x1) & (rows >= y0) & (rows <= y1)
            logits[i, 0][inside] = 10.0
        return logits


class _Prompted:
    """Stands in for SamInferer: the box prompt of the last batch's one mask, in the frame."""

    def __init__(self, box: list[float] | None) -> None:
        self.last_boxes = None if box is None else torch.tensor([box])


def _prediction(x0: int, y0: int, x1: int, y1: int) -> MetaTensor:
    probabilities = torch.zeros(1, WIDTH, HEIGHT)
    probabilities[0, x0 : x1 + 1, y0 : y1 + 1] = 0.9
    return MetaTensor(probabilities, meta={"filename_or_obj": "scan.png"})


def _image() -> torch.Tensor:
    image = torch.rand(1, WIDTH, HEIGHT) * 50
    image[0, 100:180, 60:140] += 150  # bright tissue around the head
    return image


def _kept_box(probabilities: torch.Tensor) -> list[float]:
    return box_from_mask(probabilities[0].T > 0.5).tolist()  # x along W


def _in_frame(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    scale = FRAME / WIDTH  # the longest side
    return [x0 * scale, y0 * scale, x1 * scale, y1 * scale]


def test_a_given_box_is_decoded_in_a_crop_and_mapped_back_to_the_image() -> None:
    network = _BoxSam()
    refine = CropRefined("pred", network, _Prompted(_in_frame(110, 70, 170, 130)), margin=0.25, frame_size=FRAME)
    head = _prediction(100, 60, 179, 139)
    head[0, 20:30, 20:30] = 0.9  # a stray blob far from the box: outside the crop, not kept
    out = refine({"pred": head, "image_as_read": _image()})["pred"]
    assert isinstance(out, MetaTensor) and out.shape == head.shape and out.meta["filename_or_obj"] == "scan.png"
    assert _kept_box(out) == pytest.approx([110, 70, 170, 130], abs=2)
    assert float(out[0, 20:30, 20:30].max()) == 0.0
    crop = network.images[0]
    assert crop.shape == (1, 3, FRAME, FRAME) and 0.0 <= float(crop.min()) and float(crop.max()) <= 1.0
    assert float(network.boxes[0][0, 2] - network.boxes[0][0, 0]) > 0.6 * FRAME  # the box fills most of the crop's frame


def test_a_head_whose_box_the_automatic_prompt_chose_or_with_no_head_stays_as_it_is() -> None:
    network = _BoxSam()
    head = _prediction(100, 60, 179, 139)
    assert torch.equal(CropRefined("pred", network, _Prompted(None), frame_size=FRAME)({"pred": head, "image_as_read": _image()})["pred"], head)
    empty = _prediction(0, 0, -1, -1)
    given = _Prompted(_in_frame(110, 70, 170, 130))
    assert torch.equal(CropRefined("pred", network, given, frame_size=FRAME)({"pred": empty, "image_as_read": _image()})["pred"], empty)
    assert torch.equal(CropRefined("pred", network, given, margin=0, frame_size=FRAME)({"pred": head})["pred"], head)
    assert network.images == []


@pytest.mark.parametrize("margin", [-0.1, "0.25", True, float("nan")])
def test_a_bad_margin_is_refused_by_name(margin) -> None:
    with pytest.raises(ConfigError, match="crop_margin"):
        CropRefined("pred", _BoxSam(), _Prompted(None), margin=margin)


def test_a_missing_or_resized_image_or_a_batch_is_named() -> None:
    refine = CropRefined("pred", _BoxSam(), _Prompted(_in_frame(110, 70, 170, 130)), frame_size=FRAME)
    with pytest.raises(ValueError, match="image_as_read.*missing"):
        refine({"pred": _prediction(100, 60, 179, 139)})
    with pytest.raises(ValueError, match=r"image_as_read.*\(150, 100\)"):
        refine({"pred": _prediction(100, 60, 179, 139), "image_as_read": torch.zeros(1, 150, 100)})
    batch = _Prompted(_in_frame(110, 70, 170, 130))
    batch.last_boxes = batch.last_boxes.repeat(2, 1)
    with pytest.raises(ConfigError, match="batch_size"):
        CropRefined("pred", _BoxSam(), batch, frame_size=FRAME)({"pred": _prediction(100, 60, 179, 139), "image_as_read": _image()})
