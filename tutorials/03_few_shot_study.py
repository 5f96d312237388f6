# %% [markdown]
# # Tutorial 3: the few-shot study, and how to read its figure
#
# The question: **with only k labelled images, do synthetic pairs help SAM segment the fetal head?**
# `monai-fetal experiment` answers it as a grid. For every number of real training images k
# ("shots"), every number of synthetic pairs n and every seed, it
#
# 1. takes a k-shot split of the cohort *by patient* (validation and test patients are never in
#    training; the test images are the same for every k, so points differ only by training data);
# 2. conditions one generator on the k real pairs and synthesises pairs with it (once per k and seed,
#    shared by every n): by default the shipped in-domain prior, as `monai-fetal train-generator` does;
# 3. fine-tunes LiteMedSAM on the k real + n synthetic pairs and evaluates it on every test cohort,
#    with the ground-truth box (`gt_box`) and with no prompt (`auto`);
#
# and writes `results.csv` (one row per run, test cohort and prompt) and `dice_vs_shots.png`.
# It is resumable: rerun the same command after an interruption, or with more seeds or shots,
# and only the missing runs are done.
#
# Run: `python tutorials/03_few_shot_study.py [--quick] [--out DIR]`. The full run uses
# `../shared/data/hc18_subset` (shots 1, 2, 5; 0 or 20 synthetic pairs; one seed: one to two hours on a
# laptop CPU); `--quick` uses a small phantom cohort, tiny sizes and a tiny pixel-space generator
# (`mode="concat"`; a couple of minutes; its numbers only show the mechanics). The command line equivalent is
# `monai-fetal experiment --data COHORT --shots 1,2,5 --synthetic 0,20 --seeds 0 --out STUDY`.

# %%
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HC18_SUBSET, hc18_available, tutorial_options

from monai_fetal.data.phantom import make_phantom_cohort
from monai_fetal.study.experiment import ExperimentPlan, run_experiment
from monai_fetal.study.results import read_results
from monai_fetal.study.runs import GeneratorOptions, SamOptions

args = tutorial_options("Tutorial 3: the few-shot study", "03_study")

# %% [markdown]
# ## The plan
# `ExperimentPlan` holds the grid and the training sizes. `tests` lists the cohorts to test on; the
# training cohort itself is tested on `test_images` held-out images. Add another cohort (say, images
# from your hospital, prepared with `monai-fetal prepare`) to `tests` to measure how a model trained
# on one cohort transfers to another.

# %%
if args.quick or not hc18_available():
    data = args.out / "phantom"
    make_phantom_cohort(data, 12, seed=0, size=(128, 192))
    plan = ExperimentPlan(
        data=data, tests=(data,), shots=(1, 2), synthetic=(0, 4), seeds=(0,), out=args.out / "study",
        prompts=("gt_box",), test_images=3,
        sam=SamOptions(epochs=1, variants=1, val=2),
        generator=GeneratorOptions(epochs=1, iterations=3, sample_steps=2, synthesis_steps=3, mode="concat"),
    )
else:
    plan = ExperimentPlan(
        data=HC18_SUBSET, tests=(HC18_SUBSET,), shots=(1, 2, 5), synthetic=(0, 20), seeds=(0,), out=args.out / "study",
        test_images=20,
        sam=SamOptions(epochs=5, variants=4, val=5),
        generator=GeneratorOptions(),
    )
results = run_experiment(plan)

# %% [markdown]
# ## The table
# Each row: `shots`, `synthetic`, `seed`, test `cohort`, `prompt`, then the means over the test
# images: `dice_mean` (overlap, 1 is perfect), `hd95_mean` (95th-percentile boundary distance in
# pixels, lower is better), `hc_rel_error_mean` (head circumference error as a fraction of the true
# HC), and `seconds` (fine-tune plus that evaluation).

# %%
rows = read_results(results)
print(f"{'shots':>5} {'synth':>5} {'seed':>4} {'prompt':>6} {'Dice':>6} {'HD95':>7} {'HC err':>7}")
for row in rows:
    print(
        f"{row['shots']:>5} {row['synthetic']:>5} {row['seed']:>4} {row['prompt']:>6} {row['dice_mean']:>6.3f} "
        f"{row['hd95_mean'] if row['hd95_mean'] is not None else float('nan'):>7.1f} "
        f"{row['hc_rel_error_mean'] if row['hc_rel_error_mean'] is not None else float('nan'):>7.3f}"
    )

# %% [markdown]
# ## The figure
# `dice_vs_shots.png` has one panel per test cohort and prompt, real training images on the x axis
# (log scale) and mean test Dice on the y axis, **one line per synthetic count**; the band spans the
# seeds (min to max). Read it like this:
#
# - a line above the `+0 synthetic` line at small k means the synthetic pairs help when real data is
#   scarce; lines that meet at larger k mean the help fades once there is enough real data;
# - a band wider than the gap between two lines means the difference is within seed-to-seed noise:
#   run more seeds (`seeds=(0, 1, 2)`) before concluding;
# - the `gt_box` panel measures the mask given a good box; the `auto` panel adds finding the head,
#   which is where few-shot models fail first.

# %%
figure = results.parent / "dice_vs_shots.png"
print(f"results: {results}\nfigure:  {figure}")
