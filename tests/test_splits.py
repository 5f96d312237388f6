"""Seeded k-shot splits by patient: disjoint patients, determinism, nesting, errors, split files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from monai.data import load_decathlon_datalist

from monai_fetal.data.cohort import find_cases
from monai_fetal.data.splits import kshot_split, split_path, write_split
from monai_fetal.errors import ConfigError, InputDataError

SIDES = ("training", "validation", "test")


@pytest.fixture(scope="module")
def hc18_items(hc18_subset: Path) -> list[dict]:
    """Datalist-like items of the 60 real HC18 names (57 patients; 773 has 3 images, 796 has 2)."""
    return [{"id": case.id, "patient": case.patient} for case in find_cases(hc18_subset)]


def _ids(split: dict, side: str) -> list[str]:
    return [item["id"] for item in split[side]]


def _patients(split: dict, side: str) -> set[str]:
    return {item["patient"] for item in split[side]}


def test_patients_never_cross_sides(hc18_items: list[dict]) -> None:
    assert {"773_HC", "773_2HC", "773_3HC"} <= {item["id"] for item in hc18_items}
    for seed in range(20):
        for shots in (1, 5, 20):
            split = kshot_split(hc18_items, shots, seed, val=5)
            assert [len(split[s]) for s in SIDES[:2]] == [shots, 5]
            assert len(_patients(split, "training")) == shots
            for i, a in enumerate(SIDES):
                for b in SIDES[i + 1 :]:
                    assert not _patients(split, a) & _patients(split, b), (seed, shots, a, b)
            used = sum(len(split[s]) for s in SIDES)
            assert used <= 60 and len({i for s in SIDES for i in _ids(split, s)}) == used


def test_multi_image_patients_stay_together(hc18_items: list[dict]) -> None:
    """Over many seeds patient 773 lands on every side, always whole (test) or with one image (training)."""
    seen = set()
    for seed in range(60):
        split = kshot_split(hc18_items, 20, seed, val=5)
        for side in SIDES:
            ids = [i for i in _ids(split, side) if i.startswith("773_")]
            if ids:
                seen.add(side)
                expected = {"training": {1}, "validation": {1, 2, 3}, "test": {3}}[side]
                assert len(ids) in expected, (seed, side, ids)
    assert seen == set(SIDES)


def test_split_is_deterministic_and_independent_of_item_order(hc18_items: list[dict]) -> None:
    first = kshot_split(hc18_items, 5, seed=3)
    assert kshot_split(list(reversed(hc18_items)), 5, seed=3) == first
    assert _ids(kshot_split(hc18_items, 5, seed=4), "training") != _ids(first, "training")


def test_training_sets_are_nested_and_evaluation_sets_fixed(hc18_items: list[dict]) -> None:
    for seed in range(5):
        previous = None
        for shots in range(0, 41):
            split = kshot_split(hc18_items, shots, seed, val=5, test=10)
            if previous is not None:
                assert _ids(split, "training")[:-1] == _ids(previous, "training")
                assert _ids(split, "validation") == _ids(previous, "validation")
                assert _ids(split, "test") == _ids(previous, "test")
            previous = split
        assert len(previous["test"]) == 10
        open_test = [kshot_split(hc18_items, k, seed, val=5) for k in (1, 2, 3)]
        assert all(set(_ids(a, "training")) < set(_ids(b, "training")) for a, b in zip(open_test, open_test[1:]))


def test_errors_say_what_the_cohort_allows(hc18_items: list[dict]) -> None:
    with pytest.raises(ConfigError, match="at most 51 .* 57 patients"):
        kshot_split(hc18_items, 52, 0, val=5)
    assert len(kshot_split(hc18_items, 51, 0, val=5)["test"]) >= 1
    with pytest.raises(ConfigError, match="'val'.*at most 60"):
        kshot_split(hc18_items, 1, 0, val=61)
    with pytest.raises(ConfigError, match="'test'"):
        kshot_split(hc18_items, 1, 0, val=5, test=56)
    with pytest.raises(ConfigError, match="'shots'"):
        kshot_split(hc18_items, 50, 0, val=5, test=10)
    for bad in (-1, 2.0, True, "3"):
        with pytest.raises(ConfigError, match="'shots'"):
            kshot_split(hc18_items, bad, 0)
    with pytest.raises(ConfigError, match="'seed'"):
        kshot_split(hc18_items, 1, "0")


def test_items_need_unique_ids_and_patients_default_to_the_name() -> None:
    with pytest.raises(ConfigError, match="id"):
        kshot_split([{"id": "001_HC"}, {"id": "001_HC"}, {"id": "002_HC"}], 1, 0, val=1)
    with pytest.raises(ConfigError, match=r"items\[1\]"):
        kshot_split([{"id": "001_HC"}, {"image": "x.png"}], 1, 0, val=1)
    items = [{"id": name} for name in ("010_HC", "010_2HC", "011_HC", "012_HC")]
    split = kshot_split(items, 1, 0, val=1)
    sides = {item["id"]: side for side in SIDES for item in split[side]}
    assert len({sides[i] for i in ("010_HC", "010_2HC") if i in sides}) == 1


def test_write_split_reads_with_monai(hc18_cohort: Path) -> None:
    path = write_split(hc18_cohort, 5, 1, val=5, test=10)
    assert path == split_path(hc18_cohort, 5, 1) == hc18_cohort / "splits" / "shots5_seed1.json"
    content = json.loads(path.read_text())
    assert content["split"] == {"cohort": "hc18_subset", "shots": 5, "seed": 1, "val": 5, "test": 10}
    assert content["training"][0]["image"].startswith("images/")
    loaded = {side: load_decathlon_datalist(path, data_list_key=side, base_dir=hc18_cohort) for side in SIDES}
    assert [len(loaded[s]) for s in SIDES] == [5, 5, 10]
    assert all(Path(item["image"]).is_file() and Path(item["label"]).is_file() for s in SIDES for item in loaded[s])
    before = path.read_bytes()
    elsewhere = write_split(hc18_cohort, 5, 1, val=5, test=10, out=hc18_cohort.parent / "run" / "split.json")
    assert elsewhere.read_bytes() == before
    assert not list(path.parent.glob(".*"))


def test_write_split_needs_a_prepared_cohort(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="datalist.json.*prepare"):
        write_split(tmp_path, 1, 0)
    (tmp_path / "datalist.json").write_text("[1, 2]")
    with pytest.raises(InputDataError, match="training"):
        write_split(tmp_path, 1, 0)
