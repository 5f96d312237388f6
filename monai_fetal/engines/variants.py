"""A dataset of fixed augmentation variants, so that a frozen encoder's embeddings can be cached."""

from __future__ import annotations

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
    """

    def __init__(
        self,
        data: Sequence[dict],
        transform: Callable,
        variants: int = 1,
        seed: int = 0,
        post_transform: Callable | None = None,
    ) -> None:
        if variants < 1:
            raise ValueError(f"variants must be >= 1, got {variants}")
        super().__init__(data=data, transform=transform)
        self.variants = variants
        self.seed = seed
        self.post_transform = post_transform

    def __len__(self) -> int:
        return len(self.data) * self.variants

    def _variant_seed(self, item: int, variant: int) -> int:
        name = self.data[item].get("id", item) if isinstance(self.data[item], dict) else item
        return zlib.crc32(f"{self.seed}:{name}:{variant}".encode())

    def _transform(self, index: int):
        item, variant = divmod(index, self.variants)
        if isinstance(self.transform, Randomizable):
            self.transform.set_random_state(seed=self._variant_seed(item, variant))
        data = apply_transform(self.transform, dict(self.data[item]))
        return apply_transform(self.post_transform, data) if self.post_transform is not None else data
