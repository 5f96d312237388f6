"""Shared fixtures: the real HC18 data beside the checkout, prepared cohorts, a tiny phantom cohort."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One folder of converted encoders (OpenVINO, int8) for the session and its subprocesses, not ``~/.cache``."""
    path = tmp_path_factory.mktemp("model_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MONAI_FETAL_CACHE", str(path))
        yield path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; skips the test when it is absent."""
    if not (SHARED_DATA / "hc18_subset" / "images").is_dir():
        pytest.skip(f"real HC18 data not found at {SHARED_DATA} (expected ../shared/data beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def hc18_subset(shared_data: Path) -> Path:
    """The 60-image HC18 folder as published (``images/``, ``annotations/``, CSV)."""
    return shared_data / "hc18_subset"


@pytest.fixture(scope="session")
def hc18_cohort(hc18_subset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``hc18_subset`` prepared once per session as a cohort folder (filled masks, spacing, datalist)."""
    from monai_fetal.data.prepare import prepare_cohort

    out = tmp_path_factory.mktemp("cohorts") / "hc18_subset"
    prepare_cohort(hc18_subset, out, progress=False)
    return out
