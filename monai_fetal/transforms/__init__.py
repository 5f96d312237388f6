"""MONAI dictionary transforms that MONAI lacks: greyscale, outline filling, box prompts, the SAM frame,
fast binary hole filling."""

from monai_fetal.transforms.box import BoxFromMaskd, ScaleBoxd, box_from_mask, field_of_view_box
from monai_fetal.transforms.greyscale import Greyscaled
from monai_fetal.transforms.holes import FillBinaryHolesd, fill_binary_holes
from monai_fetal.transforms.outline import OutlineToFilledMaskd
from monai_fetal.transforms.sam_frame import SamFramed

__all__ = [
    "BoxFromMaskd",
    "FillBinaryHolesd",
    "Greyscaled",
    "OutlineToFilledMaskd",
    "SamFramed",
    "ScaleBoxd",
    "box_from_mask",
    "field_of_view_box",
    "fill_binary_holes",
]
