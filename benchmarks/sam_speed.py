"""Prompted-SAM speed: inference s/image and fine-tuning s/epoch per trainable policy, with peak memory.

Each case runs in a fresh process (so its peak memory is its own) and is timed ``--repeats`` times
after one warm-up; the JSON holds every timing and their median. CPU always; CUDA when present
(inference at batch 1, 8 and 32 in fp32 and bf16 there).

    python benchmarks/sam_speed.py --out benchmarks/results/sam_speed_cpu.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import time
from pathlib import Path

import torch

from monai_fetal.atomic import write_json_atomic
from monai_fetal.engines import MaskAndLocatorLoss
from monai_fetal.networks import SamRuntime, build_prompted_sam
from timing import peak_memory_mb, synchronize

EPOCH_IMAGES = 20  # a 5-shot run with 4 augmentation variants
BATCH = 8
INFERENCE_CASES = {  # (batch, encoder precision) per device; the CPU paths are compared in sam_end_to_end.py
    "cpu": [(1, "fp32"), (8, "fp32")],
    "cuda": [(batch, precision) for precision in ("fp32", "bf16") for batch in (1, 8, 32)],
}


def _timed(function, repeats: int, device: torch.device) -> list[float]:
    function()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def _batches(count: int, size: int, frame: int, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    out = []
    for start in range(0, count, size):
        n = min(size, count - start)
        images = torch.rand(n, 3, frame, frame, generator=generator)
        yy, xx = torch.meshgrid(torch.arange(frame), torch.arange(frame), indexing="ij")
        masks = (((yy - frame / 2) / (frame / 4)) ** 2 + ((xx - frame / 2) / (frame / 3)) ** 2 <= 1).float()
        labels = masks.expand(n, 1, frame, frame).clone()
        boxes = torch.tensor([[frame / 6, frame / 4, 5 * frame / 6, 3 * frame / 4]]).expand(n, 4).clone()
        out.append((images.to(device), labels.to(device), boxes.to(device)))
    return out


def inference_case(device_name: str, batch: int, repeats: int, threads: int, precision: str = "fp32") -> dict:
    """Seconds per image for encode + decode of ``batch`` images with boxes, no gradient, encoder in ``precision``."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    net = SamRuntime(build_prompted_sam(), precision).to(device).eval()
    ((images, _, boxes),) = _batches(batch, batch, net.frame_size, device)

    def run() -> None:
        with torch.no_grad():
            net(images, boxes)

    times = _timed(run, repeats, device)
    images_per_s = batch / statistics.median(times)
    return {"s_per_image": [t / batch for t in times], "images_per_s": images_per_s, "peak_memory_mb": peak_memory_mb(device)}


def training_case(device_name: str, trainable: str, cached: bool, repeats: int, threads: int, cache_dir: str) -> dict:
    """Seconds per fine-tuning epoch of ``EPOCH_IMAGES`` images in batches of ``BATCH`` (forward, loss, backward, step)."""
    from monai.losses import DiceCELoss

    torch.set_num_threads(threads)
    device = torch.device(device_name)
    net = SamRuntime(build_prompted_sam(trainable=trainable), embedding_cache_dir=cache_dir if cached else None).to(device)
    net.train()
    loss_function = MaskAndLocatorLoss(DiceCELoss(sigmoid=True, squared_pred=True))
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-5)
    batches = _batches(EPOCH_IMAGES, BATCH, net.frame_size, device)

    def epoch() -> None:
        for images, labels, boxes in batches:
            optimizer.zero_grad()
            loss_function(net(images, boxes, with_locator=True), labels).backward()
            optimizer.step()

    times = _timed(epoch, repeats, device)
    return {"s_per_epoch": times, "images_per_epoch": EPOCH_IMAGES, "batch": BATCH, "peak_memory_mb": peak_memory_mb(device)}


def _summary(result: dict) -> dict:
    key = "s_per_image" if "s_per_image" in result else "s_per_epoch"
    values = result[key]
    return {**result, "median": statistics.median(values), "min": min(values), "max": max(values)}


def _in_fresh_process(function, *args) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return _summary(pool.apply(function, args))


def run_benchmarks(devices: list[str], repeats: int, full_repeats: int, threads: int, cache_dir: Path) -> dict:
    """All cases on each device; returns the JSON-able results."""
    results: dict = {
        "benchmark": "sam_speed",
        "model": "lite_medsam",
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "threads": threads,
        "devices": {},
    }
    for device in devices:
        label = torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({threads} threads)"
        cases: dict = {"device_name": label, "inference": {}, "training": {}}
        for batch, precision in INFERENCE_CASES[device]:
            key = f"batch_{batch}" if precision == "fp32" else f"batch_{batch}/{precision}"
            cases["inference"][key] = _in_fresh_process(inference_case, device, batch, repeats, threads, precision)
        for trainable in ("decoder", "decoder+prompt", "full"):
            for cached in (True, False) if trainable != "full" else (False,):
                n = repeats if trainable != "full" else full_repeats
                key = f"{trainable}/{'cached' if cached else 'encoder'}"
                cases["training"][key] = _in_fresh_process(training_case, device, trainable, cached, n, threads, str(cache_dir / device))
        decoder = cases["training"]
        cases["cache_speedup_decoder"] = decoder["decoder/encoder"]["median"] / decoder["decoder/cached"]["median"]
        results["devices"][device] = cases
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sam_speed_cpu.json"))
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (after one warm-up)")
    parser.add_argument("--full-repeats", type=int, default=2, help="timed epochs for the 'full' policy (slow on CPU)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--cache-dir", type=Path, default=Path("benchmarks/.cache/embeddings"))
    parser.add_argument("--cpu-only", action="store_true")
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.cpu_only else [])
    results = run_benchmarks(devices, args.repeats, args.full_repeats, args.threads, args.cache_dir)
    write_json_atomic(args.out, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
