"""Figure helpers: the image/mask contour grid and reading pairs of a cohort folder."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from monai_fetal.data.phantom import make_phantom_cohort
from monai_fetal.errors import ConfigError, InputDataError
from monai_fetal.shape.ellipse import Ellipse, ellipse_to_mask
from monai_fetal.visualize import load_cohort_pairs, save_pair_grid


def _pairs(count: int, shape=(60, 90)):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape).astype(np.uint8) for _ in range(count)]
    masks = [ellipse_to_mask(Ellipse(45, 30, 20 + k, 12, 0.2 * k), shape) for k in range(count)]
    return images, masks


def test_grid_png_is_written_and_grows_with_more_images(tmp_path):
    images, masks = _pairs(8)
    small = save_pair_grid(images[:2], masks[:2], tmp_path / "two.png", columns=4)
    large = save_pair_grid(images, masks, tmp_path / "sub" / "eight.png", titles=[f"case {k}" for k in range(8)])
    assert small == tmp_path / "two.png" and large.is_file()
    with Image.open(small) as two, Image.open(large) as eight:
        assert two.format == eight.format == "PNG"
        assert eight.width > two.width and eight.height > two.height
        pixels = np.asarray(eight.convert("RGB"))
    yellowish = (pixels[..., 0] > 200) & (pixels[..., 1] > 150) & (pixels[..., 2] < 80)
    assert yellowish.any(), "mask contours are drawn"
    assert not list(tmp_path.glob(".*")), "no temporary file is left behind"


def test_grid_accepts_empty_masks_and_float_images(tmp_path):
    images = [np.linspace(0, 1, 50 * 40).reshape(50, 40)]
    path = save_pair_grid(images, [np.zeros((50, 40), bool)], tmp_path / "one.png")
    with Image.open(path) as figure:
        assert figure.width > 0


def test_grid_refuses_bad_arguments(tmp_path):
    images, masks = _pairs(2)
    with pytest.raises(ConfigError, match="images"):
        save_pair_grid([], [], tmp_path / "x.png")
    with pytest.raises(ConfigError, match="masks"):
        save_pair_grid(images, masks[:1], tmp_path / "x.png")
    with pytest.raises(ConfigError, match="titles"):
        save_pair_grid(images, masks, tmp_path / "x.png", titles=["one"])
    with pytest.raises(ConfigError, match="columns"):
        save_pair_grid(images, masks, tmp_path / "x.png", columns=0)
    with pytest.raises(ConfigError, match=r"images\[1\]"):
        save_pair_grid(images, [masks[0], masks[1][:10]], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_load_cohort_pairs_reads_up_to_n_pairs(tmp_path):
    cohort = make_phantom_cohort(tmp_path / "cohort", 3, size=(64, 80), progress=False).parent
    images, masks, ids = load_cohort_pairs(cohort, 2, seed=1)
    assert len(images) == len(masks) == len(ids) == 2
    assert ids == sorted(ids) and set(ids) <= {"phantom_0000", "phantom_0001", "phantom_0002"}
    assert images[0].shape == masks[0].shape == (64, 80) and masks[0].dtype == bool and masks[0].any()
    assert load_cohort_pairs(cohort, 2, seed=1)[2] == ids
    assert len(load_cohort_pairs(cohort, 10)[0]) == 3
    with pytest.raises(ConfigError, match="'n'"):
        load_cohort_pairs(cohort, 0)
    with pytest.raises(InputDataError, match="datalist.json"):
        load_cohort_pairs(tmp_path, 1)
