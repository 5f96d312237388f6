"""Choose the speckle texture's scale on unlabelled images only: the one whose textured reconstructions look most real.

The texture (:mod:`monai_fetal.networks.speckle`) is fitted on the first ``--fit-images`` images of the protocol's
unlabelled pool, as ``write_speckle`` fits the shipped one. The pool's other images are split in two: half
stay real (the reference), the other half are encoded and decoded by the shipped prior's autoencoder and
textured at each ``--scales`` value. Each set is scored by the Frechet distance of LiteMedSAM image-encoder
features (mean-pooled, as ``synth-report`` computes them) to the reference, over the floor of the unmodified
second half. No annotation is read and no protocol test image or ``hc18_subset`` image is used, so the
scale is chosen apart from the images ``synth-report`` and ``autoencoder_ceiling.py --speckle`` score it on.

    .venv/bin/python benchmarks/speckle_scale.py --out benchmarks/results/speckle_scale_pool_cpu.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "fetal_us_diffusion"


def pool_features(network: torch.nn.Module, preprocessing, images: list[np.ndarray], work: Path) -> torch.Tensor:
    """Mean-pooled encoder features of ``images`` (``(rows, cols)`` on [0, 1]), framed as ``evaluate`` frames them."""
    from monai_fetal.data.io import write_png
    from monai_fetal.shape.ellipse import Ellipse, ellipse_to_mask

    work.mkdir(parents=True, exist_ok=True)
    features = []
    with torch.no_grad():
        for index, image in enumerate(images):
            rows, cols = image.shape
            mask = ellipse_to_mask(Ellipse(cols / 2, rows / 2, cols / 4, rows / 4, 0.0), (rows, cols))  # framing needs a label; unused
            write_png(work / f"{index}.png", np.round(image * 255.0).astype(np.uint8))
            write_png(work / f"{index}_mask.png", mask.astype(np.uint8))
            data = preprocessing({"image": str(work / f"{index}.png"), "label": str(work / f"{index}_mask.png")})
            features.append(network.encode(data["image"][None]).mean(dim=(2, 3))[0])
    return torch.stack(features)


def main() -> None:
    from monai_fetal.atomic import write_json_atomic
    from monai_fetal.bundles import EVALUATE_CONFIGS, read_bundle_config
    from monai_fetal.data.io import read_image
    from monai_fetal.data.unlabelled import unlabelled_items
    from monai_fetal.metrics.feature_distance import frechet_distance
    from monai_fetal.networks import build_prompted_sam
    from monai_fetal.networks.latent import load_latent_generator
    from monai_fetal.networks.latent_release import checked_prior
    from monai_fetal.networks.speckle import SpeckleTexture, fit_speckle, reconstruct

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--fit-images", type=int, default=60)
    parser.add_argument("--images", type=int, default=None, help="pool images scored (default: all after the fitted ones)")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    generator = load_latent_generator(checked_prior(BUNDLE, BUNDLE / "models" / "prior"))
    autoencoder, size = generator.autoencoder, generator.settings["image_size"]
    items = unlabelled_items(args.data / "hc18_train", args.data / "benchmark_protocol.json")
    load = lambda item: np.asarray(read_image(item["image"]), dtype=np.float32) / 255.0  # noqa: E731
    fitted = fit_speckle(autoencoder, size, (load(item) for item in items[: args.fit_images]), 1.0)
    rest = items[args.fit_images :][: args.images]
    reference, second = [load(item) for item in rest[0::2]], [load(item) for item in rest[1::2]]
    reconstructions = [reconstruct(autoencoder, image, size) for image in second]
    network = build_prompted_sam("lite_medsam").eval()
    preprocessing = read_bundle_config("fetal_head_sam", EVALUATE_CONFIGS, {"frame_size": network.frame_size, "prompt": "gt_box"}).get_parsed_content("preprocessing")
    with tempfile.TemporaryDirectory() as work:
        real = pool_features(network, preprocessing, reference, Path(work) / "reference")
        floor = frechet_distance(real, pool_features(network, preprocessing, second, Path(work) / "second"))
        rows = {"autoencoder": frechet_distance(real, pool_features(network, preprocessing, reconstructions, Path(work) / "autoencoder")) / floor}
        print("autoencoder", rows["autoencoder"], flush=True)
        for scale in args.scales:
            texture = SpeckleTexture(fitted.kernel, fitted.levels, scale)
            textured = [texture.add_to(image, seed) for seed, image in enumerate(reconstructions)]
            rows[f"speckle_{scale}"] = frechet_distance(real, pool_features(network, preprocessing, textured, Path(work) / f"speckle_{scale}")) / floor
            print(scale, rows[f"speckle_{scale}"], flush=True)
    best = min(args.scales, key=lambda scale: rows[f"speckle_{scale}"])
    write_json_atomic(
        args.out,
        {
            "fitted_on": f"the first {args.fit_images} images of the unlabelled pool",
            "scored_on": f"the pool's other {len(rest)} images: {len(reference)} real (reference), {len(second)} passed through",
            "real_vs_real_fid": floor,
            "fid_over_floor": rows,
            "best_scale": best,
        },
    )


if __name__ == "__main__":
    main()
