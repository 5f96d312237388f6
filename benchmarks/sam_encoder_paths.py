"""LiteMedSAM image-encoder paths on the CPU, one against another in the same run: seconds per image and error.

The encoder is 95 % of LiteMedSAM's FLOPs. Each path encodes the same phantom frames (batch 1,
in the calibrated range of the int8 paths); the error is the mean absolute difference from torch
fp32 relative to its mean absolute value. Paths: torch fp32 (stock), channels-last, bf16 autocast,
``torch.compile`` (fp32 and bf16; compile time reported), int8 dynamic quantisation of the linear
layers, ONNX Runtime fp32 (when ``onnxruntime`` is installed), OpenVINO fp32, bf16 and int8
(the project's ``ov-*`` precisions, converted from ``tiny_vit_export``'s rewrite of the TinyViT), and
OpenVINO int8 of the vendored TinyViT graph as it is (what the rewrite gains). Dice per path is
measured end to end by ``sam_end_to_end.py``.

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
from monai_fetal.networks import SamRuntime, build_prompted_sam, module_fingerprint
from monai_fetal.networks.openvino_runtime import OpenVinoModel, openvino_available, phantom_frames

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
    net = SamRuntime(build_prompted_sam(trainable="none"), precision)
    return lambda image: net.encode(image)


def _openvino_vendored_int8() -> Encoder:
    """The ``ov-int8`` path on the vendored TinyViT graph as it is, without ``tiny_vit_export``'s rewrite."""
    net = build_prompted_sam(trainable="none")
    name = f"{module_fingerprint(net.image_encoder, net.name)}-benchmark-vendored-graph-int8"
    calibration = [net.normalize(frame[None])[0] for frame in phantom_frames(256)]  # what SamRuntime calibrates on
    model = OpenVinoModel(net.image_encoder, (torch.zeros(1, 3, 256, 256),), name, "bf16", lambda: calibration)
    return lambda image: model(net.normalize(image))[0]


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
    if openvino_available(int8=True):
        paths["openvino int8, vendored TinyViT graph"] = _openvino_vendored_int8
    return paths


def _first_pass(path: Encoder, frames: list[torch.Tensor], reference: list[torch.Tensor]) -> dict:
    """Warm-up pass (with the first call's conversion or compilation): its time and the path's error."""
    start = time.perf_counter()
    outputs = [path(frame) for frame in frames]
    first = time.perf_counter() - start
    error = statistics.fmean(float((out - ref).abs().mean() / ref.abs().mean()) for out, ref in zip(outputs, reference))
    return {"first_pass_s": first, "relative_error": error}


def _timed_pass(path: Encoder, frames: list[torch.Tensor]) -> float:
    start = time.perf_counter()
    for frame in frames:
        path(frame)
    return (time.perf_counter() - start) / len(frames)


def run_benchmark(images: int, repeats: int, threads: int, compile_paths: bool) -> dict:
    """Every path on the same frames, the timed passes interleaved (one pass of each path per round), so a
    change of the machine's speed during the run falls on all paths alike; returns the JSON-able results."""
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
        "timing": f"{repeats} rounds; each round times one pass of every path over the frames",
        "paths": {},
    }
    built: dict[str, Encoder] = {}
    with torch.no_grad():
        for name, build in _paths(encoder, frames[0], threads, compile_paths).items():
            try:
                start = time.perf_counter()
                built[name] = build()
                results["paths"][name] = {"build_s": time.perf_counter() - start, **_first_pass(built[name], frames, reference)}
            except Exception as error:  # a path this machine cannot run is reported, the others still measured
                built.pop(name, None)
                results["paths"][name] = {"error": f"{type(error).__name__}: {error}"}
        times: dict[str, list[float]] = {name: [] for name in built}
        for _ in range(repeats):
            for name, path in built.items():
                times[name].append(_timed_pass(path, frames))
    for name, seconds in times.items():
        case = results["paths"][name]
        case.update(s_per_image=seconds, median=statistics.median(seconds), min=min(seconds), max=max(seconds))
        print(name, json.dumps({k: v for k, v in case.items() if k != "s_per_image"}), flush=True)
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
