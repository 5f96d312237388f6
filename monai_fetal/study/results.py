"""The experiment's results table: one CSV row per run, test cohort and prompt; read back to resume."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path

from monai_fetal.atomic import write_text_atomic

__all__ = ["COLUMNS", "RunKey", "metrics_row", "read_results", "results_markdown", "row_key", "write_results"]

COLUMNS = (
    "shots",
    "synthetic",
    "seed",
    "cohort",
    "dice_mean",
    "hd95_mean",
    "hc_rel_error_mean",
    "prompt",
    "seconds",
    "hc_abs_error_mm_mean",
    "n",
)
_INTEGER = ("shots", "synthetic", "seed", "n")
_FLOAT = ("dice_mean", "hd95_mean", "hc_rel_error_mean", "seconds", "hc_abs_error_mm_mean")

RunKey = tuple[int, int, int, str, str]
"""``(shots, synthetic, seed, cohort, prompt)``: what identifies a row."""


def row_key(row: Mapping[str, object]) -> RunKey:
    """The identity of a results row."""
    return (int(row["shots"]), int(row["synthetic"]), int(row["seed"]), str(row["cohort"]), str(row["prompt"]))


def _parse(row: Mapping[str, str]) -> dict:
    parsed: dict = dict(row)
    for keys, kind in ((_INTEGER, int), (_FLOAT, float)):
        for key in keys:
            parsed[key] = kind(row[key]) if row.get(key) not in (None, "") else None
    return parsed


def read_results(path: str | Path) -> list[dict]:
    """Rows of a results CSV (numbers parsed; empty cells are None); no file gives no rows."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [_parse(row) for row in csv.DictReader(handle)]


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_results(path: str | Path, rows: Iterable[Mapping[str, object]]) -> Path:
    """Write ``rows`` (sorted by their key) as the results CSV, atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in sorted(rows, key=row_key):
        writer.writerow([_cell(row.get(column)) for column in COLUMNS])
    write_text_atomic(path, buffer.getvalue())
    return Path(path)


def metrics_row(key: RunKey, metrics: Mapping[str, object], seconds: float) -> dict:
    """A results row from an evaluation's ``metrics.json``."""
    shots, synthetic, seed, cohort, prompt = key
    return {
        "shots": shots,
        "synthetic": synthetic,
        "seed": seed,
        "cohort": cohort,
        "prompt": prompt,
        "dice_mean": metrics.get("dice_mean"),
        "hd95_mean": metrics.get("hd95_mean"),
        "hc_rel_error_mean": metrics.get("hc_rel_error_mean"),
        "hc_abs_error_mm_mean": metrics.get("hc_abs_error_mm_mean"),
        "n": metrics.get("n"),
        "seconds": round(seconds, 1),
    }


def _fmt(value: object, digits: int) -> str:
    return "–" if value is None else f"{float(value):.{digits}f}"


def results_markdown(rows: Iterable[Mapping[str, object]]) -> str:
    """The results as a Markdown table, one line per row, sorted by cohort, prompt, shots, synthetic, seed."""
    lines = [
        "| cohort | prompt | shots | synthetic | seed | Dice | HD95 (px) | HC rel. error | HC abs. error (mm) | images | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: (r["cohort"], r["prompt"], r["shots"], r["synthetic"], r["seed"])):
        lines.append(
            f"| {row['cohort']} | {row['prompt']} | {row['shots']} | {row['synthetic']} | {row['seed']} "
            f"| {_fmt(row.get('dice_mean'), 3)} | {_fmt(row.get('hd95_mean'), 1)} | {_fmt(row.get('hc_rel_error_mean'), 3)} "
            f"| {_fmt(row.get('hc_abs_error_mm_mean'), 2)} | {row.get('n', '')} | {_fmt(row.get('seconds'), 0)} |"
        )
    return "\n".join(lines) + "\n"
