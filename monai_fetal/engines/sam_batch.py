"""Batch preparation for prompted SAM in MONAI's SupervisedTrainer and SupervisedEvaluator."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from monai.engines import PrepareBatchExtraInput, default_prepare_batch

__all__ = ["SamPrepareBatch"]


class SamPrepareBatch(PrepareBatchExtraInput):
    """MONAI's ``PrepareBatchExtraInput`` giving the batch's box to the network as ``boxes=``, and no box where the
    batch has none (the automatic prompt), which MONAI's refuses.

    Returns ``(image, label, (), {"boxes": box})``: ``image`` ``[B, 3, S, S]`` in the SAM frame, ``box`` ``[B, 4]`` in
    that frame; ``label`` is ``None`` where the batch has none.
    """

    def __init__(self, box_key: str = "box") -> None:
        super().__init__({"boxes": box_key})

    def __call__(
        self, batchdata: Mapping[str, torch.Tensor], device: str | torch.device | None = None, non_blocking: bool = False, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple, dict]:
        if self.extra_keys["boxes"] in batchdata:
            return super().__call__(batchdata, device, non_blocking, **kwargs)
        image, label = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        return image, label, (), {}
