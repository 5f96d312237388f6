"""``segment`` without the model: measurement against the published HC, spacing sources, names, boxes, reading."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import itk
import numpy as np
import pytest
from skimage.measure import block_reduce

from monai_fetal.cli import main
from monai_fetal.data.io import read_image, read_image_reduced, to_uint8, write_png
from monai_fetal.engines.segment import plan_segmentation, read_boxes_csv
from monai_fetal.errors import InputDataError
from monai_fetal.shape.ellipse import Ellipse, ellipse_to_mask
from monai_fetal.shape.measure import COLUMNS, measure_head
from monai_fetal.transforms import LoadGreyscaled


def _write_nifti(path: Path, array: np.ndarray, spacing: tuple[float, ...]) -> Path:
    image = itk.image_from_array(np.ascontiguousarray(array, dtype=np.float32))
    image.SetSpacing(spacing)
    itk.imwrite(image, str(path))
    return path


def test_measurement_of_the_reference_masks_reproduces_the_published_hc(hc18_cohort: Path) -> None:
    with (hc18_cohort / "spacing.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 60
    errors = []
    for row in rows:
        mask = read_image(hc18_cohort / "masks" / f"{row['id']}.png") > 0
        measured = measure_head(mask, float(row["mm_per_pixel"]))
        errors.append(abs(measured.biometry.hc_mm - float(row["hc_mm"])))
        table_row = measured.row(row["id"])
        assert list(table_row) == list(COLUMNS) and float(table_row["hc_mm"]) == pytest.approx(measured.biometry.hc_mm, abs=1e-3)
        assert not measured.flagged, (row["id"], measured.quality)
    assert max(errors) < 0.1, max(errors)


def test_measurement_is_in_original_pixels_when_the_image_was_reduced() -> None:
    ellipse = Ellipse(cx=1210.0, cy=905.0, a=700.0, b=520.0, theta=0.4)
    full = ellipse_to_mask(ellipse, (1800, 2400)) > 0
    reduced = block_reduce(full, (4, 4), np.mean) > 0.5
    exact = measure_head(full, 0.1).biometry
    approx = measure_head(reduced, 0.1, reduction=4).biometry
    assert approx.hc_mm == pytest.approx(exact.hc_mm, rel=2e-3)
    assert (approx.ellipse.cx, approx.ellipse.cy) == pytest.approx((exact.ellipse.cx, exact.ellipse.cy), abs=1.0)


def test_no_head_gives_a_flagged_row_with_empty_measures() -> None:
    row = measure_head(np.zeros((60, 80), bool), 0.2).row("blank.png")
    assert row["flagged"] == 1 and float(row["quality"]) == 0.0
    assert all(row[c] == "" for c in COLUMNS if c not in ("image", "quality", "flagged"))


def test_each_spacing_source_is_used_and_none_leaves_it_unknown(hc18_subset: Path, tmp_path: Path) -> None:
    header = _write_nifti(tmp_path / "scan.nii.gz", np.random.default_rng(0).random((1, 60, 80)), (0.25, 0.25, 2.0))
    plain = tmp_path / "plain.png"
    write_png(plain, np.full((60, 80), 90, np.uint8))
    table = hc18_subset / "images" / "000_HC.png"
    items = {Path(i["image"]).name: i for i in plan_segmentation([table, header, plain])}
    assert items["000_HC.png"]["spacing"] == pytest.approx(0.0691358041432) and items["000_HC.png"]["spacing_source"] == "table"
    assert items["scan.nii.gz"]["spacing"] == pytest.approx(0.25) and items["scan.nii.gz"]["spacing_source"] == "header"
    assert math.isnan(items["plain.png"]["spacing"]) and items["plain.png"]["spacing_source"] == "unknown"
    given = plan_segmentation([table, plain], spacing=0.3)
    assert [(i["spacing"], i["spacing_source"]) for i in given] == [(0.3, "given"), (0.3, "given")]
    (tmp_path / "spacing.csv").write_text("id,mm_per_pixel\nplain,0.12\n")
    assert plan_segmentation([plain])[0]["spacing"] == pytest.approx(0.12)


def test_colliding_stems_get_unique_names(tmp_path: Path) -> None:
    picture = np.full((40, 50), 100, np.uint8)
    for folder in ("a", "b"):
        write_png(tmp_path / folder / "scan.png", picture)
    _write_nifti(tmp_path / "x.nii.gz", picture, (1.0, 1.0))
    _write_nifti(tmp_path / "x.nrrd", picture, (1.0, 1.0))
    write_png(tmp_path / "y.png", picture)
    images = [tmp_path / "a" / "scan.png", tmp_path / "b" / "scan.png", tmp_path / "x.nii.gz", tmp_path / "x.nrrd", tmp_path / "y.png"]
    assert [i["name"] for i in plan_segmentation(images)] == ["a/scan", "b/scan", "x.nii.gz", "x.nrrd", "y"]


def test_folders_expand_to_their_images_and_a_folder_is_never_read_as_an_image(hc18_subset: Path, tmp_path: Path) -> None:
    items = plan_segmentation([hc18_subset])
    assert len(items) == 60 and all("_Annotation" not in i["image"] for i in items)
    assert all(i["spacing_source"] == "table" for i in items)
    with pytest.raises(InputDataError, match="holds no images"):
        plan_segmentation([tmp_path])
    with pytest.raises(InputDataError, match="is a folder, not an image file"):
        read_image(tmp_path)


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ("img.png,10,10,900,50", ("img.png", "box 10,10,900,50", "not inside the 80 x 60 image")),
        ("img.png,40,10,20,50", ("line 2", "inverted")),
        ("img.png,nan,10,20,50", ("line 2", "not a finite number")),
        ("img.png,10,10,10,50", ("line 2", "zero area")),
        ("img.png,ten,10,20,50", ("line 2", "not a number")),
        ("other.png,10,10,20,50", ("other.png", "not among")),
    ],
)
def test_bad_boxes_exit_2_naming_the_box_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], row: str, words: tuple[str, ...]
) -> None:
    image = tmp_path / "img.png"
    write_png(image, np.full((60, 80), 100, np.uint8))
    boxes = tmp_path / "boxes.csv"
    boxes.write_text(f"image,x0,y0,x1,y1\n{row}\n")
    assert main(["segment", str(image), "--boxes", str(boxes), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "monai-fetal segment: error:" in err and "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    assert not list((tmp_path / "out").glob("*"))


def test_boxes_are_mapped_to_the_pixels_read(tmp_path: Path) -> None:
    image = tmp_path / "big.png"
    write_png(image, np.zeros((600, 2400), np.uint8))
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("image,x0,y0,x1,y1\nbig.png,100,50,900,450\n")
    (item,) = plan_segmentation([image], read_boxes_csv(boxes), max_side=1024)
    assert item["reduction"] == 2 and item["box"] == [50.0, 25.0, 450.0, 225.0]
    assert (item["rows"], item["cols"]) == (600, 2400)


def test_huge_images_are_reduced_on_read_by_block_means(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (1203, 2050, 3), dtype=np.uint8)
    path = tmp_path / "huge.png"
    itk.imwrite(itk.image_view_from_array(rgb, is_vector=True), str(path))
    reduced, factor, shape = read_image_reduced(path, max_side=512)
    assert (factor, shape, reduced.shape) == (4, (1203, 2050), (301, 513))
    grey = rgb.astype(np.float32) @ np.array([0.2125, 0.7154, 0.0721], np.float32)
    assert reduced[:300, :512] == pytest.approx(block_reduce(grey[:1200, :2048], (4, 4), np.mean), abs=1e-3)
    assert read_image_reduced(path, max_side=4096)[1] == 1


def test_single_slice_volumes_are_squeezed_into_the_loading_layout(tmp_path: Path) -> None:
    volume = np.arange(60 * 80, dtype=np.float32).reshape(1, 60, 80) % 251
    path = _write_nifti(tmp_path / "slice.nii.gz", volume, (0.2, 0.2, 1.0))
    loaded = LoadGreyscaled("image")({"image": str(path)})["image"]
    assert tuple(loaded.shape) == (1, 80, 60)  # [C, W, H], as MONAI loads 2-D files
    assert np.array_equal(loaded[0].numpy().T, volume[0])
    assert loaded.meta["original_shape"] == [60, 80] and loaded.meta["reduction"] == 1


def test_a_raw_image_and_its_prepared_copy_are_read_alike(tmp_path: Path) -> None:
    """``segment`` reads the user's file, ``evaluate`` its ``prepare`` d copy: one reader gives one SAM input."""
    rgb = np.random.default_rng(2).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    raw = tmp_path / "raw.png"
    itk.imwrite(itk.image_view_from_array(rgb, is_vector=True), str(raw))
    prepared = tmp_path / "prepared.png"
    write_png(prepared, to_uint8(read_image(raw)))
    load = LoadGreyscaled("image", max_side=1024)
    assert np.array_equal(load({"image": str(raw)})["image"].numpy(), load({"image": str(prepared)})["image"].numpy())


def _png_of_mode(path: Path, mode: str) -> Path:
    """A PNG of random pixels in Pillow ``mode`` (``I;16``: 16-bit grey; ``P``: palette; ``LA``, ``RGBA``: with alpha)."""
    from PIL import Image

    rng = np.random.default_rng(3)
    if mode == "I;16":
        Image.fromarray(rng.integers(0, 65536, (37, 53), dtype=np.uint16)).save(path)
    else:
        Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8), "RGB").convert(mode).save(path)
    return path


@pytest.mark.parametrize("mode", ["L", "RGB", "I;16", "P", "LA", "RGBA", "1"])
def test_pngs_read_as_itk_reads_them_whichever_reader_decodes_them(mode: str, tmp_path: Path) -> None:
    path = _png_of_mode(tmp_path / "image.png", mode)
    assert np.array_equal(read_image(path), np.squeeze(itk.array_from_image(itk.imread(str(path), itk.F))))
    native = np.squeeze(itk.array_view_from_image(itk.imread(str(path)))).astype(np.float32)
    grey = native if native.ndim == 2 else native[..., :3] @ np.array([0.2125, 0.7154, 0.0721], np.float32)
    if mode not in ("LA", "RGBA", "P"):  # ITK's alpha and palette reads stay ITK's own
        reduced, factor, shape = read_image_reduced(path, max_side=20)
        assert (factor, shape) == (2, (37, 53))
        assert reduced[:18, :26] == pytest.approx(block_reduce(grey[:36, :52], (2, 2), np.mean), abs=1e-3)


def test_reading_and_writing_pngs_loads_neither_itk_nor_torch(tmp_path: Path) -> None:
    """``prepare`` and ``segment`` of PNGs skip ITK's image-IO modules and torch (about 800 MB and 10 s)."""
    import subprocess
    import sys

    code = (
        "import sys; import numpy as np; from monai_fetal.data.io import read_image, read_image_reduced, read_mask, write_png; "
        f"p = {str(tmp_path / 'a.png')!r}; write_png(p, (np.arange(600 * 800) % 256).astype(np.uint8).reshape(600, 800)); "
        "read_image(p); read_image_reduced(p, 100); write_png(p, np.eye(40, dtype=np.uint8) * 255); read_mask(p); "
        "print(sorted(m for m in sys.modules if m.startswith('itk.ITK') or m == 'torch'))"  # itk.ITK*Python: its wrapped modules
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]", run.stdout
