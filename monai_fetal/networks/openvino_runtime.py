"""Frozen network parts run by OpenVINO on the CPU: the fastest inference paths measured on CPUs.

A torch module is converted once per name (the caller puts a weights fingerprint in it) and its
OpenVINO IR is kept on disk (``~/.cache/monai_fetal/openvino`` or ``$MONAI_FETAL_CACHE``), so later
processes only read and compile it; processes that need it at once (DDP ranks) wait for
one conversion (a file lock beside it). With calibration inputs the converted model is int8-quantised
by NNCF's post-training quantisation; :func:`phantom_frames` gives a calibration set of procedural
phantoms (no data needed, the same on every machine). Models are traced at batch 1 and batches run
one sample per call: on a 2-core CPU batching gives no speed (benchmarks/README.md), and a fixed
shape keeps the conversion valid for the vendored TinyViT, which bakes its batch size into reshapes.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from torch import nn

from monai_fetal.atomic import current_umask

__all__ = ["OpenVinoModel", "openvino_available", "openvino_cache_dir", "phantom_frames"]

logger = logging.getLogger(__name__)

CALIBRATION_IMAGES = 16
CALIBRATION_SIZE = (272, 400)  # HC18's aspect; LiteMedSAM's frame is 256 px
_MODEL_FILE = "model.xml"
# In cached folder names; bumped whenever the conversion, or a graph given to it (tiny_vit_export), changes.
GRAPH_REVISION = 2


def openvino_available(int8: bool = False) -> bool:
    """True when ``openvino`` (and, for ``int8``, ``nncf``) can be imported."""
    needed = ("openvino", "nncf") if int8 else ("openvino",)
    return all(importlib.util.find_spec(name) is not None for name in needed)


def openvino_cache_dir() -> Path:
    """Folder of converted models: ``$MONAI_FETAL_CACHE/openvino`` or ``~/.cache/monai_fetal/openvino``."""
    root = os.environ.get("MONAI_FETAL_CACHE") or Path.home() / ".cache" / "monai_fetal"
    return Path(root) / "openvino"


def phantom_frames(frame_size: int, count: int = CALIBRATION_IMAGES, seed: int = 0) -> list[torch.Tensor]:
    """``count`` procedural phantoms in the SAM frame, ``[3, S, S]`` in [0, 1]: the int8 calibration set."""
    from monai_fetal.data.phantom import render_phantom
    from monai_fetal.transforms import SamFramed

    rng = np.random.default_rng(seed)
    framing = SamFramed(keys="image", frame_size=frame_size)
    frames = []
    for _ in range(count):
        image = torch.from_numpy(render_phantom(rng, CALIBRATION_SIZE)[0].T.astype(np.float32))[None]  # MONAI's [C, W, H]
        frames.append(framing({"image": image})["image"].as_tensor())
    return frames


@contextmanager
def _without_telemetry() -> Iterator[None]:
    """Import OpenVINO and NNCF and convert models without their usage telemetry (and its client id in ``~/intel``).

    Both send usage events unless they run in CI (``openvino_telemetry``'s ``disable_in_ci`` check of
    ``CI=true``, made when the packages are imported and when a model is converted); a tool for clinical
    data should send nothing, so those steps run as CI does.
    """
    previous = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["CI"]
        else:
            os.environ["CI"] = previous


def _convert(module: nn.Module, examples: tuple[torch.Tensor, ...], target: Path, calibration: list[torch.Tensor] | None) -> None:
    """Trace ``module`` on ``examples`` (int8-quantise it on single-input ``calibration`` samples if given) and
    write its OpenVINO IR under ``target``: in a staging folder first, then renamed."""
    with warnings.catch_warnings(), torch.no_grad(), _without_telemetry():
        import openvino as ov

        warnings.simplefilter("ignore")
        model = ov.convert_model(module.eval(), example_input=examples, input=[tuple(example.shape) for example in examples])  # static
        if calibration is not None:
            import nncf

            dataset = nncf.Dataset([sample[None].numpy() for sample in calibration])
            model = nncf.quantize(model, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o777 & ~current_umask())  # mkdtemp makes folders private; a shared cache needs the usual permissions
    try:
        ov.save_model(model, staging / _MODEL_FILE, compress_to_fp16=False)  # keep fp32 weights exact
        staging.rename(target)
    except OSError:
        if not (target / _MODEL_FILE).is_file():  # another process (a DDP rank) may have put it there first
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class OpenVinoModel:
    """Inference-only stand-in for a frozen torch module, run by OpenVINO on the CPU one sample at a time.

    Args:
        module: the torch module (converted when ``name`` is not cached yet; it is not kept).
        examples: one batch-1 input per argument of ``module``, for tracing.
        name: names the cached IR (with :data:`GRAPH_REVISION`); must change with the weights (put a fingerprint in it).
        precision: OpenVINO's inference precision, ``f32`` or ``bf16`` (``f32`` where the CPU has no
            native bfloat16).
        calibration: single-input samples (without batch axis) to int8-quantise on, called only when
            the model is not cached yet; ``None``: no quantisation.
        threads: CPU threads (default: torch's).
    """

    def __init__(
        self,
        module: nn.Module,
        examples: Sequence[torch.Tensor],
        name: str,
        precision: str = "f32",
        calibration: Callable[[], list[torch.Tensor]] | None = None,
        threads: int | None = None,
    ):
        with _without_telemetry():
            import openvino as ov

        folder = openvino_cache_dir() / f"{name}-r{GRAPH_REVISION}"
        if not (folder / _MODEL_FILE).is_file():
            folder.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(folder.parent / f".{folder.name}.lock"):  # processes started together convert once
                if not (folder / _MODEL_FILE).is_file():
                    if calibration is not None:
                        logger.info("quantising %s to int8 once (about a minute on 2 cores); cached in %s", name, folder)
                    _convert(module, tuple(examples), folder, calibration() if calibration is not None else None)
        core = ov.Core()
        if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            precision = "f32"
        config = {
            "INFERENCE_PRECISION_HINT": precision,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
        }
        self._request = core.compile_model(core.read_model(folder / _MODEL_FILE), "CPU", config).create_infer_request()

    def __call__(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """The module's outputs for batched ``inputs`` (float32 CPU tensors, concatenated over the batch).

        Each sample is made contiguous on its own, so an input expanded over the batch (one image's embedding
        for many boxes) is never copied once per box.
        """
        tensors = [value.detach().to("cpu", torch.float32) for value in inputs]
        outputs: list[list[torch.Tensor]] = []
        for i in range(len(tensors[0])):
            result = self._request.infer([tensor[i : i + 1].contiguous().numpy() for tensor in tensors])
            outputs.append([torch.from_numpy(result[k].copy()) for k in range(len(result))])
        return [torch.cat(parts) for parts in zip(*outputs)]
