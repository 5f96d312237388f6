"""The protocol's table and figure from auto_measure.py results (benchmarks/protocol_table.py), without a model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def protocol_table(repo_script):
    return repo_script("benchmarks/protocol_table.py")


def _row(shots: int, seed: int, synthetic: int, written: list[float], snapped: list[float], unflagged: int = 0, effort: str | None = None) -> dict:
    """A results row whose first image is flagged."""
    summary = {
        "images": len(written),
        "written_dice_mean": sum(written) / len(written),
        "written_dice_min": min(written),
        "hc_error_snapped_mm_mean": sum(snapped) / len(snapped),
        "written_share_dice_below_090": sum(dice < 0.90 for dice in written) / len(written),
        "flagged": 1,
        "written_unflagged_failures": unflagged,
        "written_dice_flagged": written[0],
        "written_dice_unflagged": sum(written[1:]) / len(written[1:]) if written[1:] else None,
        "hc_error_snapped_unflagged_mm_mean": sum(snapped[1:]) / len(snapped[1:]) if snapped[1:] else None,
    }
    row = {"shots": shots, "seed": seed, "unlabelled": False, "synthetic": synthetic}
    row.update({prompt: {"summary": summary} for prompt in ("auto", "gt_box")})
    return row | ({"effort": effort} if effort else {})


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text(json.dumps({"rows": rows}))
    return path


def test_table_means_seeds_of_the_newest_rows_and_pairs_synthetic_rows_by_seed(protocol_table, tmp_path, monkeypatch):
    old = _write(tmp_path / "old.json", [_row(5, 0, 0, [0.5, 0.5], [9.0, 9.0]), _row(5, 1, 0, [0.96, 0.80], [2.0, 6.0], unflagged=1)])
    new = _write(
        tmp_path / "new.json",
        [
            _row(5, 0, 0, [0.98, 0.94], [1.0, 3.0]),  # replaces the old seed-0 row
            _row(5, 0, 20, [0.99, 0.97], [1.0, 2.0]),
            _row(5, 1, 0, [0.1, 0.1], [50.0, 50.0], effort="fast"),  # another effort: not read
        ],
    )
    out = tmp_path / "table.json"
    argv = ["protocol_table.py", str(old), str(new), "--out", str(out), "--markdown", str(tmp_path / "t.md"), "--figure", str(tmp_path / "f.png")]
    monkeypatch.setattr(sys, "argv", argv)
    protocol_table.main()
    result = json.loads(out.read_text())
    real = next(s for s in result["settings"] if (s["shots"], s["synthetic"], s["prompt"]) == (5, 0, "auto"))
    assert real["seeds"] == [0, 1]
    assert real["dice_mean_per_seed"] == pytest.approx([0.96, 0.88]) and real["dice_mean"] == pytest.approx(0.92)
    assert real["hc_error_mm_per_seed"] == pytest.approx([2.0, 4.0]) and real["hc_error_mm"] == pytest.approx(3.0)
    assert real["dice_min"] == pytest.approx(0.80) and real["share_below_090"] == pytest.approx(0.25)
    assert real["unflagged_failures"] == [0, 1]
    assert real["flagged_share"] == pytest.approx(0.5)
    assert real["dice_flagged"] == pytest.approx(0.97) and real["dice_unflagged"] == pytest.approx(0.87)
    assert real["hc_error_unflagged_mm"] == pytest.approx(4.5)
    (effect,) = result["synthetic_effects"]  # seed 1 has no synthetic row: nothing to pair
    assert (effect["seed"], effect["synthetic"]) == (0, 20)
    assert effect["auto"]["dice_change"] == pytest.approx(0.02)
    assert effect["auto"]["hc_error_mm"] == pytest.approx([2.0, 1.5]) and effect["auto"]["hc_error_change_share"] == pytest.approx(-0.25)
    table = (tmp_path / "t.md").read_text()
    assert "**0.9200** (0.9600, 0.8800)" in table and "2.00 -> 1.50 (-25 %)" in table
    assert "| 5 | no | 0 | no box | 50.0 % | 0.9700 | 0.8700 | 4.50 | 3.00 |" in table
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_flag_split_pools_the_seeds_images_and_leaves_a_side_with_no_image_empty(protocol_table):
    per_seed = [
        {"images": 4, "flagged": 1, "dice_flagged": 0.5, "dice_unflagged": 0.9, "hc_error_unflagged_mm": 2.0},
        {"images": 4, "flagged": 0, "dice_flagged": None, "dice_unflagged": 0.8, "hc_error_unflagged_mm": 4.0},
    ]
    split = protocol_table.flag_split(per_seed)
    assert split["flagged_share"] == pytest.approx(1 / 8)
    assert split["dice_flagged"] == pytest.approx(0.5)
    assert split["dice_unflagged"] == pytest.approx((3 * 0.9 + 4 * 0.8) / 7)
    assert split["hc_error_unflagged_mm"] == pytest.approx((3 * 2.0 + 4 * 4.0) / 7)
    nothing_flagged = [dict(values, flagged=0, dice_flagged=None) for values in per_seed]
    assert protocol_table.flag_split(nothing_flagged)["dice_flagged"] is None


def test_rows_of_different_test_sets_are_refused(protocol_table, tmp_path):
    first = _write(tmp_path / "a.json", [_row(5, 0, 0, [0.9, 0.9], [1.0, 1.0])])
    second = _write(tmp_path / "b.json", [_row(5, 1, 0, [0.9, 0.9, 0.9], [1.0, 1.0, 1.0])])
    with pytest.raises(SystemExit, match=r"different numbers of test images \[2, 3\]"):
        protocol_table.newest_rows([first, second], "full")


def test_size_bands_split_the_hc_error_by_published_hc_and_flag_with_segments_rule(protocol_table, tmp_path, monkeypatch):
    def image(name: str, error: float, quality: float, searched: bool = False) -> dict:
        return {"id": name, "hc_error_snapped_mm": error, "quality": quality, "searched": searched}

    per_image = [
        image("small", 8.0, 0.80),  # flagged
        image("mid_a", 2.0, 0.97),
        image("mid_b", 4.0, 0.925, searched=True),  # searched below 0.93: flagged
        image("large", 6.0, 0.95),
    ]
    rows = []
    for seed in (0, 1):
        row = _row(5, seed, 0, [0.9] * 4, [1.0] * 4)
        for prompt in ("auto", "gt_box"):
            row[prompt] = {"summary": row[prompt]["summary"], "per_image": per_image}
        rows.append(row)
    results = _write(tmp_path / "rows.json", rows)
    hc_csv = tmp_path / "hc.csv"
    hc_csv.write_text("filename,pixel size(mm),head circumference (mm)\nsmall.png,0.1,80.0\nmid_a.png,0.1,150.0\nmid_b.png,0.1,199.9\nlarge.png,0.2,300.0\n")
    out, md = tmp_path / "table.json", tmp_path / "t.md"
    monkeypatch.setattr(sys, "argv", ["protocol_table.py", str(results), "--out", str(out), "--markdown", str(md), "--hc-csv", str(hc_csv)])
    protocol_table.main()
    auto = json.loads(out.read_text())["hc_error_by_head_size"][0]
    assert (auto["prompt"], auto["seeds"]) == ("auto", 2)
    small, mid, between, large = auto["bands"]
    assert [band["images"] for band in auto["bands"]] == [2, 4, 0, 2]
    assert small == {"band": "< 120 mm", "images": 2, "flagged_share": 1.0, "hc_error_mm": 8.0, "hc_error_unflagged_mm": None}
    assert mid["flagged_share"] == pytest.approx(0.5) and mid["hc_error_mm"] == pytest.approx(3.0) and mid["hc_error_unflagged_mm"] == pytest.approx(2.0)
    assert between["hc_error_mm"] is None and large["band"] == ">= 260 mm"
    text = md.read_text()
    assert "test images per band: 1 / 2 / 0 / 1" in text
    assert "| 5 | no | 0 | no box | 8.00 / - (100 %) | 3.00 / 2.00 (50 %) | - / - (- %) | 6.00 / 6.00 (0 %) |" in text


def test_size_bands_name_the_image_without_a_published_hc(protocol_table):
    row = _row(5, 0, 0, [0.9], [1.0])
    for prompt in ("auto", "gt_box"):
        row[prompt]["per_image"] = [{"id": "unknown", "hc_error_snapped_mm": 1.0, "quality": 0.99, "searched": False}]
    with pytest.raises(SystemExit, match=r"no published HC for \['unknown'\]: give --hc-csv"):
        protocol_table.size_bands({(5, False, 0, 0): row}, {"other": 100.0})
