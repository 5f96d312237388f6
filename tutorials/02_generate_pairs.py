# %% [markdown]
# # Tutorial 2: train the ultrasound generator and synthesise image-mask pairs
#
# The **`fetal_us_diffusion`** bundle is a diffusion model that draws an ultrasound image *for a
# given head mask*. Trained on your labelled images, it gives you as many new (image, mask) pairs
# as you like: masks come from an ellipse shape prior fitted on your masks, images from the model.
# This tutorial
#
# 1. prepares a cohort folder (`images/`, filled `masks/`, `datalist.json`) from HC18;
# 2. trains the generator (the small `cpu` preset, 64 x 96 pixels) — rerunning resumes it;
# 3. synthesises pairs into a new cohort folder;
# 4. scores them against the real images with the quality report and reads it.
#
# Run: `python tutorials/02_generate_pairs.py [--quick] [--out DIR]`. The full run uses
# `../shared/data/hc18_subset` (60 images) and takes about 15 minutes on a laptop CPU; `--quick`
# uses a small procedural phantom and a few iterations (the pairs are then only blurry shapes).

# %%
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HC18_SUBSET, hc18_available, tutorial_options

from monai_fetal.jobs import synth_report, synthesize_pairs, train_generator
from monai_fetal.data.phantom import make_phantom_cohort
from monai_fetal.data.prepare import prepare_cohort

args = tutorial_options("Tutorial 2: train the generator and synthesise pairs", "02_generate")
sizes = (
    {"epochs": 1, "iterations": 4, "pairs": 4, "steps": 5, "real_scored": 6}
    if args.quick
    else {"epochs": 10, "iterations": 100, "pairs": 40, "steps": 50, "real_scored": 60}
)

# %% [markdown]
# ## 1. A cohort folder
# `prepare_cohort` reads HC18 as published (outline annotations and the pixel-size CSV) and fills
# each outline by an ellipse fit. Any folder of `images/` and `masks/` works the same way.

# %%
real = args.out / "real"
if hc18_available() and not args.quick:
    prepare_cohort(HC18_SUBSET, real)
else:
    make_phantom_cohort(real, 12, seed=0, size=(128, 192))
print("real cohort:", real, "-", json.loads((real / "datalist.json").read_text())["numTraining"], "pairs")

# %% [markdown]
# ## 2. Train the generator
# `train.json`'s ids: `dataset_dir` (the cohort), `output_dir`, `mode` (`concat`: the mask is an
# extra input channel), `preset` (`cpu` or `gpu`), `max_epochs`, `epoch_length` (iterations per
# epoch). The folder receives `model.pt` (EMA weights), `generator.json` (the network's settings),
# `shape_prior.json` and sample grids in `samples/` — open them to watch the images sharpen.
# Same as `monai-fetal train-generator --mode concat --data REAL --out GENERATOR --epochs N`.

# %%
generator = args.out / "generator"
train_generator(
    real, generator, mode="concat", preset="cpu", epochs=sizes["epochs"], epoch_length=sizes["iterations"], sample_steps=sizes["steps"]
)

# %% [markdown]
# ## 3. Synthesise pairs
# `inference.json` draws `num_samples` masks from the shape prior and one image for each, with a
# DDIM sampler of `steps` steps, at the real images' size. The output is a cohort folder again, so
# every other command (fine-tuning, evaluation) takes it as it is. Same as
# `monai-fetal synthesize --generator GENERATOR --n N --out SYNTHETIC`.

# %%
synthetic = args.out / "synthetic"
synthesize_pairs(generator, synthetic, sizes["pairs"], steps=sizes["steps"])

# %% [markdown]
# ## 4. The quality report
# `synth_report` embeds real and synthetic images with the SAM image encoder and compares them:
#
# - **FID / KID** (feature distance): how far the synthetic images' feature distribution is from
#   the real one; lower is better, 0 is identical. Read it against the *real-vs-real* distance the
#   report also gives (two halves of the real cohort): that is the floor you can hope for.
# - **pair consistency**: SAM, prompted with the box of each synthetic mask, segments the synthetic
#   image; the Dice between its mask and the synthetic mask says whether the image really shows a
#   head *where the mask says*. Compare with the same number on real pairs and on shuffled pairs
#   (image with another image's mask: what "no agreement" looks like).
#
# Same as `monai-fetal synth-report --real REAL --synthetic SYNTHETIC --out REPORT`.

# %%
report_dir = args.out / "report"
report = synth_report(real, synthetic, report_dir, max_real=sizes["real_scored"])
consistency = report["synthetic"]["pair_consistency"]
floor = report["feature_distance_real_halves"]
print(f"FID {report['feature_distance']['fid']:.4f}  KID {report['feature_distance']['kid']:.5f}")
print("real-vs-real floor:", f"FID {floor['fid']:.4f}" if floor else "too few real images to split")
print(f"pair consistency Dice: synthetic {consistency['mean']:.3f}, real {report['real']['pair_consistency']['mean']:.3f}")
print("report and grid of real and synthetic pairs:", sorted(p.name for p in report_dir.iterdir()))

# %% [markdown]
# If pair consistency is far below the real pairs', the generator has not learnt to follow the
# mask yet: train longer (rerun step 2 with a larger `max_epochs`: it resumes) or use the `gpu`
# preset on a GPU. Tutorial 3 measures what the pairs are worth for segmentation.
