"""Shared fixtures: the real HC18 data beside the checkout, prepared cohorts, a tiny phantom cohort.

Under ``CI=true`` the real data is required: the session stops at once, with the path it looked at,
when ``../shared/data`` is absent. Locally the real-data tests skip, and ``-rs`` prints why.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("MONAI_FETAL_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
"""``../shared/data`` beside the checkout (``MONAI_FETAL_SHARED_DATA`` points elsewhere, e.g. to test this check)."""
MISSING_DATA = f"real HC18 data not found at {SHARED_DATA} (expected ../shared/data beside the checkout)"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _data_present() -> bool:
    return (SHARED_DATA / "hc18_subset" / "images").is_dir()


_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")


def pytest_configure(config: pytest.Config) -> None:
    """The xdist workers (``-n 2`` in pyproject.toml) share the cores: each runs torch, and the processes its tests
    start, on its share of them (set before any test module imports torch)."""
    if _XDIST_WORKER:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        os.environ["OMP_NUM_THREADS"] = str(max(1, cores // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under ``CI=true`` a missing ``../shared/data`` ends the run as a failure, before any test."""
    if _in_ci() and not _data_present():
        pytest.exit(f"CI=true: {MISSING_DATA}; CI must run the real-data tests, so the run fails", returncode=pytest.ExitCode.TESTS_FAILED)


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One folder of converted encoders (OpenVINO, int8) for the session, its subprocesses and its other xdist
    workers (the conversion holds a lock: the first converts, the others wait), not ``~/.cache``."""
    base = tmp_path_factory.getbasetemp()
    path = (base.parent if _XDIST_WORKER else base) / "model_cache"
    path.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MONAI_FETAL_CACHE", str(path))
        yield path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; skips the test when it is absent."""
    if not _data_present():
        pytest.skip(MISSING_DATA)
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


@pytest.fixture(scope="session")
def repo_script() -> Callable[[str], ModuleType]:
    """A loader of the checkout's scripts (``benchmarks/*.py``, not package modules) as modules, registered under their stem."""

    def load(relative_path: str) -> ModuleType:
        path = Path(__file__).resolve().parents[1] / relative_path
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def one_torch_thread() -> Iterator[int]:
    """Torch on one thread for the test (small networks run faster so on a shared machine), then as it was.

    Yields the number of threads it was on.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield threads
    torch.set_num_threads(threads)


@pytest.fixture
def all_torch_threads(one_torch_thread: int) -> Iterator[None]:
    """Torch on its usual threads again, for a test that trains a full-size network in a module of one-thread tests."""
    import torch

    torch.set_num_threads(one_torch_thread)
    yield
    torch.set_num_threads(1)
