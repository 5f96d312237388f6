"""Batch preparation for prompted SAM in MONAI's SupervisedTrainer and SupervisedEvaluator."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from monai.engines import PrepareBatch

__all__ = ["SamPrepareBatch"]


class SamPrepareBatch(PrepareBatch):
    """Return ``(image, label, (), {"boxes": box})`` from a batch dict.

    ``image`` is ``[B, 3, S, S]`` in the SAM frame, ``box`` ``[B, 4]`` in that frame; ``boxes`` is left
    out when the batch has no ``box_key`` (automatic prompt).
    """

    def __init__(self, image_key: str = "image", label_key: str = "label", box_key: str = "box") -> None:
        self.image_key, self.label_key, self.box_key = image_key, label_key, box_key

    def __call__(
        self, batchdata: Mapping[str, torch.Tensor], device: str | torch.device | None = None, non_blocking: bool = False, **kwargs
    ):
        def move(value: torch.Tensor) -> torch.Tensor:
            return value.to(device=device, non_blocking=non_blocking, **kwargs)

        image = move(batchdata[self.image_key])
        label = move(batchdata[self.label_key]) if self.label_key in batchdata else None
        extra = {"boxes": move(torch.as_tensor(batchdata[self.box_key]))} if self.box_key in batchdata else {}
        return image, label, (), extra
