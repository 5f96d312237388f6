"""Speed of the latent generator (shipped prior): conditioning s/step and sampling s/pair at 540 x 800.

    python benchmarks/latent_speed.py --out benchmarks/results/latent_speed_cpu.json

A conditioning step is what ``train_conditioning.json`` runs: encode the batch with the frozen
autoencoder, noise the latents, one UNet pass with the mask channel, MSE, AdamW (``cpu`` preset batch
4), timed in float32 and, where the configs' ``autocast`` default is on (a CPU with native bfloat16),
under bfloat16 autocast (on CUDA always: the training configs' ``amp``). A pair is what ``synthesize`` writes: DDIM through MONAI's ``LatentDiffusionInferer`` (one UNet
pass per step, two with classifier-free guidance, then the decoder) and the bilinear upsampling to 540 x 800,
in float32 and, where the default is on (or on CUDA), under bfloat16 autocast. Each row is the median,
min and max of ``--repeats`` timed runs after a warm-up, at the machine's thread count. ``cpu_s``
rows give the process CPU time of the same runs: on a machine shared with other jobs it estimates
what the wall time would be on idle cores (CPU seconds / threads).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.inferers import DiffusionInferer
from monai.networks.schedulers import DDPMScheduler

from monai_fetal.atomic import write_json_atomic
from monai_fetal.bundles import bundle_dir
from monai_fetal.engines.latent import LatentPrepareBatch, latent_inferer, sample_latent_images
from monai_fetal.engines.mixed_precision import AutocastInferer
from monai_fetal.networks.bfloat16 import cpu_autocast_default
from monai_fetal.networks.latent import load_latent_generator
from timing import cpu_description, synchronize


def _timed(work, repeats: int, device: torch.device) -> dict:
    """Median, min, max wall seconds and median CPU seconds of ``repeats`` calls after one warm-up call."""
    work()
    wall, cpu = [], []
    for _ in range(repeats):
        synchronize(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        work()
        synchronize(device)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"runs_s": wall, "median_s": statistics.median(wall), "min_s": min(wall), "max_s": max(wall), "median_cpu_s": statistics.median(cpu)}


def conditioning_step(device: torch.device, batch_size: int, repeats: int, autocast: bool) -> dict:
    """Seconds per conditioning step from the shipped prior, under bfloat16 autocast or not (the configs' ``autocast``)."""
    generator = load_latent_generator(bundle_dir("fetal_us_diffusion") / "models" / "prior", device)
    settings = generator.settings
    scheduler = DDPMScheduler(**settings["scheduler"])
    prepare = LatentPrepareBatch(generator.autoencoder, settings, settings["scale_factor"], 1000, scheduler, autocast=autocast)
    inferer = AutocastInferer(DiffusionInferer(scheduler), autocast)
    unet = generator.unet.train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    rows, cols = settings["image_size"]
    batch = {"image": torch.rand(batch_size, 1, rows, cols, device=device) * 2 - 1, "label": torch.zeros(batch_size, 1, rows, cols, device=device)}
    batch["label"][:, :, rows // 4 : 3 * rows // 4, cols // 4 : 3 * cols // 4] = 1

    def step() -> None:
        latents, target, _, kwargs = prepare(batch, device)
        loss = F.mse_loss(inferer(latents, unet, **kwargs), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return {"batch_size": batch_size, "autocast": autocast, **_timed(step, repeats, device)}


def sampling(device: torch.device, steps: int, guidance: float, batch_size: int, repeats: int, autocast: bool) -> dict:
    """Seconds per synthetic pair: DDIM ``steps`` at 256 x 384 (``guidance`` > 1: two UNet passes per step), decoded, upsampled to 540 x 800,
    under bfloat16 autocast or not (``inference.json``'s ``autocast``)."""
    generator = load_latent_generator(bundle_dir("fetal_us_diffusion") / "models" / "prior", device)
    settings = generator.settings
    rows, cols = settings["image_size"]
    masks = torch.zeros(batch_size, 1, rows, cols)
    masks[:, :, rows // 4 : 3 * rows // 4, cols // 4 : 3 * cols // 4] = 1
    inferer = latent_inferer(settings, "ddim", steps)

    def pairs() -> None:
        images = sample_latent_images(generator, inferer, list(range(batch_size)), masks, guidance, autocast)
        F.interpolate(images, size=(540, 800), mode="bilinear", align_corners=False)

    result = _timed(pairs, repeats, device)
    return {"ddim_steps": steps, "guidance": guidance, "autocast": autocast, "batch_size": batch_size, **result, "per_pair_s": result["median_s"] / batch_size, "per_pair_cpu_s": result["median_cpu_s"] / batch_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="results JSON")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (default 3)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50], help="DDIM steps of the sampling rows (default 10 25 50)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4], help="batch sizes of every row (default 4, the cpu preset's; the gpu preset trains with 32)")
    args = parser.parse_args()
    device = torch.device(args.device)
    precisions = sorted({False, cpu_autocast_default(device) or device.type == "cuda"})
    results = {
        "machine": {"platform": platform.platform(), **cpu_description(), "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "device": str(device),
                    "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "load_average": os.getloadavg()},
        "conditioning_step": [conditioning_step(device, batch, args.repeats, autocast) for batch in args.batch_sizes for autocast in precisions],
        "sampling": [
            sampling(device, steps, guidance, batch, args.repeats, autocast)
            for batch in args.batch_sizes
            for guidance in (1.0, 2.0)
            for steps in args.steps
            for autocast in precisions
        ],
    }
    write_json_atomic(args.out, results)
    for row in results["conditioning_step"]:
        print(f"conditioning step (batch {row['batch_size']}, autocast {row['autocast']}): {row['median_s']:.2f} s ({row['median_cpu_s']:.2f} CPU s)")
    for row in results["sampling"]:
        print(f"batch {row['batch_size']}, DDIM {row['ddim_steps']}, guidance {row['guidance']}, autocast {row['autocast']}: {row['per_pair_s']:.2f} s per pair at 540 x 800 ({row['per_pair_cpu_s']:.2f} CPU s)")


if __name__ == "__main__":
    main()
