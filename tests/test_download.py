"""HC18 download helper against local ``file://`` archives built by the tests (no network)."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from monai_fetal.data.cohort import find_cases
from monai_fetal.data.download import HC18_CSV_NAME, download_hc18
from monai_fetal.data.io import write_png
from monai_fetal.data.prepare import prepare_cohort
from monai_fetal.errors import InputDataError
from monai_fetal.shape.ellipse import Ellipse, ellipse_to_mask

CSV_HEADER = "filename,pixel size(mm),head circumference (mm)\n"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _zip_folder(folder: Path, archive: Path, base: str = "training_set") -> Path:
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr(f"{base}/", "")
        for path in sorted(folder.iterdir()):
            handle.write(path, f"{base}/{path.name}")
    return archive


@pytest.fixture()
def mirror(tmp_path: Path) -> dict:
    """A small HC18-like mirror: ``training_set.zip`` (3 synthetic pairs, 2 patients) and the CSV."""
    files = tmp_path / "files"
    files.mkdir()
    rng = np.random.default_rng(0)
    for i, name in enumerate(("001_HC", "002_HC", "002_2HC")):
        filled = ellipse_to_mask(Ellipse(60 + 5 * i, 50, 35, 25, 0.2 * i), (100, 130))
        outline = filled & ~np.pad(filled, 1)[2:, 1:-1]
        write_png(files / f"{name}.png", rng.integers(0, 255, (100, 130), dtype=np.uint8))
        write_png(files / f"{name}_Annotation.png", outline.astype(np.uint8) * 255)
    archive = _zip_folder(files, tmp_path / "training_set.zip")
    table = tmp_path / HC18_CSV_NAME
    table.write_text(CSV_HEADER + "001_HC.png,0.1,20.5\n002_HC.png,0.2,41.0\n002_2HC.png,0.2,40.0\n")
    return {
        "url": archive.as_uri(),
        "csv_url": table.as_uri(),
        "md5": _md5(archive),
        "csv_md5": _md5(table),
        "archive": archive,
        "table": table,
        "root": tmp_path / "hc18",
    }


def _sources(mirror: dict) -> dict:
    return {key: mirror[key] for key in ("url", "csv_url", "md5", "csv_md5")}


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_download_extracts_the_hc18_layout(mirror: dict) -> None:
    root = mirror.pop("root")
    folder = download_hc18(root, progress=False, **_sources(mirror))
    assert folder == root / "training_set"
    assert _leftovers(root) == ["training_set"]
    cases = find_cases(folder)
    assert [(c.id, c.patient, c.spacing, c.hc_mm) for c in cases] == [
        ("001_HC", "001", 0.1, 20.5),
        ("002_2HC", "002", 0.2, 40.0),
        ("002_HC", "002", 0.2, 41.0),
    ]
    datalist = prepare_cohort(folder, root / "cohort", progress=False)
    assert datalist.is_file() and len(list((root / "cohort" / "masks").glob("*.png"))) == 3


def test_complete_download_is_not_fetched_again(mirror: dict) -> None:
    args = _sources(mirror)
    folder = download_hc18(mirror["root"], progress=False, keep_archive=True, **args)
    assert (mirror["root"] / "training_set.zip").is_file()
    stamp = (folder / "001_HC.png").stat().st_mtime_ns
    mirror["archive"].unlink()
    mirror["table"].unlink()
    assert download_hc18(mirror["root"], progress=False, **args) == folder
    assert (folder / "001_HC.png").stat().st_mtime_ns == stamp


def test_wrong_archive_md5_keeps_nothing(mirror: dict) -> None:
    with pytest.raises(InputDataError, match=r"training_set\.zip.*md5 0{32}.*Fix: run again") as info:
        download_hc18(mirror["root"], mirror["url"], mirror["csv_url"], "0" * 32, mirror["csv_md5"], progress=False)
    assert info.value.path == mirror["root"] / "training_set.zip"
    assert _leftovers(mirror["root"]) == []


def test_wrong_csv_md5_leaves_no_partial_folder_and_recovers(mirror: dict) -> None:
    with pytest.raises(InputDataError, match=HC18_CSV_NAME):
        download_hc18(mirror["root"], mirror["url"], mirror["csv_url"], mirror["md5"], "f" * 32, progress=False)
    assert _leftovers(mirror["root"]) == ["training_set.zip"]  # the verified archive is kept for the next run
    mirror["archive"].unlink()
    folder = download_hc18(mirror["root"], progress=False, **_sources(mirror))
    assert len(find_cases(folder)) == 3 and _leftovers(mirror["root"]) == ["training_set"]


def test_existing_archive_with_wrong_md5_is_named(mirror: dict) -> None:
    mirror["root"].mkdir()
    (mirror["root"] / "training_set.zip").write_bytes(b"not the archive")
    with pytest.raises(InputDataError, match="already there.*delete it"):
        download_hc18(mirror["root"], progress=False, **_sources(mirror))


@pytest.mark.filterwarnings("ignore:No hash value")
def test_bad_sources_are_reported(mirror: dict, tmp_path: Path) -> None:
    root = mirror["root"]
    missing = (tmp_path / "nowhere.zip").as_uri()
    with pytest.raises(InputDataError, match="cannot be downloaded from file://"):
        download_hc18(root, missing, mirror["csv_url"], None, mirror["csv_md5"], progress=False)
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "readme.txt").write_text("no folder")
    wrong = _zip_folder(flat, tmp_path / "other.zip", base="something_else")
    with pytest.raises(InputDataError, match="no 'training_set/' folder"):
        download_hc18(root, wrong.as_uri(), mirror["csv_url"], None, mirror["csv_md5"], progress=False)
    assert "training_set" not in _leftovers(root) and ".training_set.partial" not in _leftovers(root)
    shutil.rmtree(root)
    (root / "training_set").mkdir(parents=True)
    with pytest.raises(InputDataError, match="not a complete HC18 download"):
        download_hc18(root, mirror["url"], mirror["csv_url"], mirror["md5"], mirror["csv_md5"], progress=False)


def test_real_hc18_files_and_the_published_csv_md5(hc18_subset: Path, tmp_path: Path) -> None:
    """A mirror of three real HC18 pairs and the published CSV passes the default CSV checksum."""
    files = tmp_path / "files"
    files.mkdir()
    for name in ("773_HC", "773_2HC", "000_HC"):
        shutil.copy(hc18_subset / "images" / f"{name}.png", files)
        shutil.copy(hc18_subset / "annotations" / f"{name}_Annotation.png", files)
    archive = _zip_folder(files, tmp_path / "training_set.zip")
    csv_url = (hc18_subset / HC18_CSV_NAME).as_uri()
    folder = download_hc18(tmp_path / "hc18", archive.as_uri(), csv_url, md5=_md5(archive), progress=False)
    cases = {c.id: c for c in find_cases(folder)}
    assert sorted(cases) == ["000_HC", "773_2HC", "773_HC"]
    assert cases["000_HC"].hc_mm == 44.3 and cases["773_HC"].patient == cases["773_2HC"].patient == "773"
