"""Stages that run once: a done-marker (JSON, written atomically) per stage lets a rerun skip them."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from monai_fetal.atomic import write_json_atomic

__all__ = ["StageResult", "Stages"]

MARKERS_DIR = ".stages"


@dataclass(frozen=True)
class StageResult:
    """What a stage returned (JSON-able), its seconds when it ran, and whether this call skipped it."""

    value: object
    seconds: float
    skipped: bool


class Stages:
    """Run named stages under ``root``, each at most once; markers live in ``root/.stages/<name>.json``.

    Args:
        root: the run folder.
        logger: where the one line per stage goes (name, seconds, or that it was skipped).
    """

    def __init__(self, root: str | Path, logger: logging.Logger | None = None) -> None:
        self.root = Path(root)
        self.logger = logger or logging.getLogger(__name__)
        self.results: dict[str, StageResult] = {}

    def marker(self, name: str) -> Path:
        """The done-marker of stage ``name``."""
        return self.root / MARKERS_DIR / f"{name.replace('/', '__')}.json"

    def done(self, name: str) -> bool:
        """Whether stage ``name`` finished in this or an earlier run."""
        return self.marker(name).is_file()

    def run(self, name: str, work: Callable[[], object]) -> StageResult:
        """Run ``work`` unless stage ``name`` is done; return its (stored) value and seconds.

        ``work``'s return value must be JSON-able: it is stored in the marker and returned on a rerun.
        A stage that raises writes no marker, so the next run does it again.
        """
        marker = self.marker(name)
        if marker.is_file():
            record = json.loads(marker.read_text())
            result = StageResult(record["value"], float(record["seconds"]), True)
            self.logger.info("stage %s: done before (%.1f s), skipped", name, result.seconds)
        else:
            self.logger.info("stage %s: started", name)
            start = time.perf_counter()
            value = work()
            seconds = time.perf_counter() - start
            write_json_atomic(marker, {"stage": name, "seconds": round(seconds, 2), "value": value})
            result = StageResult(value, seconds, False)
            self.logger.info("stage %s: done in %.1f s", name, seconds)
        self.results[name] = result
        return result
