"""The fine-tuning loss: box-prompted mask logits and head-locator logits against the same head mask."""

from __future__ import annotations

import torch
from torch.nn.modules.loss import _Loss

__all__ = ["MaskAndLocatorLoss"]


class MaskAndLocatorLoss(_Loss):
    """``loss(pred[:, :1], y) + locator_weight * loss(pred[:, 1:], y)`` for ``pred`` ``[B, 2, S, S]``.

    Args:
        loss: the per-output loss, e.g. MONAI's ``DiceCELoss(sigmoid=True)``.
        locator_weight: weight of the locator's term.
    """

    def __init__(self, loss: _Loss, locator_weight: float = 1.0) -> None:
        super().__init__()
        self.loss = loss
        self.locator_weight = locator_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape[1] != 2:
            raise ValueError(f"pred must be [B, 2, ...] (mask, locator), got shape {tuple(pred.shape)}")
        return self.loss(pred[:, :1], target) + self.locator_weight * self.loss(pred[:, 1:], target)
