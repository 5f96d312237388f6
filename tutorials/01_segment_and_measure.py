# %% [markdown]
# # Tutorial 1: segment fetal heads on your own images and measure head circumference
#
# You have 2-D ultrasound images of the fetal head (PNG, NIfTI or NRRD). This tutorial
#
# 1. runs the pretrained **`fetal_head_sam`** bundle (LiteMedSAM, no download) on them, once with the
#    **automatic prompt** (no input from you) and once with a **box** you draw around the head;
# 2. measures the head circumference (HC), biparietal and occipitofrontal diameters from each mask
#    with `monai_fetal.shape.biometry`, in mm when you know the pixel size;
# 3. draws the masks over the images.
#
# A *bundle* is MONAI's packaging of a model: a folder of JSON configs that say how to load the
# network, pre-process images, run and post-process. You never edit JSON here: `segment_images` runs
# the bundle's `inference.json`, and its arguments override the config's settings (its *ids*).
#
# Run it top to bottom: `python tutorials/01_segment_and_measure.py [--quick] [--out DIR]`. It uses the
# HC18 images in `../shared/data/hc18_subset` when they are there, else a procedural phantom.

# %%
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HC18_SUBSET, hc18_available, tutorial_options

from monai_fetal.jobs import segment_images
from monai_fetal.data.io import read_image
from monai_fetal.shape.biometry import biometry_from_mask
from monai_fetal.visualize import save_pair_grid

args = tutorial_options("Tutorial 1: segment fetal heads and measure head circumference", "01_segment")
count = 2 if args.quick else 6

# %% [markdown]
# ## Your images
# Point `images` at your own files. Here: the first HC18 images, whose published pixel sizes and
# head circumferences let us check the measures; without HC18, phantom images with known values.

# %%
if hc18_available():
    images = sorted((HC18_SUBSET / "images").glob("*_HC.png"))[:count]
    with (HC18_SUBSET / "training_set_pixel_size_and_HC.csv").open() as handle:
        table = {row["filename"]: row for row in csv.DictReader(handle)}
    spacing = {p.name: float(table[p.name]["pixel size(mm)"]) for p in images}
    reference_hc = {p.name: float(table[p.name]["head circumference (mm)"]) for p in images}
else:
    from monai_fetal.data.cohort import Cohort
    from monai_fetal.data.phantom import make_phantom_cohort

    cohort = args.out / "phantom"
    make_phantom_cohort(cohort, count, seed=1)
    items = Cohort(cohort).items()
    images = [Path(item["image"]) for item in items]
    spacing = {Path(item["image"]).name: item["spacing"] for item in items}
    reference_hc = {Path(item["image"]).name: item["hc_mm"] for item in items}
print("images:", [p.name for p in images])

# %% [markdown]
# ## Segment with the automatic prompt
# `inference.json` writes `<name>_mask.png` (0/255) at each image's own size, and `measurements.csv`
# (HC, BPD, OFD in pixels and mm, a quality score and a `flagged` column for the images a person should
# check). Without `checkpoint` it uses the pretrained LiteMedSAM weights; give the `model.pt` of a
# fine-tuned run to use yours. `effort="fast"` (`segment --effort fast`) skips the slow steps for doubtful
# heads: about 0.3 s per image instead of 0.85 s on 2 cores with a 5-shot model, with every failure still
# flagged but more of them (benchmarks/README.md).

# %%
auto_dir = args.out / "masks_auto"
segment_images(images, auto_dir)
with (auto_dir / "measurements.csv").open() as handle:
    flagged = [Path(row["image"]).name for row in csv.DictReader(handle) if row["flagged"] == "1"]
print("flagged for review (automatic prompt):", flagged or "none")

# %% [markdown]
# ## Segment with a box
# A box `[x0, y0, x1, y1]` in pixels around the head is the most reliable prompt. Here we take it
# from the reference mask (HC18: the annotated outline) to stand in for the one you would draw;
# the command line does the same with `monai-fetal segment IMAGES --boxes boxes.csv --out DIR`, where
# `boxes.csv` has the columns `image,x0,y0,x1,y1`. A box must lie inside its image.

# %%
def head_box(image_path: Path) -> list[float]:
    """Box around the reference head: HC18 annotation or phantom mask, widened by 5 %."""
    if hc18_available():
        from monai_fetal.shape.outline import fill_head_annotation

        mask = fill_head_annotation(read_image(HC18_SUBSET / "annotations" / image_path.name.replace(".png", "_Annotation.png")))
    else:
        mask = read_image(image_path.parent.parent / "masks" / image_path.name) > 0
    rows, cols = np.nonzero(mask)
    margin = 0.05 * max(np.ptp(rows), np.ptp(cols))
    height, width = mask.shape
    return [
        float(max(cols.min() - margin, 0)),
        float(max(rows.min() - margin, 0)),
        float(min(cols.max() + margin, width)),
        float(min(rows.max() + margin, height)),
    ]


box_dir = args.out / "masks_box"
segment_images(images, box_dir, boxes={p.name: head_box(p) for p in images})

# %% [markdown]
# ## Measure
# `biometry_from_mask` fits an ellipse to the mask (the HC18 convention) and returns HC, BPD and OFD
# in pixels, and in mm when you pass the pixel size (mm per pixel, from your scanner's DICOM header
# or the HC18 CSV).

# %%
rows = []
for image in images:
    row = {"image": image.name, "reference_hc_mm": reference_hc[image.name]}
    for prompt, folder in (("auto", auto_dir), ("box", box_dir)):
        mask = read_image(folder / f"{image.stem}_mask.png") > 0
        measures = biometry_from_mask(mask, spacing[image.name]) if mask.any() else None
        row[f"hc_mm_{prompt}"] = round(measures.hc_mm, 2) if measures else None
        row[f"bpd_mm_{prompt}"] = round(measures.bpd_mm, 2) if measures else None
    rows.append(row)
with (args.out / "biometry.csv").open("w", newline="") as handle:
    writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
for row in rows:
    print(row)

# %% [markdown]
# With a box the HC is usually within a few mm of the reference; the automatic prompt of the
# *pretrained* model can miss the head on some images (it has no trained head locator; a model you
# fine-tune, tutorial 3, has one). Look at the masks before trusting a number:

# %%
pictures = [read_image(p) for p in images]
masks = [read_image(box_dir / f"{p.stem}_mask.png") > 0 for p in images]
grid = save_pair_grid(pictures, masks, args.out / "masks_box.png", titles=[r["image"] for r in rows])
print(f"measures: {args.out / 'biometry.csv'}; figure: {grid}")
