"""Seconds per SAM fine-tuning epoch (``train.json``, 5 shots of ``hc18_subset``) with and without the variant cache.

Each case runs the bundle's own training in a fresh process for ``--epochs`` epochs, on an embedding cache
filled beforehand (so that no epoch pays for encoding), and times every epoch with an ignite handler. The
epochs after the first are the ones the variant cache (``variant_cache_items``) speeds up: they take each
training item from memory instead of loading and augmenting it again.

    .venv/bin/python benchmarks/finetune_speed.py --out benchmarks/results/finetune_speed_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from monai_fetal.atomic import write_json_atomic
from timing import cpu_description, in_fresh_process

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hc18_subset"


def epoch_seconds(data: str, out: str, cache: str, epochs: int, cache_items: int) -> list[float]:
    """Wall seconds of each training epoch (validation excluded) of one ``train.json`` run."""
    from ignite.engine import Events

    from monai_fetal.bundles import read_bundle_config

    overrides = {
        "dataset_dir": data,
        "output_dir": out,
        "embedding_cache_dir": cache,
        "max_epochs": epochs,
        "variant_cache_items": cache_items,
        "self_training_rounds": 0,
        "device": "$torch.device('cpu')",
    }
    parser = read_bundle_config("fetal_head_sam", ["train.json"], overrides)
    parser.get_parsed_content("initialize")
    trainer = parser.get_parsed_content("train#trainer")
    seconds: list[float] = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda _: seconds.append(-time.perf_counter()))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: seconds.__setitem__(-1, seconds[-1] + time.perf_counter()))
    for handler in parser.get_parsed_content("train#handlers"):  # after the timers: validation is not timed
        handler.attach(trainer)
    trainer.run()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        cache = str(Path(work) / "embedding_cache")
        in_fresh_process(epoch_seconds, str(args.data), str(Path(work) / "warm"), cache, 1, 0)  # fills the embedding cache
        for cache_items in (0, 1000):
            seconds = in_fresh_process(epoch_seconds, str(args.data), str(Path(work) / f"items{cache_items}"), cache, args.epochs, cache_items)
            later = seconds[1:]
            rows.append({"variant_cache_items": cache_items, "epoch_s": seconds, "later_epoch_mean_s": sum(later) / len(later)})
            print(json.dumps(rows[-1]), flush=True)
    result = {
        "what": "seconds per SAM fine-tuning epoch, train.json defaults, 5 shots x 8 augmentation variants (40 items, batch 8), embeddings cached beforehand",
        "rows": rows,
        "speed_up_later_epochs": rows[0]["later_epoch_mean_s"] / rows[1]["later_epoch_mean_s"],
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        **cpu_description(),
        "torch": torch.__version__,
    }
    write_json_atomic(args.out, result)


if __name__ == "__main__":
    main()
