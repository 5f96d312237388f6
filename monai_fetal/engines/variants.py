"""A dataset of fixed augmentation variants, so that a frozen encoder's embeddings can be cached."""

from __future__ import annotations

import copy
import sys
import zlib
from collections.abc import Callable, Sequence

from monai.data import Dataset
from monai.transforms import Randomizable, apply_transform

__all__ = ["AugmentationVariantDataset"]


class AugmentationVariantDataset(Dataset):
    """Each item of ``data`` seen in ``variants`` fixed augmentation variants.

    Index ``k`` is item ``k // variants`` in variant ``k % variants``. ``transform``'s random state is
    seeded from (``seed``, item id, variant) before each call, so a variant gives the same image in
    every epoch and its encoder embedding can be cached; ``post_transform`` (for example the box jitter)
    keeps drawing fresh randomness every epoch.

    Args:
        data: datalist items (dicts); ``"id"`` is used for seeding when present, else the index.
        transform: loading, augmentation and framing.
        variants: augmentation variants per item (>= 1).
        seed: base seed.
        post_transform: applied after ``transform`` without reseeding.
        cache_items: indices whose ``transform`` output is kept (0: none; default: all).
    """

    def __init__(
        self,
        data: Sequence[dict],
        transform: Callable,
        variants: int = 1,
        seed: int = 0,
        post_transform: Callable | None = None,
        cache_items: int = sys.maxsize,
    ) -> None:
        if variants < 1:
            raise ValueError(f"variants must be >= 1, got {variants}")
        if cache_items < 0:
            raise ValueError(f"cache_items must be >= 0 (0: no cache), got {cache_items}")
        super().__init__(data=data, transform=transform)
        self.variants = variants
        self.seed = seed
        self.post_transform = post_transform
        self.cache_items = cache_items
        self._cache: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.data) * self.variants

    def _variant_seed(self, item: int, variant: int) -> int:
        name = self.data[item].get("id", item) if isinstance(self.data[item], dict) else item
        return zlib.crc32(f"{self.seed}:{name}:{variant}".encode())

    def _variant(self, index: int):
        """``transform``'s output for ``index`` (kept in memory for the first ``cache_items`` indices)."""
        if index in self._cache:
            return copy.deepcopy(self._cache[index])
        item, variant = divmod(index, self.variants)
        if isinstance(self.transform, Randomizable):
            self.transform.set_random_state(seed=self._variant_seed(item, variant))
        data = apply_transform(self.transform, dict(self.data[item]))
        if index < self.cache_items:
            self._cache[index] = copy.deepcopy(data)
        return data

    def _transform(self, index: int):
        data = self._variant(index)
        return apply_transform(self.post_transform, data) if self.post_transform is not None else data
