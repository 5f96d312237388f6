"""The latent-bound benchmark's row (benchmarks/synth_x0_clip.py) from a synth-report, without a model."""

from __future__ import annotations

import pytest


def test_a_report_becomes_a_row_with_the_floor_multiple_margin_and_memorisation(repo_script) -> None:
    script = repo_script("benchmarks/synth_x0_clip.py")
    report = {
        "feature_distance": {"fid": 0.0347},
        "feature_distance_real_halves": {"fid": 0.0130},
        "synthetic": {"pair_consistency": {"mean": 0.918}, "pair_consistency_shuffled": {"mean": 0.852}},
    }
    row = script.row(report, 3.0, 61.24)
    assert row["fid_over_floor"] == 2.67 and row["margin_over_shuffled"] == pytest.approx(0.066)
    assert row["x0_clip"] == 3.0 and row["synthesize_wall_s"] == 61.2 and "near_copies" not in row
    report["memorisation"] = {"near_copies": 1, "per_image": {"a": {"similarity": 0.71}, "b": {"similarity": 0.83}}}
    row = script.row(report, 0.0, 1.0)
    assert row["near_copies"] == 1 and row["nearest_training_image_similarity_max"] == 0.83
