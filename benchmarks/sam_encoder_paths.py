"""LiteMedSAM image-encoder paths on the CPU, one against another in the same run: seconds per image and error.

The encoder is 95 % of LiteMedSAM's FLOPs. Each path encodes the same phantom frames (batch 1,
in the calibrated range of the int8 paths); the error is the mean absolute difference from torch
fp32 relative to its mean absolute value. Paths: torch fp32 (stock), channels-last, bf16 autocast,
``torch.compile`` (fp32 and bf16; compile time reported), int8 dynamic quantisation of the linear
layers, ONNX Runtime fp32 (when ``onnxruntime`` is installed), and OpenVINO fp32, bf16 and int8
(the project's ``ov-*`` precisions). Dice per path is measured end to end by ``sam_end_to_end.py``.

    python benchmarks/sam_encoder_paths.py --out benchmarks/results/sam_encoder_paths_cpu.json
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from monai_fetal.atomic import write_json_atomic
from monai_fetal.networks import build_prompted_sam
from monai_fetal.networks.openvino_runtime import openvino_available, phantom_frames

Encoder = Callable[[torch.Tensor], torch.Tensor]


def _bf16(encoder: torch.nn.Module) -> Encoder:
    def run(image: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return encoder(image.contiguous(memory_format=torch.channels_last)).float()

    return run


def _channels_last(encoder: torch.nn.Module) -> Encoder:
    return lambda image: encoder(image.contiguous(memory_format=torch.channels_last))


def _onnxruntime(encoder: torch.nn.Module, example: torch.Tensor, threads: int) -> Encoder:
    import onnxruntime

    path = Path(tempfile.mkdtemp()) / "encoder.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(encoder, (example,), str(path), dynamo=False, opset_version=17)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda image: torch.from_numpy(session.run(None, {name: image.numpy()})[0])


def _openvino(precision: str) -> Encoder:
    net = build_prompted_sam(trainable="none").set_precision(precision)
    return lambda image: net.encode(image)


def _paths(encoder: torch.nn.Module, example: torch.Tensor, threads: int, compile_paths: bool) -> dict[str, Callable[[], Encoder]]:
    """Builders of every available path (built one at a time, so a failing path is reported, not fatal)."""
    paths: dict[str, Callable[[], Encoder]] = {
        "torch fp32": lambda: encoder,
        "torch fp32 channels_last": lambda: _channels_last(copy.deepcopy(encoder).to(memory_format=torch.channels_last)),
        "torch bf16 autocast channels_last": lambda: _bf16(copy.deepcopy(encoder).to(memory_format=torch.channels_last)),
        "torch int8 dynamic (linear layers)": lambda: torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(encoder), {torch.nn.Linear}, dtype=torch.qint8
        ),
    }
    if compile_paths:
        paths["torch.compile fp32"] = lambda: torch.compile(copy.deepcopy(encoder))
        paths["torch.compile bf16 channels_last"] = lambda: _bf16(
            torch.compile(copy.deepcopy(encoder).to(memory_format=torch.channels_last))
        )
    if importlib.util.find_spec("onnxruntime") is not None:
        paths["onnxruntime fp32"] = lambda: _onnxruntime(encoder, example, threads)
    for precision in ("ov-fp32", "ov-bf16", "ov-int8"):
        if openvino_available(int8=precision == "ov-int8"):
            paths[f"openvino {precision[3:]}"] = lambda precision=precision: _openvino(precision)
    return paths


def _measure(path: Encoder, frames: list[torch.Tensor], reference: list[torch.Tensor], repeats: int) -> dict:
    with torch.no_grad():
        start = time.perf_counter()
        outputs = [path(frame) for frame in frames]  # warm-up and first-call cost (conversion, compilation)
        first = time.perf_counter() - start
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for frame in frames:
                path(frame)
            times.append((time.perf_counter() - start) / len(frames))
    error = statistics.fmean(float((out - ref).abs().mean() / ref.abs().mean()) for out, ref in zip(outputs, reference))
    return {
        "s_per_image": times,
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "first_pass_s": first,
        "relative_error": error,
    }


def run_benchmark(images: int, repeats: int, threads: int, compile_paths: bool) -> dict:
    """Every path on the same frames; returns the JSON-able results."""
    torch.set_num_threads(threads)
    encoder = build_prompted_sam().image_encoder.eval()
    frames = [frame[None] for frame in phantom_frames(256, images, seed=1)]
    with torch.no_grad():
        reference = [encoder(frame) for frame in frames]
    results: dict = {
        "benchmark": "sam_encoder_paths",
        "model": "lite_medsam image encoder, 256 x 256, batch 1",
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "threads": threads,
        "paths": {},
    }
    for name, build in _paths(encoder, frames[0], threads, compile_paths).items():
        try:
            start = time.perf_counter()
            path = build()
            results["paths"][name] = {"build_s": time.perf_counter() - start, **_measure(path, frames, reference, repeats)}
        except Exception as error:  # a path this machine cannot run is reported, the others still measured
            results["paths"][name] = {"error": f"{type(error).__name__}: {error}"}
        print(name, json.dumps({k: v for k, v in results["paths"][name].items() if k != "s_per_image"}), flush=True)
    stock = results["paths"]["torch fp32"]["median"]
    for case in results["paths"].values():
        if "median" in case:
            case["speedup_vs_torch_fp32"] = stock / case["median"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sam_encoder_paths_cpu.json"))
    parser.add_argument("--images", type=int, default=4, help="phantom frames per run (default 4)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs over all frames, after a warm-up pass")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (about 2 min of compilation on 2 cores)")
    args = parser.parse_args()
    results = run_benchmark(args.images, args.repeats, args.threads, not args.no_compile)
    write_json_atomic(args.out, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
