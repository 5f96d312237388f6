"""The automatic box prompt on a stand-in network whose decoder returns a known head."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_fetal.engines.auto_prompt import AutoBoxPrompt, ellipse_agreement, ellipse_box, sub_boxes
from monai_fetal.engines.sam_inferer import SamInferer
from monai_fetal.shape.ellipse import Ellipse, ellipse_to_mask
from monai_fetal.transforms.box import box_from_mask

SIZE = 128
HEAD = Ellipse(cx=60.0, cy=70.0, a=30.0, b=20.0, theta=0.4)


def _head_with_leak() -> np.ndarray:
    """The head mask plus a thin streak to the right edge (a leak that a mask box follows)."""
    mask = ellipse_to_mask(HEAD, (SIZE, SIZE)).astype(bool)
    mask[69, 60:] = True
    return mask


class _StandInSam:
    """Decodes every box to the same mask (logits +-10) with a fixed IoU estimate; no trained locator."""

    def __init__(self, mask: np.ndarray, iou: float = 0.9) -> None:
        self.logits = torch.as_tensor(np.where(mask, 10.0, -10.0), dtype=torch.float32)
        self.iou = iou
        self.locator = torch.nn.Module()
        self.locator.trained = torch.tensor(False)
        self.boxes: list[torch.Tensor] = []

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return torch.zeros(images.shape[0], 8, 4, 4)

    def decode(self, embeddings, boxes=None, multimask=False, return_iou=False):
        self.boxes.append(boxes.clone())
        k = 3 if multimask else 1
        logits = self.logits.expand(embeddings.shape[0], k, SIZE, SIZE)
        ious = torch.full((embeddings.shape[0], k), self.iou)
        return (logits, ious) if return_iou else logits


def _image() -> torch.Tensor:
    image = torch.zeros(1, 3, SIZE, SIZE)
    image[..., 10:120, 5:125] = 0.5  # the field of view
    return image


def test_ellipse_box_is_the_box_of_the_rasterised_ellipse():
    box = ellipse_box(HEAD)
    expected = box_from_mask(ellipse_to_mask(HEAD, (SIZE, SIZE)))
    assert torch.allclose(box, expected, atol=1.0)
    upright = ellipse_box(Ellipse(50.0, 40.0, 30.0, 10.0, math.pi / 2))
    assert torch.allclose(upright, torch.tensor([40.0, 10.0, 60.0, 70.0]), atol=1e-4)


def test_ellipse_agreement_is_high_for_an_ellipse_and_low_for_a_leak():
    assert ellipse_agreement(ellipse_to_mask(HEAD, (SIZE, SIZE))) > 0.98
    square = np.zeros((SIZE, SIZE), bool)
    square[10:100, 10:30] = True
    square[80:100, 10:110] = True  # an L shape
    assert ellipse_agreement(square) < 0.8
    assert ellipse_agreement(np.zeros((SIZE, SIZE), bool)) == 0.0


@pytest.mark.parametrize("ellipse_boxes", [True, False])
def test_refinement_box_follows_the_ellipse_not_the_leak(ellipse_boxes):
    network = _StandInSam(_head_with_leak())
    prompt = AutoBoxPrompt(refinements=1, margin=0.0, ellipse_boxes=ellipse_boxes)
    boxes, quality = prompt.prompt(network, _image())
    x1 = float(boxes[0, 2])
    head_x1 = float(ellipse_box(HEAD)[2])
    if ellipse_boxes:
        assert x1 - head_x1 < 0.25 * (SIZE - 1 - head_x1)  # the moment ellipse of head + streak: near the head's edge
    else:
        assert x1 == SIZE - 1  # the mask's box runs to the streak's end
    assert quality.shape == (1,) and 0.0 < float(quality[0]) <= 0.9


def test_quality_is_the_iou_estimate_times_the_ellipse_agreement():
    head = ellipse_to_mask(HEAD, (SIZE, SIZE)).astype(bool)
    network = _StandInSam(head, iou=0.8)
    boxes, quality = AutoBoxPrompt(refinements=0).prompt(network, _image())
    assert float(quality[0]) == pytest.approx(0.8 * ellipse_agreement(head), abs=1e-6)
    result = AutoBoxPrompt(refinements=0).segment(network, _image())
    assert torch.equal(result.boxes, boxes) and torch.equal(result.quality, quality)
    assert torch.equal(result.logits, network.logits.expand(1, 1, SIZE, SIZE)) and torch.equal(result.iou, torch.tensor([[0.8]]))
    assert torch.isnan(result.located).all()  # no trained locator: no locator box


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="refinements"):
        AutoBoxPrompt(refinements=-1)


class _LocatedSam(_StandInSam):
    """A stand-in with a trained locator whose logits hold two positive regions: a weak one and the head."""

    def __init__(self, mask: np.ndarray) -> None:
        super().__init__(mask)
        self.locator.trained = torch.tensor(True)
        logits = torch.full((SIZE, SIZE), -5.0)
        logits[15:35, 90:120] = 2.0  # a weaker blob elsewhere (a larger one: the largest region is not the head)
        logits[10:40, 5:60] = 1.0
        logits[55:85, 40:80] = 4.0  # the head's region, with the peak
        self.located = logits

    def locate(self, embeddings):
        return self.located.expand(embeddings.shape[0], 1, SIZE, SIZE)


def test_trained_locator_starts_from_the_region_that_holds_its_peak():
    network = _LocatedSam(ellipse_to_mask(HEAD, (SIZE, SIZE)).astype(bool))
    boxes, quality = AutoBoxPrompt(refinements=1, margin=0.0, rescue_below=0.0).prompt(network, _image())
    assert torch.equal(network.boxes[0][0], torch.tensor([40.0, 55.0, 79.0, 84.0]))  # the peak region's box, one decode
    assert len(network.boxes) == 2  # the start and one refinement: no field-of-view candidates
    assert torch.allclose(boxes[0], box_from_mask(ellipse_to_mask(HEAD, (SIZE, SIZE))))
    assert float(quality[0]) > 0.8


def test_the_inferer_returns_the_masks_the_prompt_decoded_without_decoding_them_again():
    network = _LocatedSam(ellipse_to_mask(HEAD, (SIZE, SIZE)).astype(bool))
    inferer = SamInferer(prompt="auto", auto_prompt=AutoBoxPrompt(refinements=1, margin=0.0))
    logits = inferer(_image(), network)
    assert len(network.boxes) == 2  # the start and one refinement, whose mask is the output
    assert torch.equal(logits, network.logits.expand(1, 1, SIZE, SIZE)) and torch.equal(inferer.last_iou, torch.tensor([[0.9]]))
    assert torch.equal(inferer.last_located, torch.tensor([[40.0, 55.0, 79.0, 84.0]]))  # the locator's head box, for the zoom
    assert inferer.last_boxes is None  # no given box: CropRefined leaves the head alone


class _DecoySam(_LocatedSam):
    """The locator's peak is on a decoy (a rectangle, top right); a box centred there decodes to the decoy, any other to the head."""

    def __init__(self) -> None:
        self.head = ellipse_to_mask(HEAD, (SIZE, SIZE)).astype(bool)
        super().__init__(self.head)
        self.decoy = np.zeros((SIZE, SIZE), bool)
        self.decoy[15:35, 90:120] = True
        self.located = torch.where(torch.as_tensor(self.decoy), 4.0, -5.0)

    def decode(self, embeddings, boxes=None, multimask=False, return_iou=False):
        centre_x, centre_y = float(boxes[0, 0] + boxes[0, 2]) / 2, float(boxes[0, 1] + boxes[0, 3]) / 2
        self.logits = torch.as_tensor(np.where(self.decoy if centre_x > 85 and centre_y < 45 else self.head, 10.0, -10.0), dtype=torch.float32)
        return super().decode(embeddings, boxes, multimask, return_iou)


def test_a_low_quality_start_is_rescued_by_a_better_candidate():
    head_box = box_from_mask(ellipse_to_mask(HEAD, (SIZE, SIZE)))
    network = _DecoySam()
    kept, kept_quality = AutoBoxPrompt(refinements=1, margin=0.0, rescue_below=0.0).prompt(network, _image())
    assert torch.equal(kept[0], box_from_mask(network.decoy))  # no rescue: the decoy, at its (lower) quality
    rescued, quality = AutoBoxPrompt(refinements=1, margin=0.0, rescue_below=0.95).prompt(network, _image())
    assert torch.allclose(rescued[0], head_box)
    assert float(quality[0]) == pytest.approx(0.9 * ellipse_agreement(network.head), abs=1e-6) and float(quality[0]) > float(kept_quality[0])
    with pytest.raises(ValueError, match="rescue_below"):
        AutoBoxPrompt(rescue_below=1.5)


def test_sub_boxes_lie_inside_the_box_at_its_corners_edge_middles_and_centre():
    boxes = sub_boxes(torch.tensor([10.0, 20.0, 110.0, 70.0]), (0.5, 0.8))
    assert boxes.shape == (18, 4)
    assert torch.allclose(boxes[0], torch.tensor([10.0, 20.0, 60.0, 45.0]))  # top left, half size
    assert torch.allclose(boxes[4], torch.tensor([35.0, 32.5, 85.0, 57.5]))  # centre
    assert torch.allclose(boxes[8], torch.tensor([60.0, 45.0, 110.0, 70.0]))  # bottom right
    assert torch.allclose(boxes[9:, 2] - boxes[9:, 0], torch.tensor(80.0)) and torch.allclose(boxes[9:, 3] - boxes[9:, 1], torch.tensor(40.0))
    assert bool((boxes[:, :2] >= torch.tensor([10.0, 20.0])).all() and (boxes[:, 2:] <= torch.tensor([110.0, 70.0])).all())


class _LeakySam(_LocatedSam):
    """The locator finds head and sac together; a box reaching right of x = 95 decodes to the head plus the sac lobe on its
    right (a leak), a box left of it to the head."""

    def __init__(self) -> None:
        self.head = ellipse_to_mask(HEAD, (SIZE, SIZE)).astype(bool)
        self.leak = self.head | ellipse_to_mask(Ellipse(cx=100.0, cy=70.0, a=22.0, b=30.0, theta=0.0), (SIZE, SIZE)).astype(bool)
        super().__init__(self.head)
        self.located = torch.where(torch.as_tensor(self.leak), 4.0, -5.0)

    def decode(self, embeddings, boxes=None, multimask=False, return_iou=False):
        self.boxes.append(boxes.clone())
        k = 3 if multimask else 1
        masks = [self.leak if float(box[2]) > 95 else self.head for box in boxes]
        logits = torch.stack([torch.as_tensor(np.where(m, 10.0, -10.0), dtype=torch.float32) for m in masks])[:, None]
        ious = torch.full((len(boxes), k), self.iou)
        return (logits.expand(-1, k, -1, -1), ious) if return_iou else logits.expand(-1, k, -1, -1)


def test_the_sub_box_search_cuts_a_leak_down_to_the_head():
    network = _LeakySam()
    leaked, leak_quality = AutoBoxPrompt(refinements=1, margin=0.0).prompt(network, _image())
    assert torch.equal(leaked[0], box_from_mask(network.leak))  # search off: the leak's box
    searched_network = _LeakySam()
    prompt_searched = AutoBoxPrompt(refinements=1, margin=0.0, search_below=0.95)
    searched, quality, _, _, was_searched, _ = prompt_searched.segment(searched_network, _image())
    assert len(searched_network.boxes[-1]) == 18  # one batched decode of 9 sub-boxes at each of the two scales
    assert any(torch.equal(searched[0], box) for box in sub_boxes(leaked[0], (0.65, 0.8)))
    assert float(searched[0, 2]) <= 95  # a box that holds the head alone
    assert float(quality[0]) == pytest.approx(float(leak_quality[0]), abs=1e-6)  # the search changes the box, not the trust
    assert searched_network.boxes[-1].shape == (18, 4) and bool(was_searched[0])
    inferer = SamInferer(prompt="box_or_auto", auto_prompt=prompt_searched)
    inferer(_image(), _LeakySam())
    assert bool(inferer.last_searched[0])  # what segment flags below a higher quality
    inferer(_image(), _LeakySam(), boxes=torch.tensor([[30.0, 40.0, 90.0, 100.0]]))
    assert inferer.last_searched is None  # a given box: no automatic prompt
    good = _LeakySam()
    good.leak = good.head  # every box decodes to the head: quality 0.9 * ~1 is not below 0.85, so no search
    unsearched = AutoBoxPrompt(refinements=1, margin=0.0, search_below=0.85)
    assert not bool(unsearched.segment(good, _image()).searched[0])
    assert all(len(boxes) <= 3 for boxes in good.boxes)
    with pytest.raises(ValueError, match="search_below"):
        AutoBoxPrompt(search_below=1.5)
    with pytest.raises(ValueError, match="search_scales"):
        AutoBoxPrompt(search_below=0.9, search_scales=(0.5, 1.2))


def test_the_skull_ring_redraws_the_box_of_a_mask_that_stopped_short_on_the_skull():
    """The decoder returns a head 1/1.2 of the skull's size; below ``ring_below`` the box is the skull ring's, as a ground-truth box would be."""
    skull = ellipse_to_mask(HEAD, (SIZE, SIZE)) > 0
    inner = ellipse_to_mask(Ellipse(HEAD.cx, HEAD.cy, HEAD.a - 4.0, HEAD.b - 4.0, HEAD.theta), (SIZE, SIZE)) > 0
    image = _image()
    image[:, :, torch.as_tensor(skull & ~inner)] = 0.9  # a bright skull ring, 4 px thick, in the grey field of view
    short = ellipse_to_mask(Ellipse(HEAD.cx, HEAD.cy, HEAD.a / 1.2, HEAD.b / 1.2, HEAD.theta), (SIZE, SIZE)).astype(bool)
    plain = _StandInSam(short)
    unchanged = AutoBoxPrompt(refinements=1, margin=0.0).prompt(plain, image)[0]
    assert torch.allclose(unchanged[0], box_from_mask(short))
    network = _StandInSam(short)
    redrawn = AutoBoxPrompt(refinements=1, margin=0.0, ring_below=0.95).segment(network, image)  # quality 0.9 x ~1
    assert torch.allclose(redrawn.boxes[0], ellipse_box(HEAD), atol=2.0), redrawn.boxes
    assert len(network.boxes) == len(plain.boxes) + 1 and torch.equal(network.boxes[-1][0], redrawn.boxes[0])  # the ring's box, decoded
    confident = _StandInSam(short)
    kept = AutoBoxPrompt(refinements=1, margin=0.0, ring_below=0.85).prompt(confident, image)[0]
    assert torch.equal(kept, unchanged) and len(confident.boxes) == len(plain.boxes)  # a confident head keeps its box
    for bad in (1.5, -0.1, True, "0.9"):
        with pytest.raises(ValueError, match="ring_below"):
            AutoBoxPrompt(ring_below=bad)


class _SacSam(_StandInSam):
    """Decodes a box up to 1.5 times the head's width to the head, a wider one to the head and the dark sac around it (a leak)."""

    def __init__(self, head: np.ndarray, sac: np.ndarray) -> None:
        super().__init__(sac)
        self.head, self.sac, self.head_width = head, sac, float(box_from_mask(head)[2] - box_from_mask(head)[0])

    def decode(self, embeddings, boxes=None, multimask=False, return_iou=False):
        self.boxes.append(boxes.clone())
        masks = [self.head if float(box[2] - box[0]) < 1.5 * self.head_width else self.sac for box in boxes]
        logits = torch.stack([torch.as_tensor(np.where(m, 10.0, -10.0), dtype=torch.float32) for m in masks])[:, None]
        ious = torch.full((len(boxes), 1), self.iou)
        return (logits, ious) if return_iou else logits


def test_the_wide_ring_finds_a_small_head_in_a_mask_that_leaked_far_into_the_sac():
    head_ellipse, sac_ellipse = Ellipse(48.0, 66.0, 16.0, 12.0, 0.2), Ellipse(64.0, 64.0, 38.0, 30.0, 0.0)
    head = ellipse_to_mask(head_ellipse, (SIZE, SIZE)) > 0
    sac = (ellipse_to_mask(sac_ellipse, (SIZE, SIZE)) > 0) | head
    brain = ellipse_to_mask(Ellipse(48.0, 66.0, 13.0, 9.0, 0.2), (SIZE, SIZE)) > 0
    image = _image()
    image[:, :, torch.as_tensor(sac)] = 0.05  # dark fluid
    image[:, :, torch.as_tensor(head)] = 0.9  # the skull, 3 px thick, around a grey brain
    image[:, :, torch.as_tensor(brain)] = 0.3
    near_only = _SacSam(head, sac)
    leaked = AutoBoxPrompt(refinements=1, margin=0.0, ring_below=0.95).segment(near_only, image)
    assert float(leaked.boxes[0, 2] - leaked.boxes[0, 0]) > 1.5 * near_only.head_width  # the near ring stays on the sac
    network = _SacSam(head, sac)
    found = AutoBoxPrompt(refinements=1, margin=0.0, ring_below=0.95, wide_ring_ratio=1.2).segment(network, image)
    centre = (found.boxes[0, :2] + found.boxes[0, 2:]) / 2  # the wide grid's steps are a few pixels here
    assert torch.allclose(centre, torch.tensor([head_ellipse.cx, head_ellipse.cy]), atol=4.0), found.boxes
    assert torch.equal(found.logits[0, 0] > 0, torch.as_tensor(head)) and len(network.boxes) == len(near_only.boxes) + 1  # one decode more
    assert torch.equal(found.quality, leaked.quality)  # the trust is the prompt's, as for the near ring
    for bad in (0.5, True, "1.2"):
        with pytest.raises(ValueError, match="wide_ring_ratio"):
            AutoBoxPrompt(wide_ring_ratio=bad)
