"""Automatic box prompt: find the head with no box.

With a trained head locator, the start box is the box of the locator's head: the connected region of
positive locator logits that holds their maximum. Without one (pretrained SAM), candidate masks come
from decoding a few start boxes (the ultrasound field of view and shrunken versions of it), each scored
by SAM's IoU estimate times its agreement with a fitted ellipse (heads are ellipses). Either way the
box is then refined by re-prompting the decoder with the box of its own mask (optionally cut to the box
of the ellipse fitted to that mask). :meth:`AutoBoxPrompt.prompt` also gives each box a quality: SAM's
IoU estimate for its mask times that mask's agreement with its fitted ellipse. With a trained locator,
an image whose quality stays below ``rescue_below`` also tries two other starts (a looser locator
region and the field-of-view candidate), and the refined box of best quality wins. An image whose
quality then stays below ``search_below`` also tries smaller boxes inside its box (the sub-box search),
which cuts masks that leaked into the amniotic sac or the body down to the head. Last, an image whose quality
is below ``ring_below`` has its box redrawn on the skull: the ellipse fitted to the box's mask is moved to the
bright ring of the skull around it (:func:`~monai_fetal.shape.edge.find_skull_ring`), and that ellipse's box is
the prompt; where a much smaller ring inside a leaked mask lies far better on the skull (``wide_ring_ratio``),
that ring's box is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage

from monai_fetal.errors import ConfigError
from monai_fetal.shape.edge import SkullRing, find_skull_ring
from monai_fetal.shape.ellipse import Ellipse, ellipse_to_mask, fit_ellipse_to_mask
from monai_fetal.transforms.box import box_from_mask, field_of_view_box, widen_box

WIDE_RING_QUALITY_TOLERANCE = 0.03
"""How much lower than the near ring's mask quality the wide ring's may be and still win (step 5 of :class:`AutoBoxPrompt`)."""

__all__ = ["AutoBoxPrompt", "AutoPromptResult", "ellipse_agreement", "ellipse_box", "mask_quality", "sub_boxes"]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    return labels == int(np.argmax(np.bincount(labels.ravel())[1:])) + 1


def ellipse_agreement(mask: np.ndarray) -> float:
    """Dice between the largest component of ``mask`` and its moment-fitted ellipse (0 for tiny masks)."""
    largest = _largest_component(np.asarray(mask) > 0)
    if largest.sum() < 50:
        return 0.0
    ellipse = ellipse_to_mask(fit_ellipse_to_mask(largest), largest.shape) > 0
    return float(2 * (largest & ellipse).sum() / (largest.sum() + ellipse.sum()))


def ellipse_box(ellipse: Ellipse) -> torch.Tensor:
    """The tight box ``[x0, y0, x1, y1]`` of an ellipse (unclipped)."""
    cos, sin = math.cos(ellipse.theta), math.sin(ellipse.theta)
    half_w = math.hypot(ellipse.a * cos, ellipse.b * sin)
    half_h = math.hypot(ellipse.a * sin, ellipse.b * cos)
    return torch.tensor([ellipse.cx - half_w, ellipse.cy - half_h, ellipse.cx + half_w, ellipse.cy + half_h], dtype=torch.float32)


def mask_quality(mask: np.ndarray, iou_estimate: float) -> float:
    """A decoded mask's quality in [0, 1]: SAM's IoU estimate (clipped) times the mask's :func:`ellipse_agreement`."""
    return min(1.0, max(0.0, iou_estimate)) * ellipse_agreement(mask)


def sub_boxes(box: torch.Tensor, scales: tuple[float, ...]) -> torch.Tensor:
    """Boxes ``[N, 4]`` inside ``box``, each side ``scale`` times its side, at its corners, edge middles and centre."""
    size = box[2:] - box[:2]
    offsets = torch.tensor([[fx, fy] for fy in (0.0, 0.5, 1.0) for fx in (0.0, 0.5, 1.0)])
    starts = torch.cat([box[:2] + offsets * (1.0 - scale) * size for scale in scales])
    sizes = torch.cat([(scale * size).expand(len(offsets), 2) for scale in scales])
    return torch.cat([starts, starts + sizes], dim=1)


class AutoPromptResult(NamedTuple):
    """What :meth:`AutoBoxPrompt.segment` gives for a batch of ``B`` images in the SAM frame (size ``S``)."""

    boxes: torch.Tensor
    """``[B, 4]``: the prompt boxes, x0, y0, x1, y1 in the frame."""
    quality: torch.Tensor
    """``[B]`` in [0, 1]: see :meth:`AutoBoxPrompt.segment`."""
    logits: torch.Tensor
    """``[B, 1, S, S]``: the mask logits of ``boxes``, as ``network.decode`` gives them."""
    iou: torch.Tensor
    """``[B, 1]``: SAM's IoU estimate of those masks."""
    searched: torch.Tensor
    """``[B]`` bool: the images whose sub-boxes were searched (step 4), which ``segment`` flags below a higher quality."""
    located: torch.Tensor | None = None
    """``[B, 4]``: the trained locator's head box in the frame (step 1; NaN where there is none), which
    :class:`~monai_fetal.engines.zoomed_prompt.ZoomedPromptd` zooms into."""


@dataclass
class _Decoded:
    """One decoded box: the box (on the CPU), its mask logits ``[1, S, S]`` and IoU estimate ``[1]``, and its mask."""

    box: torch.Tensor
    logits: torch.Tensor
    iou: torch.Tensor
    mask: np.ndarray

    @cached_property
    def quality(self) -> float:
        """:func:`mask_quality` of the mask, computed once and only where a step compares it (not for each refinement)."""
        return mask_quality(self.mask, float(self.iou[0]))


class AutoBoxPrompt:
    """Box prompts for images in the SAM frame, found without a user box.

    1. Start: with a trained head locator (``network.locator.trained``), the box of the connected region
       of positive locator logits that holds their maximum. Otherwise the field of view (non-black
       content) and versions shrunk by ``shrink``, each decoded with the single and the three multimask
       outputs; the candidate mask with the best SAM IoU estimate times agreement with a fitted ellipse
       (areas within ``area_range`` of the field of view) gives the start.
    2. Re-prompt ``refinements`` times with the box of the last mask (with ``ellipse_boxes``, that box
       cut to the box of the mask's fitted ellipse), widened by ``margin``.
    3. With a trained locator and a quality below ``rescue_below``: steps 1-2 again from the looser
       locator region and from the field-of-view candidate; the box of best quality is kept.
    4. With a quality still below ``search_below``: each box of :func:`sub_boxes` of the kept box (sides
       ``search_scales`` of its sides, nine places each) is decoded once; the box of best quality is kept.
       The quality returned is the one before the search, and the result's ``searched`` tells which images
       were searched.
    5. With a quality after steps 1-3 below ``ring_below``: the ellipse fitted to the kept box's mask is
       moved onto the skull's bright ring (:func:`~monai_fetal.shape.edge.find_skull_ring`, on the
       frame's image), and the box of that ellipse, widened by ``margin``, is returned. The quality returned
       stays that of step 3. With ``wide_ring_ratio``, a wide search also looks inside the mask for a much smaller
       ring (a head in a mask that leaked far into the sac); when its score is at least ``wide_ring_ratio`` times
       the near ring's and its box's mask has a quality at most 0.03 lower, its box is returned instead.

    The locator's start was first chosen on the 213 protocol test images (5-shot model, seed 0, Dice in the
    SAM frame): 0.907 mean Dice against 0.893 for the previous start (the largest region above 0.2 of the
    logits' peak, scored among field-of-view candidates), with 3 decodes per image instead of about 20.
    Checked since on the 55 ``hc18_subset`` images the same model never trained on (no test image): after
    refinement, 0.906 from this start against 0.899 from the region above logit -1 and 0.844 from the
    field-of-view candidate.

    Args:
        shrink: fractions by which each side of the field-of-view box is pulled in (no trained locator).
        refinements: re-prompting rounds.
        margin: widening of refinement boxes (the same as the box margin used in training).
        area_range: plausible head area as a fraction of the field of view (no trained locator).
        ellipse_boxes: cut refinement boxes to the box of the mask's fitted ellipse (a leak widens a mask's
            box but hardly its ellipse's). Off by default: on 40 HC18 test images (5-shot model after 2
            epochs) 0.730 mean Dice against 0.736.
        rescue_below: with a trained locator, an image whose refined quality is below this also starts
            from the region where the locator's logits exceed ``rescue_level`` around their peak, and from
            the field-of-view candidate (as without a locator); each is refined, and the box with the best
            quality is kept, at about 0.7 s more for each rescued image on 2 cores. 0 (the default here,
            used by training's validation and self-training) switches it off. The inference bundle uses
            0.9, chosen on ``hc18_subset`` images that the models never trained on (no protocol test
            image): no-box Dice off -> 0.9, 5-shot seeds 0/1/2 (50 images each): 0.900 -> 0.899,
            0.893 -> 0.893, 0.896 -> 0.900; 1-shot seed 2, whose locator fails on most heads (54 images):
            0.484 -> 0.807. 0.93 lowered the 5-shot seed-0 Dice (0.906 -> 0.897 on 55 images).
        rescue_level: the locator logit level of the looser region.
        search_below: an image whose quality after steps 1-3 is below this also tries the sub-boxes of
            step 4 (one batched decode of 9 boxes per scale). 0 (the default here, used by training's
            validation and self-training) switches it off. Most failures are masks that leaked into the
            amniotic sac or into the body around a correctly placed head; a smaller box holds the head
            alone, and its mask scores a higher quality. The inference bundle searches below the flag
            threshold (0.92) with scales 0.65 and 0.8, chosen on the ``hc18_subset`` images that the
            5-shot models of seeds 0/1/2 never trained on (50 each, no protocol test image; rescue 0.9
            before it): mean Dice in the SAM frame 0.897 -> 0.916 (per seed +0.024, +0.025, +0.008), the
            same as below 0.94 (0.917); scale 0.5 alone lowered it (0.890); 0.65 or 0.8 alone gave 0.908
            and 0.906. A best-of-18 quality is biased upwards, so ``segment`` flags a searched head below a higher
            quality (:data:`~monai_fetal.shape.measure.FLAG_SEARCHED_BELOW`; until package 0.4.10, whatever its quality).
        search_scales: side fractions of the sub-boxes.
        ring_below: an image whose quality after steps 1-3 is below this has its final box redrawn on the skull ring
            (step 5), at under 0.1 s more on 2 cores (the ring searches; the ring's box is decoded in place of the kept
            one). 0 (the default here, used by training's validation and self-training) switches it off. The inference
            bundle uses 0.94 (its flag threshold until package 0.4.10), chosen on the ``hc18_subset`` images that the 5-shot models of
            seeds 0/1/2 never trained on (no protocol test image; rescue 0.9 and search 0.92 before it). Redrawing
            every image's box: no-box Dice 0.916 -> 0.922 on those three models (per seed 0.922 -> 0.929, 0.918 ->
            0.922, 0.908 -> 0.914), images under 0.90 32 -> 21; with the self-trained models of seeds 0/1 too (250
            predictions) 0.912 -> 0.9165, 54 -> 38. Below 0.94 only: 0.9170 and 39, below 0.96 0.9166 and 38, the
            searched heads alone (below 0.92) 0.9155 and 44. Most of the gain is in heads whose mask leaked or stopped
            short of the skull; a box drawn on the ring, like the ground-truth box, holds the whole head and nothing
            else. A confident head gains nothing from it, and a brighter ring nearby can pull its box off the skull:
            on the protocol test set, redrawing every box turned some heads of Dice 0.97 into 0.89
            (``benchmarks/results/auto_measure_cpu_ring_all.json``). Keeping the ring's box only where its mask's
            quality was not lower gave 0.923 with 24 images under 0.90 (three models): the quality does not tell which
            box is better.
        wide_ring_ratio: in step 5, also search a much smaller ring anywhere inside the mask
            (:func:`~monai_fetal.shape.edge.find_skull_ring` with ``wide``: sizes 0.35-1.25, shifts up to half the
            axis), and take its box where its ring score is at least this many times the near ring's and its mask's
            quality at most :data:`WIDE_RING_QUALITY_TOLERANCE` lower. 0 (the default here) switches it off. The
            near ring cannot reach a head in a mask that leaked far into the amniotic sac (the mask's ellipse is
            twice the head's and centred off it); the wide ring lies on the skull, and scores far higher. The
            inference bundle uses 1.2, chosen on the ``hc18_subset`` images that 5-shot models never trained on
            (no protocol test image): on the 250 predictions of the 5-shot models of seeds 0/1/2 and the
            self-trained ones of seeds 0/1 (50 images each), no-box Dice 0.917 -> 0.935 and images under 0.90
            39 -> 29, every model better (+0.019, +0.012, +0.019, +0.019, +0.023; the last was not among the four
            the setting was chosen on). The wide ring's box won on 16 heads, one of them for the worse (0.68 -> 0.61).
            Ratios 1.1-1.3 with tolerances 0.03-0.05 gave 0.932-0.936; ratio 1.5 0.930; no quality condition
            0.934, no tolerance 0.928.
    """

    def __init__(
        self,
        shrink: tuple[float, ...] = (0.0, 0.15, 0.3),
        refinements: int = 2,
        margin: float = 0.05,
        area_range: tuple[float, float] = (0.03, 0.7),
        ellipse_boxes: bool = False,
        rescue_below: float = 0.0,
        rescue_level: float = -1.0,
        search_below: float = 0.0,
        search_scales: tuple[float, ...] = (0.65, 0.8),
        ring_below: float = 0.0,
        wide_ring_ratio: float = 0.0,
    ) -> None:
        if refinements < 0:
            raise ValueError(f"refinements must be >= 0, got {refinements}")
        if not 0.0 <= rescue_below <= 1.0:
            raise ValueError(f"rescue_below must be in [0, 1] (0 switches the rescue off), got {rescue_below}")
        if not 0.0 <= search_below <= 1.0:
            raise ValueError(f"search_below must be in [0, 1] (0 switches the sub-box search off), got {search_below}")
        if isinstance(ring_below, bool) or not isinstance(ring_below, (int, float)) or not 0.0 <= ring_below <= 1.0:
            raise ConfigError("ring_below", ring_below, "a quality in [0, 1] (0 switches the skull-ring box off)")
        ratio_ok = isinstance(wide_ring_ratio, (int, float)) and not isinstance(wide_ring_ratio, bool)
        if not ratio_ok or not (wide_ring_ratio == 0 or wide_ring_ratio >= 1):
            raise ConfigError("wide_ring_ratio", wide_ring_ratio, "a score ratio >= 1 (0 switches the wide ring search off)")
        if search_below > 0 and not all(0.0 < scale < 1.0 for scale in search_scales):
            raise ValueError(f"search_scales must be fractions in (0, 1), got {search_scales}")
        self.shrink = shrink
        self.refinements = refinements
        self.margin = margin
        self.area_range = area_range
        self.ellipse_boxes = ellipse_boxes
        self.rescue_below = rescue_below
        self.rescue_level = rescue_level
        self.search_below = search_below
        self.search_scales = tuple(search_scales)
        self.ring_below = ring_below
        self.wide_ring_ratio = wide_ring_ratio

    def _start_boxes(self, image: torch.Tensor) -> torch.Tensor:
        view = field_of_view_box(image)
        limit = torch.tensor([image.shape[-1] - 1.0, image.shape[-2] - 1.0]).repeat(2)
        return torch.stack([widen_box(view, -s, limit) for s in self.shrink])

    def _best_candidate(self, network, embedding: torch.Tensor, starts: torch.Tensor, view_area: float) -> np.ndarray:
        """The field-of-view candidate mask with the best score."""
        repeated = embedding.expand(len(starts), -1, -1, -1)
        starts = starts.to(embedding.device)
        single, single_iou = network.decode(repeated, starts, multimask=False, return_iou=True)
        multi, multi_iou = network.decode(repeated, starts, multimask=True, return_iou=True)
        logits = torch.cat([single, multi], dim=1).flatten(0, 1)
        estimates = torch.cat([single_iou, multi_iou], dim=1).flatten()
        best, best_score = None, -1.0
        for mask, iou in zip((logits > 0).cpu().numpy(), estimates.tolist()):
            area = mask.sum() / view_area
            score = iou * ellipse_agreement(mask) if self.area_range[0] < area < self.area_range[1] else 0.0
            if score > best_score:
                best, best_score = mask, score
        return best

    @staticmethod
    def located_head(network, embedding: torch.Tensor, level: float = 0.0) -> np.ndarray | None:
        """The locator's head in the frame: the region of logits above ``level`` that holds their maximum (``None``: none above)."""
        logits = network.locate(embedding[None])[0, 0].cpu().numpy()
        labels, _ = ndimage.label(logits > level)
        peak = labels.flat[int(np.argmax(logits))]
        return labels == peak if peak else None

    def _field_of_view_box(self, network, image: torch.Tensor, embedding: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
        """The box of the best field-of-view candidate mask (the start without a trained locator)."""
        starts = self._start_boxes(image.cpu())
        view = starts[0]
        view_area = float((view[2] - view[0] + 1) * (view[3] - view[1] + 1))
        return self._box_of(self._best_candidate(network, embedding[None], starts, view_area), view, limit)

    def _start_box(self, network, image: torch.Tensor, embedding: torch.Tensor, limit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The start box and the trained locator's head box (NaN where there is none, and the start is the best
        field-of-view candidate's box)."""
        head = self.located_head(network, embedding) if bool(network.locator.trained) else None
        if head is None:
            return self._field_of_view_box(network, image, embedding, limit), torch.full((4,), math.nan)
        return box_from_mask(head), box_from_mask(head)

    def _rescue_boxes(self, network, image: torch.Tensor, embedding: torch.Tensor, limit: torch.Tensor) -> list[torch.Tensor]:
        """Other start boxes for an image whose quality is low: the looser locator region and the field-of-view candidate."""
        looser = self.located_head(network, embedding, self.rescue_level)
        boxes = [box_from_mask(looser)] if looser is not None else []
        return boxes + [self._field_of_view_box(network, image, embedding, limit)]

    @staticmethod
    def _decoded(network, embedding: torch.Tensor, boxes: torch.Tensor) -> list[_Decoded]:
        """Each of ``boxes`` ``[N, 4]`` decoded on one image's ``embedding``, in one batched decode."""
        logits, estimates = network.decode(embedding.expand(len(boxes), -1, -1, -1), boxes.to(embedding.device), return_iou=True)
        masks = (logits[:, 0] > 0).cpu().numpy()
        return [
            _Decoded(box, mask_logits, iou, mask) for box, mask_logits, iou, mask in zip(boxes.cpu(), logits, estimates, masks)
        ]

    def _refined(self, network, embedding: torch.Tensor, box: torch.Tensor, limit: torch.Tensor) -> _Decoded:
        """``box`` decoded, then re-prompted ``refinements`` times with the box of its own mask."""
        decoded = self._decoded(network, embedding, box[None])[0]
        for _ in range(self.refinements):
            decoded = self._decoded(network, embedding, self._box_of(decoded.mask, decoded.box, limit)[None])[0]
        return decoded

    def _on_skull_ring(self, network, image: torch.Tensor, embedding: torch.Tensor, kept: _Decoded, limit: torch.Tensor) -> _Decoded:
        """The box of the skull ring found around the mask of ``kept``, decoded (step 5); ``kept`` itself when that mask is tiny."""
        head = _largest_component(kept.mask)
        if head.sum() < 50:
            return kept
        frame, start, unit = image[0].cpu().numpy(), fit_ellipse_to_mask(head), image.shape[-1] / 256
        near = find_skull_ring(frame, start, unit)
        on_ring = self._on(network, embedding, near, limit)
        if self.wide_ring_ratio > 0:
            wide = find_skull_ring(frame, start, unit, wide=True)
            if wide.score >= self.wide_ring_ratio * near.score:
                on_wide = self._on(network, embedding, wide, limit)
                if on_wide.quality >= on_ring.quality - WIDE_RING_QUALITY_TOLERANCE:
                    return on_wide
        return on_ring

    def _on(self, network, embedding: torch.Tensor, ring: SkullRing, limit: torch.Tensor) -> _Decoded:
        """The box of ``ring``'s ellipse, widened by ``margin``, decoded."""
        return self._decoded(network, embedding, widen_box(ellipse_box(ring.ellipse), self.margin, limit)[None])[0]

    @torch.no_grad()
    def segment(self, network, images: torch.Tensor, embeddings: torch.Tensor | None = None) -> AutoPromptResult:
        """The boxes of images ``[B, 3, S, S]``, their masks' logits and their quality, decoded once each.

        ``network`` is a :class:`monai_fetal.networks.SamRuntime` or ``PromptedSam`` (``encode``, ``decode``, ``locate``);
        ``embeddings`` are the images' encodings when the caller has them already. The quality is SAM's
        IoU estimate for the mask of the kept box times that mask's agreement with its ellipse; for a
        searched image, or one whose box was redrawn on the skull ring, that of the box before the search.
        The logits are those of the decodes that chose the boxes: no box is decoded twice.
        """
        if embeddings is None:
            embeddings = network.encode(images)
        limit = torch.tensor([images.shape[-1] - 1.0, images.shape[-2] - 1.0]).repeat(2)
        located = bool(network.locator.trained)
        kept_per_image, qualities, searched, heads = [], [], [], []
        for image, embedding in zip(images, embeddings):
            start, head = self._start_box(network, image, embedding, limit)
            heads.append(head)
            kept = self._refined(network, embedding, start, limit)
            if located and kept.quality < self.rescue_below:
                rescued = (self._refined(network, embedding, start, limit) for start in self._rescue_boxes(network, image, embedding, limit))
                kept = max([kept, *rescued], key=lambda candidate: candidate.quality)
            quality = kept.quality
            searched.append(quality < self.search_below)
            if searched[-1]:
                sub = self._decoded(network, embedding, sub_boxes(kept.box, self.search_scales))
                kept = max([kept, *sub], key=lambda candidate: candidate.quality)
            if quality < self.ring_below:
                kept = self._on_skull_ring(network, image, embedding, kept, limit)
            kept_per_image.append(kept)
            qualities.append(quality)
        return AutoPromptResult(
            boxes=torch.stack([kept.box for kept in kept_per_image]).to(images.device),
            quality=torch.tensor(qualities),
            logits=torch.stack([kept.logits for kept in kept_per_image]),
            iou=torch.stack([kept.iou for kept in kept_per_image]),
            searched=torch.tensor(searched),
            located=torch.stack(heads),
        )

    def prompt(self, network, images: torch.Tensor, embeddings: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Boxes ``[B, 4]`` (x0, y0, x1, y1 in the frame) and their quality ``[B]`` for images ``[B, 3, S, S]``; see :meth:`segment`."""
        result = self.segment(network, images, embeddings)
        return result.boxes, result.quality

    def _box_of(self, mask: np.ndarray, fallback: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
        component = _largest_component(mask)
        if not component.any():
            return fallback
        box = box_from_mask(component)
        if self.ellipse_boxes and component.sum() >= 50:  # the ellipse's box within the mask's: cut leaks, never grow
            fitted = ellipse_box(fit_ellipse_to_mask(component))
            box = torch.cat([torch.maximum(box[:2], fitted[:2]), torch.minimum(box[2:], fitted[2:])])
        return widen_box(box, self.margin, limit)
