"""The quality ceiling a latent generator's autoencoder sets: real images passed through it, scored as synthetic pairs.

No diffusion model can make pairs better than its autoencoder can reconstruct real images, so this scores,
against the real cohort and with ``synth-report``'s measures (LiteMedSAM-feature FID against the
real-vs-real floor, pair consistency with each pair's own box and with a shuffled box):

- ``resized``: each real image resized to the generator's size and back, with its own mask (what the
  generator's resolution alone loses);
- ``autoencoder``: each real image encoded and decoded by the generator's autoencoder at that size, then
  resized back, with its own mask (what the autoencoder loses on top).

Compare the generator's own pairs (``synth-report`` on ``synthesize`` output) with the ``autoencoder`` row:
when they are close, better conditioning cannot help, a better autoencoder can.

``--probes`` adds two rows that tell what the autoencoder loses:

- ``blurred``: each real image resized and blurred (Gaussian, sigma 0.7 px at the generator's size): what a
  small loss of sharpness alone costs;
- ``autoencoder_real_finest_band``: the autoencoder's output with its finest band (sigma 1 px) replaced by the
  real image's: what a decoder that restored the finest detail perfectly would reach.

    .venv/bin/python benchmarks/autoencoder_ceiling.py --out benchmarks/results/autoencoder_ceiling_cpu.json
    .venv/bin/python benchmarks/autoencoder_ceiling.py --probes --out benchmarks/results/autoencoder_ceiling_probes_cpu.json

``--speckle SCALE [SCALE ...]`` adds a row per scale: the autoencoder's output with the speckle texture
(:mod:`monai_fetal.networks.speckle`) fitted on ``--speckle-images`` images of the protocol's unlabelled pool
(never its test images, no annotation read) and added at that share of the residual's deviation, as
``synthesize`` adds it to generated pairs:

    .venv/bin/python benchmarks/autoencoder_ceiling.py --speckle 0.4 0.6 0.8 1.0 --out benchmarks/results/autoencoder_ceiling_speckle_cpu.json

``--autoencoder FILE --autoencoder-args JSON`` scores an autoencoder alone (a ``train_autoencoder.json`` run's
``autoencoder.pt``, before any prior is trained on it), e.g. one with more latent channels:

    .venv/bin/python benchmarks/autoencoder_ceiling.py --autoencoder runs/ae8/autoencoder.pt \
        --autoencoder-args '{"latent_channels": 8}' --out benchmarks/results/autoencoder_ceiling_8ch_cpu.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from monai_fetal.networks.speckle import SpeckleTexture

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hc18_subset"
DIFFUSION_BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "fetal_us_diffusion"
SHIPPED_PRIOR = DIFFUSION_BUNDLE / "models" / "prior"
POOL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hc18_train"
PROTOCOL = POOL.parent / "benchmark_protocol.json"


def passed_through(
    image: np.ndarray,
    size: tuple[int, int],
    autoencoder: torch.nn.Module | None,
    blur_sigma: float = 0.0,
    real_band_sigma: float = 0.0,
    texture: SpeckleTexture | None = None,
    seed: int = 0,
) -> np.ndarray:
    """``uint8`` ``image`` resized to ``size`` (area), optionally encoded and decoded, and resized back (bilinear).

    ``blur_sigma`` blurs the result at ``size``; ``real_band_sigma`` replaces the decoded image's band finer than
    that sigma by the real image's; ``texture`` is added to the result (its noise drawn from ``seed``).
    """
    from monai.networks.layers import GaussianFilter

    small = F.interpolate(torch.from_numpy(image.astype(np.float32))[None, None], size=size, mode="area") / 127.5 - 1.0
    with torch.no_grad():
        if autoencoder is not None:
            decoded = autoencoder.decode_stage_2_outputs(autoencoder.encode_stage_2_inputs(small))
            if real_band_sigma:
                blur = GaussianFilter(2, real_band_sigma)
                decoded = blur(decoded) + small - blur(small)
            small = decoded
        if blur_sigma:
            small = GaussianFilter(2, blur_sigma)(small)
    back = F.interpolate(((small + 1.0) / 2.0).clamp(0.0, 1.0), size=image.shape, mode="bilinear", align_corners=False)[0, 0].numpy()
    if texture is not None:
        back = texture.add_to(back, seed)
    return np.round(back * 255.0).astype(np.uint8)


def write_passed_cohort(real: Path, out: Path, size: tuple[int, int], autoencoder: torch.nn.Module | None, **options: object) -> Path:
    """A cohort folder of the real cohort's images passed through (``options`` of :func:`passed_through`), each with its own filled mask."""
    from monai_fetal.data.cohort import Cohort, CohortItem, write_pair
    from monai_fetal.data.io import read_image
    from monai_fetal.shape.outline import fill_head_annotation

    items = Cohort(real).items()
    for index, item in enumerate(items):
        mask = fill_head_annotation(np.asarray(read_image(item["label"]))) > 0
        write_pair(out, f"pass_{index:04d}", passed_through(np.asarray(read_image(item["image"])), size, autoencoder, seed=index, **options), mask)
    return Cohort.write(out, [CohortItem(f"pass_{i:04d}", f"pass_{i:04d}", out.name, synthetic=True) for i in range(len(items))], out.name).root


def main() -> None:
    from monai_fetal.atomic import write_json_atomic
    from monai_fetal.data.io import read_image
    from monai_fetal.data.prepare import ensure_cohort
    from monai_fetal.data.unlabelled import unlabelled_items
    from monai_fetal.jobs import synth_report
    from monai_fetal.networks.latent import build_autoencoder, latent_settings, load_latent_generator, load_state
    from monai_fetal.networks.latent_release import checked_prior
    from monai_fetal.networks.speckle import fit_speckle

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="real images with masks (HC18 or cohort folder)")
    parser.add_argument("--generator", type=Path, default=SHIPPED_PRIOR, help="latent generator folder (default: the shipped prior)")
    parser.add_argument("--autoencoder", type=Path, help="an autoencoder.pt of a train_autoencoder.json run, scored instead of the generator's")
    parser.add_argument("--autoencoder-args", type=json.loads, default={}, help="that run's autoencoder_args (JSON), e.g. '{\"latent_channels\": 8}'")
    parser.add_argument("--max-real", type=int, default=60)
    parser.add_argument("--probes", action="store_true", help="also the blurred and the autoencoder-with-real-finest-band rows")
    parser.add_argument("--speckle", type=float, nargs="+", default=[], help="rows with the speckle texture added at these scales")
    parser.add_argument("--speckle-images", type=int, default=60, help="unlabelled-pool images the texture is fitted on")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.autoencoder is None:
        generator = load_latent_generator(checked_prior(DIFFUSION_BUNDLE, args.generator))  # the shipped prior's sha256 is checked
        settings, autoencoder = generator.settings, generator.autoencoder
    else:
        settings = latent_settings(None, args.autoencoder_args)
        autoencoder = load_state(build_autoencoder(settings), args.autoencoder).eval()
    size = tuple(settings["image_size"])
    rows = {}
    with tempfile.TemporaryDirectory() as work:
        real = ensure_cohort(args.data, Path(work) / "real")
        passes = [("resized", None, {}), ("autoencoder", autoencoder, {})]
        if args.probes:
            passes += [("blurred", None, {"blur_sigma": 0.7}), ("autoencoder_real_finest_band", autoencoder, {"real_band_sigma": 1.0})]
        if args.speckle:
            pool = (np.asarray(read_image(item["image"]), dtype=np.float32) / 255.0 for item in unlabelled_items(POOL, PROTOCOL)[: args.speckle_images])
            fitted = fit_speckle(autoencoder, size, pool, 1.0)
            passes += [(f"autoencoder_speckle_{scale}", autoencoder, {"texture": SpeckleTexture(fitted.kernel, fitted.levels, scale)}) for scale in args.speckle]
        for name, autoencoder, options in passes:
            passed = write_passed_cohort(real, Path(work) / name, size, autoencoder, **options)
            report = synth_report(real, passed, Path(work) / f"{name}_report", max_real=args.max_real)
            distance, floor = report["feature_distance"], report["feature_distance_real_halves"]
            rows[name] = {
                "pair_consistency": report["synthetic"]["pair_consistency"]["mean"],
                "pair_consistency_shuffled": report["synthetic"]["pair_consistency_shuffled"]["mean"],
                "fid": distance["fid"],
                "fid_over_floor": distance["fid"] / floor["fid"],
            }
            print(name, json.dumps(rows[name]), flush=True)
    real_consistency = report["real"]["pair_consistency"]["mean"]
    scored = {"autoencoder": str(args.autoencoder), "autoencoder_args": args.autoencoder_args} if args.autoencoder else {"generator": str(args.generator)}
    fit = {"speckle_fitted_on": f"{args.speckle_images} images of the unlabelled pool of {PROTOCOL.name}"} if args.speckle else {}
    result = {**scored, "image_size": list(size), "real_pair_consistency": real_consistency, **fit, **rows}
    write_json_atomic(args.out, result)


if __name__ == "__main__":
    main()
