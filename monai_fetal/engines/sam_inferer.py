"""MONAI inferer for prompted SAM: box prompts from the batch, or the automatic prompt."""

from __future__ import annotations

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

from monai_fetal.config_checks import check_choice
from monai_fetal.engines.auto_prompt import AutoBoxPrompt
from monai_fetal.transforms.viewer import PROMPT_META_KEY

__all__ = ["SamInferer", "SamTrainingInferer", "PROMPTS"]

PROMPTS = ("gt_box", "auto", "box_or_auto", "gt_box+auto")


class SamInferer(Inferer):
    """Call a :class:`monai_fetal.networks.SamRuntime` (or a bare :class:`~monai_fetal.networks.PromptedSam`) with the right prompt.

    Args:
        prompt: ``gt_box``: the batch's box (the ground-truth box in evaluation; an error if absent);
            ``auto``: always the automatic prompt; ``box_or_auto``: the batch's box when given, else
            the automatic prompt (``segment`` and MONAI Label); ``gt_box+auto``:
            both, as two channels ``[B, 2, S, S]`` (validation that selects a model good at both).
            Without ``boxes``, a box in the images' meta data (``PROMPT_META_KEY``, put there by
            :class:`monai_fetal.transforms.BoxToMetad`) is the batch's box: MONAI Label calls the
            inferer with the image alone.
        auto_prompt: the automatic prompt (default :class:`AutoBoxPrompt`).

    After each call, ``last_iou`` holds SAM's IoU estimate of each returned mask (``[B, K]``), which
    ``segment`` uses in its quality score, and ``last_searched`` which images the automatic prompt
    searched (``[B]`` bool, ``None`` when it did not run), which ``segment`` flags below a higher quality, and
    ``last_boxes`` the given box of each returned mask in the frame (``[B, 4]``; ``None`` where the automatic prompt
    chose the boxes, and for ``gt_box+auto``), which :class:`~monai_fetal.engines.crop_refine.CropRefined` decodes again
    in a crop of the image, and ``last_located`` the automatic prompt's locator boxes (``[B, 4]`` in the frame, NaN
    where there is none; ``None`` where it did not run), which :class:`~monai_fetal.engines.zoomed_prompt.ZoomedPromptd`
    zooms into.
    """

    def __init__(self, prompt: str = "gt_box", auto_prompt: AutoBoxPrompt | None = None) -> None:
        super().__init__()
        self.prompt = check_choice("prompt", prompt, PROMPTS)
        self.auto_prompt = auto_prompt or AutoBoxPrompt()
        self.last_iou: torch.Tensor | None = None
        self.last_searched: torch.Tensor | None = None
        self.last_boxes: torch.Tensor | None = None
        self.last_located: torch.Tensor | None = None

    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args, boxes: torch.Tensor | None = None, **kwargs):
        """Mask logits ``[B, 1, S, S]`` for images ``[B, 3, S, S]`` (``[B, 2, S, S]`` for ``gt_box+auto``)."""
        if boxes is None and isinstance(inputs, MetaTensor) and PROMPT_META_KEY in inputs.meta:
            boxes = torch.as_tensor(inputs.meta[PROMPT_META_KEY], dtype=torch.float32, device=inputs.device).reshape(-1, 4)
        if self.prompt.startswith("gt_box") and boxes is None:
            raise ValueError(f"prompt '{self.prompt}' needs a 'box' in each batch: give masks to compute it from, or use 'auto'")
        embeddings = network.encode(inputs)  # once: the automatic prompt and the final decode share it
        self.last_searched = self.last_boxes = self.last_located = None
        if self.prompt == "gt_box+auto":
            auto = self.auto_prompt.segment(network, inputs, embeddings)
            boxed, boxed_iou = network.decode(embeddings, boxes, return_iou=True)
            self.last_iou = torch.cat([boxed_iou, auto.iou], dim=1)
            return torch.cat([boxed, auto.logits], dim=1)
        if self.prompt == "auto" or boxes is None:
            auto = self.auto_prompt.segment(network, inputs, embeddings)  # the masks of its boxes, decoded as it chose them
            self.last_iou, self.last_searched, self.last_located = auto.iou, auto.searched, auto.located
            return auto.logits
        logits, self.last_iou = network.decode(embeddings, boxes, return_iou=True)
        self.last_boxes = boxes
        return logits


class SamTrainingInferer(Inferer):
    """Fine-tuning output ``[B, 2, S, S]``: the box-prompted mask logits and the head locator's logits.

    Both come from one encoding (cached when the encoder is frozen) in the network's ``forward``, so a
    ``DistributedDataParallel`` wrapper works; see ``MaskAndLocatorLoss``.
    """

    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args, boxes: torch.Tensor | None = None, **kwargs):
        return network(inputs, boxes=boxes, with_locator=True)
