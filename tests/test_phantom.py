"""The procedural fetal-head phantom: determinism, masks, ultrasound-like statistics, cohort folders."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from scipy import ndimage

from monai_fetal.data.cohort import find_cases
from monai_fetal.data.io import read_image, read_mask
from monai_fetal.data.phantom import SPACING_RANGE_MM, make_phantom_cohort, render_phantom
from monai_fetal.errors import ConfigError
from monai_fetal.shape.ellipse import fit_ellipse_to_mask

SMALL = (135, 200)


@pytest.fixture(scope="module")
def phantoms():
    """Eight full-size phantoms (540 x 800), as the cohort writer renders them."""
    return [render_phantom(np.random.default_rng([0, k])) for k in range(8)]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom") / "cohort"
    make_phantom_cohort(out, 4, seed=3, size=SMALL, progress=False)
    return out


def test_render_shapes_types_and_spacing(phantoms):
    for image, mask, spacing in phantoms:
        assert image.shape == mask.shape == (540, 800)
        assert image.dtype == np.uint8 and mask.dtype == np.uint8
        assert SPACING_RANGE_MM[0] <= spacing <= SPACING_RANGE_MM[1]
        hc_mm = fit_ellipse_to_mask(mask).circumference() * spacing
        assert 50 <= hc_mm <= 350


def test_render_is_deterministic_per_generator_seed():
    first = render_phantom(np.random.default_rng([7, 1]), SMALL)
    again = render_phantom(np.random.default_rng([7, 1]), SMALL)
    other = render_phantom(np.random.default_rng([7, 2]), SMALL)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(first[1], other[1])


def test_masks_are_filled_binary_ellipses_inside_the_image(phantoms):
    for _, mask, _ in phantoms:
        assert set(np.unique(mask)) == {0, 1}
        assert 0.05 <= mask.mean() <= 0.6
        labels, count = ndimage.label(mask)
        assert count == 1
        assert np.array_equal(ndimage.binary_fill_holes(mask), mask.astype(bool))
        assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def test_images_look_like_b_mode_head_planes(phantoms):
    for image, mask, _ in phantoms:
        head = mask > 0
        assert image[:12, :12].max() <= 2 and image[:12, -12:].max() <= 2, "the top corners are outside the fan"
        assert (image == 0).mean() > 0.02, "the sector leaves black corners"
        skull = head & ~ndimage.binary_erosion(head, iterations=6)
        brain = ndimage.binary_erosion(head, iterations=20)
        assert image[skull].mean() > 1.8 * image[brain].mean(), "the skull ring is brighter than the brain"
        assert 10 <= image.mean() <= 90
        assert np.percentile(image, 99) >= 120, "bright specular echoes are present"
        assert image[brain].std() > 5, "speckle, not a flat fill"


def test_size_is_respected_and_bad_sizes_refused():
    image, mask, _ = render_phantom(np.random.default_rng(0), (64, 96))
    assert image.shape == mask.shape == (64, 96)
    for size in [(63, 200), (200, 10), (100,), (100.5, 200), ("a", 100), 540]:
        with pytest.raises(ConfigError, match="size"):
            render_phantom(np.random.default_rng(0), size)


def test_cohort_folder_is_readable_by_monai_and_find_cases(cohort):
    datalist = load_decathlon_datalist(str(cohort / "datalist.json"), data_list_key="training", base_dir=str(cohort))
    assert [item["id"] for item in datalist] == [f"phantom_{k:04d}" for k in range(4)]
    for item in datalist:
        assert item["cohort"] == "phantom" and item["patient"] == item["id"]
        image = read_image(item["image"])
        assert image.shape == SMALL
        assert read_mask(item["label"], expected_shape=image.shape).any()
    cases = find_cases(cohort)
    assert [case.id for case in cases] == [item["id"] for item in datalist]
    low, high = SPACING_RANGE_MM
    assert all(case.spacing is not None and low <= case.spacing <= high for case in cases)
    with (cohort / "spacing.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["id"] for row in rows] == [case.id for case in cases]
    assert json.loads((cohort / "datalist.json").read_text())["name"] == "phantom"


def test_cohort_is_byte_identical_for_a_seed_and_a_prefix_of_a_larger_one(cohort, tmp_path):
    again = make_phantom_cohort(tmp_path / "again", 4, seed=3, size=SMALL, progress=False).parent
    larger = make_phantom_cohort(tmp_path / "larger", 6, seed=3, size=SMALL, progress=False).parent
    other = make_phantom_cohort(tmp_path / "other", 2, seed=4, size=SMALL, progress=False).parent
    for k in range(4):
        for sub in ("images", "masks"):
            name = f"{sub}/phantom_{k:04d}.png"
            assert (cohort / name).read_bytes() == (again / name).read_bytes() == (larger / name).read_bytes()
    assert (cohort / "datalist.json").read_bytes() == (again / "datalist.json").read_bytes()
    assert (cohort / "images/phantom_0000.png").read_bytes() != (other / "images/phantom_0000.png").read_bytes()
    assert len(list((larger / "images").iterdir())) == 6


def test_existing_cohort_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "cohort"
    make_phantom_cohort(out, 1, seed=0, size=(64, 64), progress=False)
    marker = out / "images" / "phantom_0000.png"
    marker.write_bytes(b"kept")
    make_phantom_cohort(out, 2, seed=0, size=(64, 64), progress=False)
    assert marker.read_bytes() == b"kept" and not (out / "images" / "phantom_0001.png").exists()
    make_phantom_cohort(out, 2, seed=0, size=(64, 64), overwrite=True, progress=False)
    assert marker.read_bytes() != b"kept" and (out / "images" / "phantom_0001.png").is_file()
    assert not list(tmp_path.glob(".*")), "no staging folder is left behind"


@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_bad_n_is_refused(tmp_path, n):
    with pytest.raises(ConfigError, match="'n'"):
        make_phantom_cohort(tmp_path / "cohort", n, progress=False)
    assert not (tmp_path / "cohort").exists()


def test_negative_seed_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="'seed'"):
        make_phantom_cohort(tmp_path / "cohort", 1, seed=-1, progress=False)


def test_bad_size_is_refused_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="size"):
        make_phantom_cohort(tmp_path / "cohort", 2, size=(32, 800), progress=False)
    assert not (tmp_path / "cohort").exists()
