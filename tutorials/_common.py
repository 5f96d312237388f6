"""Helpers shared by the tutorials: command-line options and where the example data comes from."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HC18_SUBSET = SHARED_DATA / "hc18_subset"


def tutorial_options(description: str, default_out: str) -> argparse.Namespace:
    """``--out`` (the tutorial's output folder) and ``--quick`` (small sizes, a minute or two on a CPU)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default=str(Path("tutorial_output") / default_out), help="output folder")
    parser.add_argument("--quick", action="store_true", help="small sizes: phantom data, few steps")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def hc18_available() -> bool:
    """Whether the HC18 subset is beside the checkout (``../shared/data/hc18_subset``)."""
    return (HC18_SUBSET / "images").is_dir()
