"""Each tutorial runs top to bottom in quick mode (a subprocess, as a reader would run it) and writes its outputs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"


def _run(script: str, out: Path) -> str:
    env = {**os.environ, "MPLBACKEND": "Agg"}  # the test worker's share of the cores (tests/conftest.py)
    done = subprocess.run(
        [sys.executable, str(TUTORIALS / script), "--quick", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_tutorial_1_segments_and_measures(tmp_path: Path, shared_data: Path) -> None:
    """On the HC18 images (the tutorial falls back to phantoms without them; the HC bound below is HC18's)."""
    _run("01_segment_and_measure.py", tmp_path)
    with (tmp_path / "biometry.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["image"] for row in rows] == ["000_HC.png", "001_HC.png"]
    for row in rows:
        assert (tmp_path / "masks_box" / row["image"].replace(".png", "_mask.png")).is_file()
        assert (tmp_path / "masks_auto" / row["image"].replace(".png", "_mask.png")).is_file()
        # a wrong unit or pixel size is off by far more. Measured 5 December on HC18 000_HC and 001_HC (published
        # 44.3 and 56.8 mm): 38.7 and 53.9 mm, 13 and 5 % (zero-shot box Dice is guarded on 20 images elsewhere)
        assert float(row["hc_mm_box"]) == pytest.approx(float(row["reference_hc_mm"]), rel=0.15)
    assert (tmp_path / "masks_box.png").stat().st_size > 5000


@pytest.mark.slow
def test_tutorial_2_trains_synthesises_and_reports(tmp_path: Path) -> None:
    _run("02_generate_pairs.py", tmp_path)
    assert (tmp_path / "generator" / "model.pt").is_file()
    assert len(json.loads((tmp_path / "synthetic" / "datalist.json").read_text())["training"]) == 4
    report = json.loads((tmp_path / "report" / "synth_report.json").read_text())
    # measured (12 phantoms, 4 generator iterations): FID 0.363 against a real-halves floor of 0.051; pair
    # consistency 0.919 on the real pairs and 0.770 on the synthetic ones (a 4-iteration generator barely follows masks)
    fid, floor = report["feature_distance"]["fid"], report["feature_distance_real_halves"]["fid"]
    assert 2 * floor < fid <= 0.5
    assert report["real"]["pair_consistency"]["mean"] >= 0.88
    assert report["synthetic"]["pair_consistency"]["mean"] >= 0.65
    assert (tmp_path / "report" / "synth_grid.png").is_file()


@pytest.mark.slow
def test_tutorial_3_runs_the_study(tmp_path: Path) -> None:
    stdout = _run("03_few_shot_study.py", tmp_path)
    with (tmp_path / "study" / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {(int(r["shots"]), int(r["synthetic"])) for r in rows} == {(1, 0), (1, 4), (2, 0), (2, 4)}
    assert all(int(r["n"]) == 3 for r in rows)
    # measured: Dice 0.9161-0.9165 and HC error 5.38-5.41 mm in every row (3 phantom test images, box prompt)
    assert all(float(r["dice_mean"]) >= 0.90 and float(r["hc_abs_error_mm_mean"]) <= 6.5 for r in rows)
    assert (tmp_path / "study" / "dice_vs_shots.png").stat().st_size > 5000
    assert "dice_vs_shots.png" in stdout
