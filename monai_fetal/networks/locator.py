"""A small head-locator network on SAM image embeddings: a coarse head mask that gives the automatic box."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["HeadLocator"]


class HeadLocator(nn.Module):
    """Coarse head logits ``[B, 1, h, w]`` from SAM embeddings ``[B, C, h, w]`` (~220k weights).

    Three 3x3 convolutions, the last two dilated (2 and 4), see 15 x 15 embedding cells (a quarter of the
    frame), enough to tell the head from other dark ellipses such as the amniotic sac.

    It is trained together with the mask decoder on the same few images (its loss is added to the
    decoder's), costs nothing extra when embeddings are cached, and gives the automatic prompt its
    starting box. ``trained`` (a saved buffer) tells whether its weights were ever trained.
    """

    def __init__(self, channels: int = 256, hidden: int = 64) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, kernel_size=3, padding=2, dilation=2),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, kernel_size=3, padding=4, dilation=4),
            nn.GELU(),
            nn.Conv2d(hidden, 1, kernel_size=1),
        )
        self.register_buffer("trained", torch.zeros((), dtype=torch.bool))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.trained.fill_(True)
        return self.layers(embeddings)
