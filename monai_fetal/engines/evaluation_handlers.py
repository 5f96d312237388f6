"""Ignite handlers for evaluation: head-circumference error and the per-image / summary report."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from pathlib import Path

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import decollate_batch
from monai.handlers import MetricsSaver, from_engine
from monai.utils import ImageMetaKey as Key
from monai.utils import string_list_all_gather

from monai_fetal.atomic import write_json_atomic, write_text_atomic
from monai_fetal.metrics.biometry import hc_errors

__all__ = ["HeadCircumferenceErrorHandler", "EvaluationReportWriter"]


def _scalar(value: object) -> object:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return value


def _batch_values(batch: dict | list, key: str, count: int) -> list:
    """``key`` of each item of a batch, collated (dict of lists) or decollated (list of dicts) as MONAI leaves it."""
    if isinstance(batch, list):
        return [_scalar(item.get(key)) if isinstance(item, dict) else None for item in batch]
    values = batch.get(key) if isinstance(batch, dict) else None
    if values is None:
        return [None] * count
    if isinstance(values, torch.Tensor):
        return [_scalar(v) for v in values.flatten()]
    return [_scalar(v) for v in values]


class HeadCircumferenceErrorHandler:
    """Per-image HC relative error and absolute error in mm, as ``engine.state.metrics`` and ``metric_details``.

    Args:
        output_transform: gives ``(preds, labels)`` lists of ``[1, H, W]`` masks from ``engine.state.output``.
        spacing_key: batch key of mm per pixel (absolute error is NaN where it is absent).
    """

    def __init__(self, output_transform: Callable = from_engine(["pred", "label"]), spacing_key: str = "spacing") -> None:
        self.output_transform = output_transform
        self.spacing_key = spacing_key
        self.relative: list[float] = []
        self.absolute: list[float] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.complete)

    def reset(self, engine: Engine) -> None:
        self.relative, self.absolute = [], []

    def update(self, engine: Engine) -> None:
        preds, labels = self.output_transform(engine.state.output)
        spacings = _batch_values(engine.state.batch, self.spacing_key, len(preds))
        for pred, label, spacing in zip(preds, labels, spacings):
            relative, absolute = hc_errors(np.asarray(pred.detach().cpu()), np.asarray(label.detach().cpu()), spacing)
            self.relative.append(relative)
            self.absolute.append(absolute)

    def complete(self, engine: Engine) -> None:
        for name, values in (("hc_rel_error", self.relative), ("hc_abs_error_mm", self.absolute)):
            finite = [v for v in values if math.isfinite(v)]
            engine.state.metrics[name] = float(np.mean(finite)) if finite else math.nan
            engine.state.metric_details[name] = torch.tensor(values, dtype=torch.float64)[:, None]


class EvaluationReportWriter(MetricsSaver):
    """MONAI's ``MetricsSaver`` writing the report users read: ``per_image.csv`` and ``metrics.json``.

    ``MetricsSaver`` collects the case ids (gathered across ranks; rank ``save_rank`` writes) and the per-image
    details of every metric handler attached with ``save_details=True`` (and the HC handler); this writes them as
    one ``per_image.csv`` (``id`` and a column per metric, the mean over channels) instead of a file per metric,
    and a ``metrics.json`` summary: ``<metric>_mean`` and ``<metric>_median`` over finite values (``null`` if none),
    with ``<metric>_failures`` counting images where the metric is not finite (e.g. an empty prediction). Both
    files are written atomically.

    Args:
        output_dir: where to write.
        prompt: the prompt mode recorded in the summary.
        id_key: batch key of the case id (``case_<n>`` where an item has none).
        extra: other values to record in ``metrics.json`` (model name, checkpoint...).
    """

    def __init__(self, output_dir: str | Path, prompt: str, id_key: str = "id", extra: dict | None = None) -> None:
        super().__init__(save_dir=str(output_dir), metrics=None, metric_details="*", batch_transform=self._case_ids)
        self.prompt = prompt
        self.id_key = id_key
        self.extra = dict(extra or {})

    def _case_ids(self, batch: dict | list) -> list[dict]:
        """The batch's case ids where ``MetricsSaver`` looks for file names."""
        items = batch if isinstance(batch, list) else decollate_batch(batch)
        found = len(self._filenames)
        return [{Key.FILENAME_OR_OBJ: _scalar(item.get(self.id_key, f"case_{found + n}"))} for n, item in enumerate(items)]

    def __call__(self, engine: Engine) -> None:
        ids = string_list_all_gather(self._filenames) if idist.get_world_size() > 1 else self._filenames
        if idist.get_rank() != self.save_rank:
            return
        details = {
            name: torch.as_tensor(values).reshape(len(ids), -1).double().mean(dim=1).tolist()
            for name, values in engine.state.metric_details.items()
        }
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["id", *details])
        for row, case_id in enumerate(ids):
            writer.writerow([case_id, *(f"{details[name][row]:.6g}" for name in details)])
        write_text_atomic(Path(self.save_dir) / "per_image.csv", buffer.getvalue())
        summary: dict = {"n": len(ids), "prompt": self.prompt, **self.extra}
        for name, values in details.items():
            finite = [v for v in values if math.isfinite(v)]
            summary[f"{name}_mean"] = float(np.mean(finite)) if finite else None
            summary[f"{name}_median"] = float(np.median(finite)) if finite else None
            summary[f"{name}_failures"] = len(values) - len(finite)
        write_json_atomic(Path(self.save_dir) / "metrics.json", summary)
