"""Prompts from an image viewer (MONAI Label's request parameters) as box prompts in the SAM frame.

MONAI Label puts a request's parameters into the data dictionary and calls the inferer with the image
alone (``BasicInferTask.run_inferer``: ``inferer(inputs, network)``). :class:`ViewerPromptd` turns the
viewer's box (``roi``) or foreground clicks into the item's ``box``; :class:`BoxToMetad` copies the framed
box into the image's meta data, where :class:`monai_fetal.engines.SamInferer` finds it.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from monai_fetal.errors import ConfigError

__all__ = ["PROMPT_META_KEY", "BoxToMetad", "ViewerPromptd"]

PROMPT_META_KEY = "prompt_box"
"""Meta-data key of an image's box prompt in the SAM frame (``x0, y0, x1, y1``)."""


def _numbers(key: str, value: object, expected: str) -> list[float]:
    try:
        numbers = [float(v) for v in value]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ConfigError(key, value, expected) from None
    if not all(math.isfinite(v) for v in numbers):
        raise ConfigError(key, value, expected)
    return numbers


class ViewerPromptd(MapTransform):
    """Put the viewer's box or foreground clicks into ``box_key`` (pixels of the image as read).

    Coordinates are in the image's pixels in MONAI's axis order, as MONAI Label's viewers send them
    (its SAM2 task reads them the same way): ``roi`` is ``[x0, y0, x1, y1]`` (a 3-D ``roi`` may add
    ``z0, z1``, which a 2-D image ignores) with x along the image's width; ``foreground`` is a list of
    clicks ``[x, y(, z)]``. Two or more clicks (e.g. the ends of the head's long and short axes) give
    the box that encloses them, widened on each side by ``click_margin`` of its size, as training boxes
    are. A box wins over clicks. Images reduced on read (``reduction`` in the image's meta data) get the
    prompt reduced alike. Without a box or clicks the item is left as it is (the automatic prompt).

    Raises:
        ConfigError: a box that is not 4 (or 6) finite numbers, inverted or outside the image; a single
            click; background clicks (a box-prompted model has no use for them).
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        box_key: str = "box",
        roi_key: str = "roi",
        foreground_key: str = "foreground",
        background_key: str = "background",
        click_margin: float = 0.05,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not 0 <= click_margin <= 1:
            raise ValueError(f"click_margin must be in [0, 1], got {click_margin}")
        self.box_key, self.roi_key = box_key, roi_key
        self.foreground_key, self.background_key = foreground_key, background_key
        self.click_margin = click_margin

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        if d.get(self.background_key):
            raise ConfigError(self.background_key, d[self.background_key], "no background clicks: give a box or foreground clicks")
        for key in self.key_iterator(d):
            prompt = self._prompt(d)
            if prompt is None:
                continue
            box, clicked = prompt
            image = d[key]
            reduction = float(image.meta.get("reduction", 1)) if isinstance(image, MetaTensor) else 1.0
            width, height = image.shape[-2:]
            box = [v / reduction for v in box]
            if clicked:  # the margin may widen a box of clicks near the border past it
                box = [max(box[0], 0.0), max(box[1], 0.0), min(box[2], width), min(box[3], height)]
            x0, y0, x1, y1 = box
            if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
                expected = f"a box inside the {width} x {height} image (pixels of the image as read)"
                raise ConfigError(self.roi_key, [v * reduction for v in box], expected)
            d[self.box_key] = torch.tensor(box, dtype=torch.float32)
        return d

    def _prompt(self, d: Mapping[Hashable, object]) -> tuple[list[float], bool] | None:
        """The box in the image's pixels (not yet reduced) and whether it comes from clicks; ``None``: neither given."""
        if d.get(self.roi_key):
            expected = "x0, y0, x1, y1 (and z0, z1 for 3-D) in pixels, x0 < x1, y0 < y1"
            roi = _numbers(self.roi_key, d[self.roi_key], expected)
            if len(roi) not in (4, 6) or roi[2] <= roi[0] or roi[3] <= roi[1]:
                raise ConfigError(self.roi_key, d[self.roi_key], expected)
            return roi[:4], False
        clicks = d.get(self.foreground_key)
        if not clicks:
            return None
        expected = "two or more clicks [x, y] on the head (e.g. the ends of its long and short axes), or a box (roi)"
        points = [_numbers(self.foreground_key, click, expected)[:2] for click in clicks]  # type: ignore[union-attr]
        if len(points) < 2 or any(len(p) < 2 for p in points):
            raise ConfigError(self.foreground_key, clicks, expected)
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        if max(xs) == min(xs) or max(ys) == min(ys):
            raise ConfigError(self.foreground_key, clicks, expected + " that enclose an area")
        margin_x, margin_y = self.click_margin * (max(xs) - min(xs)), self.click_margin * (max(ys) - min(ys))
        return [min(xs) - margin_x, min(ys) - margin_y, max(xs) + margin_x, max(ys) + margin_y], True


class BoxToMetad(MapTransform):
    """Copy the box under ``keys`` (in the SAM frame) into the meta data of ``ref_key``'s image
    (:data:`PROMPT_META_KEY`), so that an inferer called with the image alone has it."""

    def __init__(self, keys: KeysCollection = "box", ref_key: str = "image", allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.ref_key].meta[PROMPT_META_KEY] = torch.as_tensor(d[key], dtype=torch.float32).flatten()
        return d
