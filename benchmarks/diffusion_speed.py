"""Speed of the diffusion generator: training s/step per preset and mode, sampling s/image per sampler, peak memory.

    python benchmarks/diffusion_speed.py --quick --out benchmarks/results/diffusion_speed_cpu.json

Training steps are what ``train.json`` runs (prepare batch, ``DiffusionInferer``, MSE, AdamW; AMP on CUDA)
at the preset's batch size (``--quick`` on CPU: the ``gpu`` preset at batch 2). Sampling is DDIM with 25, 50
and 100 steps and DDPM with 1000 steps, batch of 8 (quick: 2); each sampling step costs the same, so
``--quick`` times 10 steps and scales to the full count (``measured_steps`` says which).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from monai.inferers import DiffusionInferer

from monai_fetal.atomic import write_json_atomic
from monai_fetal.engines.diffusion import MaskConditionedPrepareBatch, make_scheduler, sample_pairs
from monai_fetal.networks.diffusion import MODES, PRESETS, build_generator, generator_settings
from timing import peak_memory_mb, reset_peak_memory, synchronize

TRAIN_CONFIG = Path(__file__).resolve().parents[1] / "bundles" / "fetal_us_diffusion" / "configs" / "train.json"
SAMPLERS = (("ddim", 25), ("ddim", 50), ("ddim", 100), ("ddpm", 1000))


def train_step_seconds(mode: str, preset: str, batch_size: int, steps: int, device: torch.device) -> dict:
    """Mean seconds per training step after one warm-up step."""
    settings = generator_settings(mode, preset)
    generator = build_generator(settings).to(device).train()
    scheduler = make_scheduler(settings, "ddpm", 1000)
    prepare = MaskConditionedPrepareBatch(settings["scheduler"]["num_train_timesteps"], mode=mode, scheduler=scheduler)
    inferer = DiffusionInferer(scheduler)
    optimizer = torch.optim.AdamW([p for p in generator.parameters() if p.requires_grad], lr=1e-4)
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    rows, cols = settings["image_size"]
    batch = {"image": torch.rand(batch_size, 1, rows, cols) * 2 - 1, "label": (torch.rand(batch_size, 1, rows, cols) > 0.5).float()}
    reset_peak_memory(device)
    times = []
    for _ in range(steps + 1):
        synchronize(device)
        start = time.perf_counter()
        inputs, target, _, kwargs = prepare(batch, device)
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            loss = torch.nn.functional.mse_loss(inferer(inputs, generator, **kwargs).float(), target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        synchronize(device)
        times.append(time.perf_counter() - start)
    mean = sum(times[1:]) / steps
    return {"mode": mode, "preset": preset, "batch_size": batch_size, "image_size": [rows, cols], "steps_timed": steps,
            "s_per_step": mean, "images_per_s": batch_size / mean, "peak_memory_mb": peak_memory_mb(device)}


def sampling_seconds(preset: str, sampler: str, steps: int, batch_size: int, measured_steps: int, device: torch.device) -> dict:
    """Seconds per image for ``steps`` sampling steps (timed over ``measured_steps`` of them)."""
    settings = generator_settings("concat", preset)
    generator = build_generator(settings).to(device).eval()
    scheduler = make_scheduler(settings, sampler, steps)
    scheduler.timesteps = scheduler.timesteps[:measured_steps]
    masks = (torch.rand(batch_size, 1, *settings["image_size"]) > 0.5).float()
    sample_pairs(generator, DiffusionInferer(make_scheduler(settings, sampler, 1)), settings["image_size"], list(range(batch_size)), masks)
    reset_peak_memory(device)
    synchronize(device)
    start = time.perf_counter()
    sample_pairs(generator, DiffusionInferer(scheduler), settings["image_size"], list(range(batch_size)), masks)
    synchronize(device)
    seconds = (time.perf_counter() - start) * steps / measured_steps
    return {"preset": preset, "sampler": sampler, "steps": steps, "measured_steps": measured_steps, "batch_size": batch_size,
            "s_per_image": seconds / batch_size, "peak_memory_mb": peak_memory_mb(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats; gpu preset at batch 2 on CPU; 10 sampling steps scaled")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--out", default="benchmarks/results/diffusion_speed.json", help="JSON to write")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    presets = json.loads(TRAIN_CONFIG.read_text())["presets"]
    steps = 2 if args.quick else 10
    training = []
    for preset in PRESETS:
        batch_size = presets[preset]["batch_size"]
        if args.quick and device.type == "cpu" and preset == "gpu":
            batch_size = 2
        training += [train_step_seconds(mode, preset, batch_size, steps, device) for mode in MODES]
    sampling = []
    for preset in PRESETS if device.type == "cuda" else ("cpu",):
        batch_size = 2 if args.quick else 8
        sampling += [sampling_seconds(preset, s, k, batch_size, min(k, 10) if args.quick else k, device) for s, k in SAMPLERS]
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})",
        "threads": torch.get_num_threads(),
        "load_average_1min_at_end": os.getloadavg()[0],
        "quick": args.quick,
        "torch": torch.__version__,
        "training": training,
        "sampling": sampling,
        "notes": "controlnet rows time the ControlNet stage (UNet frozen); its base stage costs about what a 1-channel UNet step does",
    }
    write_json_atomic(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
