"""Postprocessing of ``inference.json`` that measures the predicted head.

:class:`HeadEllipsed` ends the mask postprocessing: each head becomes its fitted ellipse, the
outline that is measured. :class:`MeasureHeadd` ends the output postprocessing: it puts a
:class:`~monai_fetal.shape.measure.HeadMeasurement` under ``measurement``
(what ``segment``'s :class:`~monai_fetal.engines.segment.MeasurementWriter` writes) and the same values,
JSON-ready, under ``result``: MONAI Label returns ``result`` with the label as the inference's result
parameters, so a viewer can show the head circumference.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils import convert_to_dst_type

from monai_fetal.engines.segment import spacing_of
from monai_fetal.errors import ConfigError
from monai_fetal.shape.edge import EDGE_SEARCH_PX
from monai_fetal.shape.ellipse import ellipse_to_mask
from monai_fetal.shape.measure import FLAG_BELOW, FLAG_BOXED_BELOW, FLAG_SEARCHED_BELOW, FLAG_THRESHOLDS, HeadMeasurement, Quality, measure_head

__all__ = [
    "PREDICTION_QUALITY_KEY",
    "HeadEllipsed",
    "MeasureHeadd",
    "checked_edge_search_px",
    "checked_flag_below",
    "result_params",
    "sam_iou_of",
    "searched_of",
]

PREDICTION_QUALITY_KEY = "prediction_quality"  # HeadEllipsed's quality of the network's own mask


def sam_iou_of(inferer: object | None) -> float | None:
    """SAM's IoU estimate of the one mask of the last batch (``SamInferer.last_iou``), ``None`` when unknown.

    Raises:
        ConfigError: the last batch held more than one image.
    """
    ious = getattr(inferer, "last_iou", None)
    if ious is None:
        return None
    if ious.shape[0] != 1:
        raise ConfigError("batch_size", ious.shape[0], "1: heads are measured one image per batch")
    return float(ious[0, 0])


def searched_of(inferer: object | None) -> bool:
    """Whether the automatic prompt searched sub-boxes for the last batch's image (``SamInferer.last_searched``): such a
    head is flagged below a higher quality (``MeasureHeadd``'s ``flag_searched_below``; until package 0.4.10 always)."""
    searched = getattr(inferer, "last_searched", None)
    return bool(searched is not None and searched.any())


def boxed_of(inferer: object | None) -> bool:
    """Whether the last batch's head was decoded from a given box (``SamInferer.last_boxes``): such a head is flagged
    below ``MeasureHeadd``'s ``flag_boxed_below``."""
    return getattr(inferer, "last_boxes", None) is not None


def _number_or_nan(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def checked_flag_below(flag_below: float, name: str = "flag_below") -> float:
    """``flag_below`` (the option ``name``) as a float in [0, 1] (0 flags only heads that were not found, 1 flags every head).

    Raises:
        ConfigError: a value outside [0, 1], or not a number.
    """
    value = _number_or_nan(flag_below)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(name, flag_below, "a quality in [0, 1] under which a head is flagged")
    return value


def checked_edge_search_px(edge_search_px: float) -> float:
    """``edge_search_px`` as a float >= 0 (0: no snapping to the skull's edge).

    Raises:
        ConfigError: a negative, infinite or non-numeric value.
    """
    value = _number_or_nan(edge_search_px)
    if not (math.isfinite(value) and value >= 0.0):
        raise ConfigError("edge_search_px", edge_search_px, "pixels >= 0 (0: the fitted ellipse is not snapped to the skull's edge)")
    return value


def _edge_image(d: Mapping[Hashable, object], key: str, shape: tuple[int, ...]) -> np.ndarray:
    """The image as read under ``key``, 2-D in MONAI's ``[W, H]`` layout, checked against the mask's ``shape``."""
    if key not in d:
        raise ValueError(f"no '{key}' in the item to snap the head's ellipse to (copy the image as read there)")
    image = np.asarray(torch.as_tensor(d[key]).cpu(), dtype=np.float32)
    image = image[0] if image.ndim == 3 else image
    if image.shape != shape:
        raise ValueError(f"'{key}' is {image.shape}, the mask {shape}: give the image as read, before framing")
    return image


def result_params(measured: HeadMeasurement, spacing_source: str, thresholds: dict[str, float], searched: bool, boxed: bool) -> dict[str, object]:
    """The ``measurements.csv`` fields of ``measured`` as JSON values (``None`` where unknown), the quality terms, where
    the pixel size came from, the flagging ``thresholds`` (by option name), whether the automatic prompt searched
    sub-boxes and whether the head was decoded from a given box."""
    row = measured.row("")
    params: dict[str, object] = {key: float(value) if value != "" else None for key, value in row.items() if key not in ("image", "flagged")}
    params.update(
        flagged=measured.flagged,
        quality_terms=measured.quality.to_dict(),
        spacing_source=spacing_source,
        **thresholds,
        searched=searched,
        boxed=boxed,
    )
    return params


class MeasureHeadd(MapTransform):
    """Measure the head in the prediction under ``keys`` (``[W, H]``, MONAI's 2-D layout; non-zero = head).

    The pixel size is the item's ``spacing_key`` (mm per pixel; NaN: unknown, as
    :func:`~monai_fetal.engines.segment.plan_segmentation` gives it; a number in a MONAI Label request),
    else looked up for the image file as ``segment`` does (the folder's ``spacing.csv`` or HC18 CSV, then
    the NIfTI/NRRD header). Measures are in the pixels of the image file: an image reduced on read
    (``reduction`` in the item or the image's meta data) is measured at its original scale. SAM's IoU
    estimate, one of the quality terms, is read from ``inferer`` (``SamInferer.last_iou``), so items
    come one per batch.

    Args:
        keys: prediction keys.
        inferer: the inference's :class:`~monai_fetal.engines.SamInferer` (``None``: IoU term 1).
        image_key: the image (its meta data give the file and the reduction).
        spacing_key: the item's pixel size.
        measurement_key: where the :class:`HeadMeasurement` goes.
        result_key: where the JSON-ready values go (MONAI Label's result parameters: ``result``).
        flag_below: quality under which a head is flagged for review.
        flag_searched_below: quality under which a head whose sub-boxes the automatic prompt searched
            (``SamInferer.last_searched``) is flagged: the best of 18 qualities is biased upwards.
        flag_boxed_below: quality under which a head decoded from a given box (``SamInferer.last_boxes``: the user's
            box, or the ground-truth box in evaluation) is flagged instead of ``flag_below``.
        edge_image_key: the image as read (the mask's size): the measured ellipse of a head whose mask is the
            network's own (without :class:`HeadEllipsed`) is snapped to the skull's outer edge in it, as
            :class:`HeadEllipsed` snaps the ellipse it writes; ``None``: the fitted ellipse as it is.
        edge_search_px: how far from the fitted ellipse the edge is looked for, in pixels (0: no snapping).

    Raises:
        ConfigError: a bad ``flag_below``, ``flag_searched_below``, ``flag_boxed_below`` or ``edge_search_px``.
        ValueError: the image under ``edge_image_key`` is missing or not the mask's size.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        inferer: object | None = None,
        image_key: str = "image",
        spacing_key: str = "spacing",
        measurement_key: str = "measurement",
        result_key: str = "result",
        flag_below: float = FLAG_BELOW,
        flag_searched_below: float = FLAG_SEARCHED_BELOW,
        flag_boxed_below: float = FLAG_BOXED_BELOW,
        edge_image_key: str | None = None,
        edge_search_px: float = EDGE_SEARCH_PX,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.inferer = inferer
        self.image_key, self.spacing_key = image_key, spacing_key
        self.measurement_key, self.result_key = measurement_key, result_key
        self.flag_below = checked_flag_below(flag_below)
        self.flag_searched_below = checked_flag_below(flag_searched_below, "flag_searched_below")
        self.flag_boxed_below = checked_flag_below(flag_boxed_below, "flag_boxed_below")
        self.edge_image_key = edge_image_key
        self.edge_search_px = checked_edge_search_px(edge_search_px)

    def _spacing(self, d: Mapping[Hashable, object], path: Path) -> tuple[float | None, str]:
        if self.spacing_key not in d:
            return spacing_of(path, None, {})
        given = d[self.spacing_key]
        try:
            value = float(given)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(self.spacing_key, given, "mm per pixel as a positive number") from None
        if math.isnan(value):
            return None, str(d.get("spacing_source", "unknown"))
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(self.spacing_key, given, "mm per pixel as a positive number")
        return value, str(d.get("spacing_source", "given"))

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        image = d[self.image_key]
        meta = image.meta if isinstance(image, MetaTensor) else {}
        path = Path(str(d.get("image_path") or meta["filename_or_obj"]))
        reduction = int(d.get("reduction", meta.get("reduction", 1)))  # type: ignore[call-overload]
        for key in self.key_iterator(d):
            mask = np.asarray(torch.as_tensor(d[key]).cpu()).T > 0  # [W, H] -> (rows, cols)
            spacing, source = self._spacing(d, path)
            quality, searched, boxed = d.get(PREDICTION_QUALITY_KEY), searched_of(self.inferer), boxed_of(self.inferer)
            flag_below = self.flag_boxed_below if boxed else self.flag_below
            ellipsed = isinstance(quality, Quality)  # the mask is HeadEllipsed's ellipse, snapped already
            edge = None if ellipsed or self.edge_image_key is None else _edge_image(d, self.edge_image_key, mask.T.shape).T
            measured = measure_head(mask, spacing, sam_iou_of(self.inferer), reduction, flag_below, edge, self.edge_search_px)
            if ellipsed:  # score the network's mask, not its ellipse
                measured = dataclasses.replace(measured, quality=quality, flagged=measured.biometry is None or quality.score < flag_below)
            if searched and measured.quality.score < self.flag_searched_below:
                measured = dataclasses.replace(measured, flagged=True)
            d[self.measurement_key] = measured
            thresholds = {name: getattr(self, name) for name in FLAG_THRESHOLDS}
            d[self.result_key] = result_params(measured, source, thresholds, searched, boxed)
        return d


class HeadEllipsed(MapTransform):
    """Replace each head mask under ``keys`` by its filled fitted ellipse, flagged heads included.

    HC18's reference masks are ellipses and the head circumference is the fitted ellipse's perimeter, so a
    head is written as the outline that is measured, and the mask and ``measurements.csv`` always agree.
    A flagged head is written as its ellipse too: the flag, not the mask's shape, tells a reviewer to look
    (``--overlay`` draws the ellipse on the image). Chosen on the ``hc18_subset`` images that the 5-shot models
    of seeds 0/1/2 never trained on (150, no protocol test image): no-box Dice of the written masks 0.938 with
    trusted heads only (package 0.4.9) -> 0.944 with every head (per seed +0.006, +0.005, +0.008); of the 93
    flagged heads 59 gained more than 0.005 and 6 lost more (at most 0.032). A mask with no head (none, or
    under :data:`~monai_fetal.shape.measure.MIN_HEAD_PIXELS`) stays as predicted.
    With ``edge_image_key``, the ellipse is first snapped to the outer edge of the skull in that image (the
    image as read, at the mask's size; :func:`~monai_fetal.shape.edge.snap_to_skull_edge`), the edge
    HC18's outlines trace: the network's edge is only as fine as its 256 x 256 frame.
    The type, dtype, shape (``[1, W, H]`` or ``[W, H]``) and metadata of the input are kept. The quality of
    the network's mask goes under :data:`PREDICTION_QUALITY_KEY`, so that :class:`MeasureHeadd` reports it,
    not the ellipse's own (whose agreement with its fitted ellipse is 1 by construction).

    Args:
        keys: prediction keys (binary masks, non-zero = head).
        inferer: the inference's :class:`~monai_fetal.engines.SamInferer` (``None``: IoU term 1).
        edge_image_key: the image as read (``[1, W, H]`` or ``[W, H]``, the mask's size) whose skull edge the
            ellipse is snapped to; ``None``: the fitted ellipse as it is.
        edge_search_px: how far from the fitted ellipse the edge is looked for, in pixels (0: no snapping).

    Raises:
        ConfigError: a bad ``edge_search_px``.
        ValueError: the image under ``edge_image_key`` is missing or not the mask's size.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        inferer: object | None = None,
        edge_image_key: str | None = None,
        edge_search_px: float = EDGE_SEARCH_PX,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.inferer = inferer
        self.edge_image_key = edge_image_key
        self.edge_search_px = checked_edge_search_px(edge_search_px)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            array = np.asarray(torch.as_tensor(d[key]).cpu())
            mask = (array[0] if array.ndim == 3 else array) > 0
            edge = None if self.edge_image_key is None else _edge_image(d, self.edge_image_key, mask.shape)
            measured = measure_head(mask, None, sam_iou_of(self.inferer), image=edge, edge_search_px=self.edge_search_px)
            d[PREDICTION_QUALITY_KEY] = measured.quality
            if measured.biometry is None:
                continue
            ellipse = ellipse_to_mask(measured.biometry.ellipse, mask.shape).astype(array.dtype)
            d[key] = convert_to_dst_type(ellipse.reshape(array.shape), dst=d[key])[0]
        return d
