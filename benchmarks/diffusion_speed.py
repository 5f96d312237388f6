"""Speed of the diffusion generator: training s/step per preset, mode and precision, sampling s/image, peak memory.

    python benchmarks/diffusion_speed.py --quick --out benchmarks/results/diffusion_speed_cpu.json

Training steps are what ``train.json`` runs (prepare batch, ``DiffusionInferer``, MSE, AdamW) at the
preset's batch size, in fp32 (the stock path) and in mixed precision (``amp``: fp16 autocast with a
gradient scaler on CUDA, as ``train.json`` runs there; bf16 autocast on a CPU), each step timed after
a warm-up step. Sampling is DDIM with 25, 50 and 100 steps and DDPM with 1000 steps: every step costs
one UNet pass, so the per-step time (median of ``--repeats`` timed runs of 10 steps, batch of 8;
quick: 2) is scaled to each count. ``--quick`` on a CPU times the ``cpu`` preset only. Every row
gives the median, min and max of its timed runs and its ratio against fp32 in the same run.
Every row runs in a fresh process, so its peak memory is its own: on a CPU the row's process peak
resident memory (imports included), on CUDA the peak allocated memory of its device.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from monai.inferers import DiffusionInferer

from monai_fetal.atomic import write_json_atomic
from monai_fetal.engines.diffusion import MaskConditionedPrepareBatch, make_scheduler, sample_pairs
from monai_fetal.networks.diffusion import MODES, PRESETS, build_generator, generator_settings
from timing import in_fresh_process, peak_memory_mb, reset_peak_memory, synchronize

TRAIN_CONFIG = Path(__file__).resolve().parents[1] / "bundles" / "fetal_us_diffusion" / "configs" / "train.json"
SAMPLERS = (("ddim", 25), ("ddim", 50), ("ddim", 100), ("ddpm", 1000))
SAMPLING_STEPS = 10
PRECISIONS = ("fp32", "amp")


def _amp(device: torch.device, precision: str) -> torch.autocast:
    """Autocast for ``precision`` (``fp32``: off; ``amp``: fp16 on CUDA, bf16 on a CPU)."""
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=precision == "amp")


def _summary(seconds: list[float]) -> dict:
    return {"runs_s": seconds, "median_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds)}


def train_step_seconds(
    mode: str, preset: str, precision: str, batch_size: int, steps: int, device: torch.device, threads: int
) -> dict:
    """Seconds per training step (``steps`` timed steps after one warm-up step) on ``threads`` CPU threads."""
    torch.set_num_threads(threads)
    settings = generator_settings(mode, preset)
    generator = build_generator(settings).to(device).train()
    scheduler = make_scheduler(settings, "ddpm", 1000)
    prepare = MaskConditionedPrepareBatch(settings["scheduler"]["num_train_timesteps"], mode=mode, scheduler=scheduler)
    inferer = DiffusionInferer(scheduler)
    optimizer = torch.optim.AdamW([p for p in generator.parameters() if p.requires_grad], lr=1e-4)
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda" and precision == "amp")
    rows, cols = settings["image_size"]
    batch = {"image": torch.rand(batch_size, 1, rows, cols) * 2 - 1, "label": (torch.rand(batch_size, 1, rows, cols) > 0.5).float()}
    reset_peak_memory(device)
    times = []
    for _ in range(steps + 1):
        synchronize(device)
        start = time.perf_counter()
        inputs, target, _, kwargs = prepare(batch, device)
        with _amp(device, precision):
            loss = torch.nn.functional.mse_loss(inferer(inputs, generator, **kwargs).float(), target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        synchronize(device)
        times.append(time.perf_counter() - start)
    summary = _summary(times[1:])
    return {
        "mode": mode,
        "preset": preset,
        "precision": precision,
        "batch_size": batch_size,
        "image_size": [rows, cols],
        **summary,
        "images_per_s": batch_size / summary["median_s"],
        "peak_memory_mb": peak_memory_mb(device),
    }


def sampling_step_seconds(
    preset: str, precision: str, batch_size: int, repeats: int, device: torch.device, threads: int
) -> dict:
    """Seconds per image and sampling step (``repeats`` timed runs of ``SAMPLING_STEPS`` DDIM steps), and per sampler."""
    torch.set_num_threads(threads)
    settings = generator_settings("concat", preset)
    generator = build_generator(settings).to(device).eval()
    masks = (torch.rand(batch_size, 1, *settings["image_size"]) > 0.5).float()
    seeds = list(range(batch_size))

    def run(steps: int) -> float:
        scheduler = make_scheduler(settings, "ddim", 100)
        scheduler.timesteps = scheduler.timesteps[:steps]
        synchronize(device)
        start = time.perf_counter()
        with _amp(device, precision):
            sample_pairs(generator, DiffusionInferer(scheduler), settings["image_size"], seeds, masks)
        synchronize(device)
        return (time.perf_counter() - start) / (steps * batch_size)

    run(1)
    reset_peak_memory(device)
    summary = _summary([run(SAMPLING_STEPS) for _ in range(repeats)])
    per_sampler = {f"{sampler}_{steps}": summary["median_s"] * steps for sampler, steps in SAMPLERS}
    return {
        "preset": preset,
        "precision": precision,
        "batch_size": batch_size,
        "steps_per_run": SAMPLING_STEPS,
        **summary,
        "s_per_image": per_sampler,
        "pairs_per_s": {k: 1 / v for k, v in per_sampler.items()},
        "peak_memory_mb": peak_memory_mb(device),
    }


def _add_ratios(rows: list[dict], keys: tuple[str, ...]) -> None:
    """``speedup_vs_fp32``: the fp32 row's median over this row's, among rows equal in ``keys``."""
    fp32 = {tuple(row[k] for k in keys): row["median_s"] for row in rows if row["precision"] == "fp32"}
    for row in rows:
        row["speedup_vs_fp32"] = fp32[tuple(row[k] for k in keys)] / row["median_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="cpu preset only on a CPU; batch 2 for sampling")
    parser.add_argument("--repeats", type=int, default=5, help="timed training steps and sampling runs per row (default 5)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    parser.add_argument("--out", default="benchmarks/results/diffusion_speed.json", help="JSON to write")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    presets = json.loads(TRAIN_CONFIG.read_text())["presets"]
    timed_presets = ("cpu",) if args.quick and device.type == "cpu" else PRESETS
    training = [
        in_fresh_process(
            train_step_seconds, mode, preset, precision, presets[preset]["batch_size"], args.repeats, device, args.threads
        )
        for preset in timed_presets
        for mode in MODES
        for precision in PRECISIONS
    ]
    _add_ratios(training, ("mode", "preset"))
    batch_size = 2 if args.quick else 8
    sampling = [
        in_fresh_process(sampling_step_seconds, preset, precision, batch_size, args.repeats, device, args.threads)
        for preset in timed_presets
        for precision in PRECISIONS
    ]
    _add_ratios(sampling, ("preset",))
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})",
        "threads": torch.get_num_threads(),
        "load_average_1min_at_end": os.getloadavg()[0],
        "quick": args.quick,
        "torch": torch.__version__,
        "training": training,
        "sampling": sampling,
        "notes": "every row in a fresh process (peak_memory_mb: on a CPU the row process's peak RSS, imports included); "
        "controlnet rows time the ControlNet stage (UNet frozen); its base stage costs about what a 1-channel UNet step does",
    }
    write_json_atomic(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
