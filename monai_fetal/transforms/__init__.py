"""MONAI dictionary transforms that MONAI lacks: greyscale, outline filling, box prompts, the SAM frame,
fast binary hole filling, loading as prepare stores images, prompts from an image viewer."""

from monai_fetal.transforms.box import BoxFromMaskd, ScaleBoxd, box_from_mask, field_of_view_box, widen_box
from monai_fetal.transforms.greyscale import Greyscaled
from monai_fetal.transforms.holes import FillBinaryHolesd, fill_binary_holes
from monai_fetal.transforms.load import LoadGreyscaled
from monai_fetal.transforms.outline import OutlineToFilledMaskd
from monai_fetal.transforms.sam_frame import SamFramed
from monai_fetal.transforms.viewer import PROMPT_META_KEY, BoxToMetad, ViewerPromptd

__all__ = [
    "PROMPT_META_KEY",
    "BoxFromMaskd",
    "BoxToMetad",
    "FillBinaryHolesd",
    "Greyscaled",
    "LoadGreyscaled",
    "OutlineToFilledMaskd",
    "SamFramed",
    "ScaleBoxd",
    "ViewerPromptd",
    "box_from_mask",
    "field_of_view_box",
    "fill_binary_holes",
    "widen_box",
]
