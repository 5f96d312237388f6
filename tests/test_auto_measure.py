"""The no-box benchmark's protocol reading and summary (benchmarks/auto_measure.py), without a model."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def auto_measure(repo_script):
    return repo_script("benchmarks/auto_measure.py")


def test_protocol_test_items_carry_published_hc_and_the_pool_no_annotations(auto_measure, shared_data):
    from monai_fetal.data.unlabelled import unlabelled_items

    test = auto_measure.protocol_items(shared_data, None)
    pool = unlabelled_items(shared_data / "hc18_train", shared_data / "benchmark_protocol.json")  # what self-training reads
    protocol = json.loads((shared_data / "benchmark_protocol.json").read_text())
    assert len(test) == len(protocol["test"]["images"]) == 213 and len(pool) == 219
    assert not {t["id"] for t in test} & {p["id"] for p in pool}
    assert all("label" not in item for item in pool)  # the pool's annotations are never read
    first = test[0]
    assert Path(first["label"]).is_file() and first["label"].endswith("_Annotation.png")
    assert 50 < first["hc_mm"] < 400 and 0.05 < first["spacing"] < 0.4
    assert len(auto_measure.protocol_items(shared_data, 5)) == 5


def test_summary_counts_failures_that_the_flag_misses(auto_measure):
    rows = [
        {"dice": 0.97, "dice_ellipse": 0.98, "dice_written": 0.98, "hd95": 2.0, "hc_error_mm": 1.0, "hc_error_snapped_mm": 0.5, "quality": 0.95, "seconds": 0.2},
        {"dice": 0.50, "dice_ellipse": 0.40, "dice_written": 0.45, "hd95": 40.0, "hc_error_mm": 30.0, "hc_error_snapped_mm": 29.0, "quality": 0.60, "seconds": 0.2},  # failure, flagged
        {"dice": 0.85, "dice_ellipse": 0.86, "dice_written": 0.91, "hd95": 9.0, "hc_error_mm": 8.0, "hc_error_snapped_mm": 7.0, "quality": 0.93, "seconds": 0.2},  # failure, missed
        {"dice": 0.95, "dice_ellipse": 0.96, "dice_written": 0.96, "hd95": 3.0, "hc_error_mm": 2.0, "hc_error_snapped_mm": 1.0, "quality": 0.80, "seconds": 0.2},  # flagged needlessly
    ]
    summary = auto_measure.summarise(rows, flag_quality=0.9)
    assert summary["flagged"] == 2 and summary["unflagged_failures"] == 1
    assert summary["share_dice_below_090"] == pytest.approx(0.5)
    assert summary["share_unflagged_failures"] == pytest.approx(0.25)
    assert summary["dice_flagged"] == pytest.approx(0.725) and summary["dice_unflagged"] == pytest.approx(0.91)
    assert summary["hc_error_mm_mean"] == pytest.approx(10.25) and summary["dice_min"] == pytest.approx(0.5)
    assert summary["dice_ellipse_mean"] == pytest.approx(0.80)
    # the written masks (every head its snapped ellipse): row 3's ellipse is no failure; 0.4.9 wrote flagged heads as predicted
    assert summary["written_dice_mean"] == pytest.approx(0.825) and summary["written_dice_min"] == pytest.approx(0.45)
    assert summary["written_share_dice_below_090"] == pytest.approx(0.25) and summary["written_unflagged_failures"] == 0
    assert summary["written_dice_flagged"] == pytest.approx(0.705) and summary["written_dice_unflagged"] == pytest.approx(0.945)
    assert summary["written_trusted_only_dice_mean"] == pytest.approx((0.98 + 0.50 + 0.91 + 0.95) / 4)
    # segment measures the snapped ellipses; the unflagged ones are rows 1 and 3
    assert summary["hc_error_snapped_mm_mean"] == pytest.approx(9.375)
    assert summary["hc_error_unflagged_mm_mean"] == pytest.approx(4.5) and summary["hc_error_snapped_unflagged_mm_mean"] == pytest.approx(3.75)
    # the other thresholds' trade-off: [flagged, unflagged failures]; 0.94 catches the missed failure at 0.93
    assert summary["flagged_and_unflagged_failures_by_threshold"]["0.93"] == [2, 1]
    assert summary["flagged_and_unflagged_failures_by_threshold"]["0.94"] == [3, 0]
    rows[2]["searched"] = True  # the automatic prompt searched this head: flagged below the higher threshold, as segment does
    searched = auto_measure.summarise(rows, flag_quality=0.9, searched_quality=0.94)
    assert searched["flagged"] == 3 and searched["unflagged_failures"] == 0 and searched["searched"] == 1
    assert searched["flagged_and_unflagged_failures_by_threshold"]["0.93"] == [3, 0]
    assert auto_measure.summarise(rows, flag_quality=0.9, searched_quality=0.92)["flagged"] == 2  # 0.93 passes 0.92


def test_reflag_summarises_stored_rows_again_without_a_network(auto_measure, tmp_path, monkeypatch):
    per_image = [
        {"dice": 0.97, "dice_ellipse": 0.98, "dice_written": 0.98, "hd95": 2.0, "hc_error_mm": 1.0, "hc_error_snapped_mm": 0.5, "quality": 0.93, "seconds": 0.2, "searched": True},
        {"dice": 0.85, "dice_ellipse": 0.86, "dice_written": 0.88, "hd95": 9.0, "hc_error_mm": 8.0, "hc_error_snapped_mm": 7.0, "quality": 0.95, "seconds": 0.2, "searched": False},
    ]
    row = {"shots": 5, "seed": 0, "unlabelled": False, "synthetic": 0, "auto": {"per_image": per_image}, "gt_box": {"per_image": per_image}}
    stored = tmp_path / "old.json"
    stored.write_text(json.dumps({"rows": [row], "flag_criterion": "old"}))
    argv = ["auto_measure.py", "--reflag", str(stored), "--flag-quality", "0.92", "--flag-searched-quality", "0.94", "--flag-boxed-quality", "0.96"]
    monkeypatch.setattr(sys, "argv", argv + ["--out", str(tmp_path / "new.json")])
    auto_measure.main()
    new = json.loads((tmp_path / "new.json").read_text())
    summary, boxed = new["rows"][0]["auto"]["summary"], new["rows"][0]["gt_box"]["summary"]
    assert new["reflagged_from"] == "old" and "0.94" in new["flag_criterion"] and "0.96" in new["flag_criterion"]
    assert summary["flagged"] == 1 and summary["unflagged_failures"] == 1 and summary["searched"] == 1
    assert boxed["flagged"] == 2 and boxed["unflagged_failures"] == 0  # the ground-truth box's heads: below 0.96
    assert new["rows"][0]["auto"]["per_image"] == per_image


def test_rescore_gt_box_replaces_only_the_ground_truth_box_results_of_each_row(auto_measure, tmp_path, monkeypatch):
    rows = [
        {"shots": shots, "seed": 0, "unlabelled": False, "synthetic": 0, "auto": {"summary": {"images": 2}, "per_image": ["kept"]}, "gt_box": {"per_image": ["old"]}}
        for shots in (0, 5)
    ]
    stored = tmp_path / "old.json"
    stored.write_text(json.dumps({"rows": rows, "test_images": 2}))
    scored = []
    monkeypatch.setattr(auto_measure, "protocol_items", lambda data, count: [{"id": f"{i:03d}_HC"} for i in range(count)])
    monkeypatch.setattr(auto_measure, "row_scorer", lambda args, shots, seed, unlabelled, synthetic: (tmp_path, f"model k{shots}"))
    monkeypatch.setattr(auto_measure, "score", lambda scorer, items, prompt, *flags: scored.append((scorer, len(items), prompt)) or {"summary": {"dice_mean": 0.9, "hc_error_snapped_mm_mean": 2.0}, "per_image": ["new"]})
    monkeypatch.setattr(sys, "argv", ["auto_measure.py", "--rescore-gt-box", str(stored), "--out", str(tmp_path / "new.json")])
    auto_measure.main()
    new = json.loads((tmp_path / "new.json").read_text())
    assert scored == [("model k0", 2, "gt_box"), ("model k5", 2, "gt_box")]
    assert [row["gt_box"]["per_image"] for row in new["rows"]] == [["new"], ["new"]]
    assert [row["auto"]["per_image"] for row in new["rows"]] == [["kept"], ["kept"]]
    assert new["gt_box_rescored_from"] == str(stored)


def test_per_image_rows_are_stored_rounded_and_keep_their_other_values(auto_measure):
    row = {"id": "001_HC", "dice": 0.931432843208313, "hd95": math.nan, "searched": True, "images": 3}
    stored = auto_measure.rounded(row)
    assert stored["dice"] == 0.93143 and math.isnan(stored["hd95"])
    assert (stored["id"], stored["searched"], stored["images"]) == ("001_HC", True, 3)


def test_a_rerun_skips_only_rows_of_the_same_effort(auto_measure):
    """A row from before ``--effort`` ran the full path; a fast row with the same model is another row, not a done one."""
    row = {"shots": 5, "seed": 0, "unlabelled": False, "synthetic": 0, "auto": {"summary": {"images": 213}}}
    done = auto_measure.done_rows({"rows": [row, {**row, "seed": 1, "effort": "fast"}]})
    assert done == {(5, 0, False, 0, 213, "full"), (5, 1, False, 0, 213, "fast")}
