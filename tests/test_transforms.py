"""MONAI dictionary transforms: greyscale, outline filling, boxes, the invertible SAM frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, FillHoles, Invertd, LoadImaged
from scipy import ndimage

from monai_fetal.shape.ellipse import Ellipse, ellipse_to_mask
from monai_fetal.engines import SamInferer
from monai_fetal.errors import ConfigError
from monai_fetal.transforms import (
    PROMPT_META_KEY,
    BoxFromMaskd,
    BoxToMetad,
    FillBinaryHolesd,
    Greyscaled,
    OutlineToFilledMaskd,
    SamFramed,
    ScaleBoxd,
    ViewerPromptd,
    box_from_mask,
    fill_binary_holes,
)


def _head(shape=(120, 200)) -> np.ndarray:
    return ellipse_to_mask(Ellipse(90, 60, 50, 30, 0.4), shape)


def test_greyscale_rgb_uses_luminance_and_keeps_single_channel():
    rgb = torch.zeros(3, 4, 5)
    rgb[1] = 100.0
    grey = Greyscaled("image")({"image": rgb})["image"]
    assert grey.shape == (1, 4, 5)
    assert torch.allclose(grey, torch.full((1, 4, 5), 71.54))
    one = torch.rand(1, 4, 5)
    assert torch.equal(Greyscaled("image")({"image": one})["image"], one)


def test_outline_with_gap_is_filled_like_the_ellipse():
    filled = _head()
    outline = (filled.astype(bool) & ~ndimage.binary_erosion(filled, iterations=2)).astype(np.uint8)
    outline[:, 85:95] = 0  # a gap, as several HC18 outlines have
    out = OutlineToFilledMaskd("label")({"label": torch.as_tensor(outline[None])})["label"]
    dice = 2 * (out[0].numpy() * filled).sum() / (out.sum().item() + filled.sum())
    assert set(np.unique(out.numpy())) == {0.0, 1.0}
    assert dice > 0.95


def test_box_from_mask_is_tight_and_empty_mask_is_refused():
    mask = np.zeros((10, 20), np.uint8)
    mask[2:5, 7:12] = 1
    assert box_from_mask(mask).tolist() == [7.0, 2.0, 11.0, 4.0]
    with pytest.raises(ValueError, match="empty"):
        box_from_mask(np.zeros((4, 4)))


def test_box_jitter_is_seeded_bounded_and_clipped():
    label = torch.as_tensor(_head()[None])
    exact = BoxFromMaskd("label")({"label": label})["box"]
    jitter = BoxFromMaskd("label", jitter=0.2)
    boxes = []
    for _ in range(2):
        jitter.set_random_state(seed=7)
        boxes.append(jitter({"label": label})["box"])
    assert torch.equal(boxes[0], boxes[1])
    assert not torch.equal(boxes[0], exact)
    width, height = exact[2] - exact[0], exact[3] - exact[1]
    assert torch.all((boxes[0] - exact).abs() <= 0.2 * torch.stack([width, height, width, height]) + 1e-4)
    assert boxes[0].min() >= 0 and boxes[0][2] <= 199 and boxes[0][3] <= 119
    with pytest.raises(ValueError, match="jitter"):
        BoxFromMaskd("label", jitter=1.5)


def test_box_margin_widens_each_side():
    mask = torch.zeros(1, 100, 100)
    mask[0, 40:60, 20:80] = 1
    box = BoxFromMaskd("label", margin=0.1)({"label": mask})["box"]
    assert torch.allclose(box, torch.tensor([20 - 5.9, 40 - 1.9, 79 + 5.9, 59 + 1.9]))


def test_empty_mask_after_augmentation_gets_whole_image_box():
    box = BoxFromMaskd("label")({"label": torch.zeros(1, 30, 40)})["box"]
    assert box.tolist() == [0.0, 0.0, 39.0, 29.0]


@pytest.mark.parametrize("frame_size", [256, 1024])
def test_sam_frame_shapes_range_and_inverse_to_original_size(frame_size):
    image = torch.rand(3, 200, 120) * 4000  # RGB, 16-bit range, MONAI's [C, W, H]
    label = torch.as_tensor(_head().T[None], dtype=torch.float32)
    frame = SamFramed("image", frame_size, label_keys="label")
    out = frame({"image": image, "label": label})
    assert out["image"].shape == (3, frame_size, frame_size)
    assert out["label"].shape == (1, frame_size, frame_size)
    assert float(out["image"].min()) == 0.0 and float(out["image"].max()) <= 1.0
    content = round(120 * frame_size / 200)
    assert out["image"][:, content + 1 :, :].abs().max() == 0  # padding is bottom/right
    out["pred"] = out["label"].clone()
    back = Invertd("pred", transform=frame, orig_keys="image", nearest_interp=False)(out)["pred"]
    assert back.shape == (1, 200, 120)
    restored = (back[0] > 0.5).numpy()
    dice = 2 * (restored & (label[0].numpy() > 0)).sum() / (restored.sum() + label.sum().item())
    assert dice > 0.98


def test_scale_box_maps_original_coordinates_into_the_frame():
    data = {"image": torch.zeros(1, 540, 800), "box": [100, 50, 500, 400]}
    box = ScaleBoxd("box", frame_size=256)(data)["box"]
    assert torch.allclose(box, torch.tensor([32.0, 16.0, 160.0, 128.0]))
    with pytest.raises(ValueError, match="4 numbers"):
        ScaleBoxd("box")({"image": torch.zeros(1, 8, 8), "box": [1, 2, 3]})


def test_real_hc18_pipeline_frames_image_and_box(hc18_subset):
    pipeline = Compose(
        [
            LoadImaged(["image", "label"], reader="ITKReader", ensure_channel_first=True),
            OutlineToFilledMaskd("label"),
            SamFramed("image", 256, label_keys="label"),
            BoxFromMaskd("label"),
        ]
    )
    data = pipeline(
        {"image": str(hc18_subset / "images" / "000_HC.png"), "label": str(hc18_subset / "annotations" / "000_HC_Annotation.png")}
    )
    assert data["image"].shape == (3, 256, 256)
    x0, y0, x1, y1 = data["box"].tolist()
    assert 0 <= x0 < x1 <= 255 and 0 <= y0 < y1 <= 172  # 800 x 540 -> 256 wide, 173 high
    assert data["image"][:, 174:, :].abs().max() == 0
    frame_area = data["label"].sum().item() / (173 * 256)
    assert 0.05 < frame_area < 0.6


def test_binary_hole_filling_matches_monai_fill_holes_and_keeps_metadata():
    rng = np.random.default_rng(0)
    masks = [rng.random((1, 60, 90)) > threshold for threshold in (0.3, 0.5, 0.7)]
    yy, xx = np.mgrid[:60, :90]
    ring = ((yy - 30) / 20) ** 2 + ((xx - 45) / 30) ** 2
    masks.append(((ring <= 1) & (ring >= 0.5))[None])  # one big hole, and the background outside
    for mask in masks:
        tensor = MetaTensor(torch.from_numpy(mask.astype(np.float32)), meta={"filename_or_obj": "x.png"})
        ours = FillBinaryHolesd("pred")({"pred": tensor})["pred"]
        assert torch.equal(ours.as_tensor(), FillHoles(applied_labels=[1])(tensor).as_tensor())
        assert ours.dtype == torch.float32 and ours.meta["filename_or_obj"] == "x.png"
    assert fill_binary_holes(masks[-1][0]).sum() == (ring <= 1).sum()


def _loaded(width: int = 200, height: int = 120, reduction: int = 1) -> MetaTensor:
    """An image as ``LoadGreyscaled`` gives it: ``[1, W, H]`` with the reduction in its meta data."""
    return MetaTensor(torch.zeros(1, width, height), meta={"reduction": reduction, "filename_or_obj": "x.png"})


def test_viewer_box_and_clicks_become_the_box_in_the_pixels_read():
    prompt = ViewerPromptd("image")
    assert "box" not in prompt({"image": _loaded(), "roi": [], "foreground": [], "background": []})  # automatic prompt
    box = prompt({"image": _loaded(), "roi": [10, 20, 110, 90, 0, 1]})["box"]  # a 3-D roi's z range is ignored
    assert box.tolist() == [10, 20, 110, 90]
    reduced = prompt({"image": _loaded(100, 60, reduction=2), "roi": [10, 20, 110, 90]})["box"]
    assert reduced.tolist() == [5, 10, 55, 45]
    clicks = prompt({"image": _loaded(), "foreground": [[40, 30], [140, 30], [90, 10, 0], [90, 100]]})["box"]
    assert clicks.tolist() == pytest.approx([35, 5.5, 145, 104.5])  # enclosing box widened by 5 % of its size
    corner = prompt({"image": _loaded(), "foreground": [[0, 0], [100, 50]]})["box"]
    assert corner.tolist() == pytest.approx([0, 0, 105, 52.5])  # cut to the image
    assert prompt({"image": _loaded(), "roi": [1, 2, 3, 4], "foreground": [[5, 5], [9, 9]]})["box"].tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "request_params, named",
    [
        ({"roi": [10, 20, 5, 90]}, "roi"),  # inverted
        ({"roi": [10, 20, 30]}, "roi"),
        ({"roi": ["a", 1, 2, 3]}, "roi"),
        ({"roi": [10, 20, 250, 90]}, "roi"),  # past the 200-pixel width
        ({"foreground": [[5, 5]]}, "foreground"),
        ({"foreground": [[5, 5], [5, 9]]}, "foreground"),  # no area
        ({"foreground": [[5, 5], [9, 9]], "background": [[1, 1]]}, "background"),
    ],
)
def test_bad_viewer_prompts_are_refused_naming_the_parameter(request_params, named):
    with pytest.raises(ConfigError, match=f"'{named}'"):
        ViewerPromptd("image")({"image": _loaded(), **request_params})


class _BoxEcho(torch.nn.Module):
    """Stands in for PromptedSam: ``decode`` returns the box it was given as its IoU estimate."""

    def encode(self, image):
        return torch.zeros(image.shape[0], 1)

    def decode(self, embeddings, boxes, return_iou=False):
        return torch.zeros(len(boxes), 1, 4, 4), boxes


def test_the_inferer_takes_a_box_from_the_image_meta_data_when_the_batch_has_none():
    data = BoxToMetad("box", "image")({"image": MetaTensor(torch.zeros(3, 4, 4)), "box": [1.0, 2.0, 3.0, 4.0]})
    assert data["image"].meta[PROMPT_META_KEY].tolist() == [1, 2, 3, 4]
    inferer = SamInferer("box_or_auto")
    inferer(data["image"][None], _BoxEcho())
    assert inferer.last_iou.tolist() == [[1, 2, 3, 4]]
    inferer(data["image"][None], _BoxEcho(), boxes=torch.tensor([[5.0, 6, 7, 8]]))  # the batch's box wins
    assert inferer.last_iou.tolist() == [[5, 6, 7, 8]]
