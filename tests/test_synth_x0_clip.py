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
    row = script.row(report, 61.24, x0_clip=3.0)
    assert row["fid_over_floor"] == 2.67 and row["margin_over_shuffled"] == pytest.approx(0.066)
    assert row["x0_clip"] == 3.0 and row["synthesize_wall_s"] == 61.2 and "near_copies" not in row and "by_head_size" not in row
    report["memorisation"] = {"near_copies": 1, "per_image": {"a": {"similarity": 0.71}, "b": {"similarity": 0.83}}}
    bins = [{"head_area": [0.0, 0.12], "real": {"count": 2, "mean": 0.91234}, "synthetic": {"count": 0, "mean": None}}]
    report["pair_consistency_by_head_size"] = {"bins": bins, "real_at_synthetic_head_sizes": 0.94406}
    row = script.row(report, 1.0, x0_clip=0.0)
    assert row["near_copies"] == 1 and row["nearest_training_image_similarity_max"] == 0.83
    assert row["real_at_synthetic_head_sizes"] == 0.9441 and row["by_head_size"] == [{"head_area": [0.0, 0.12], "real": [2, 0.9123], "synthetic": [0, None]}]
