"""MONAI Label serves the fetal_head_sam bundle: its own ``BundleInferTask`` in-process, and its server over HTTP.

The bundle is served with the pretrained LiteMedSAM weights saved as ``models/model.pt`` (MONAI Label
ignores a bundle without a model file) and no box, so the bundle's automatic prompt finds the head.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from monai_fetal.bundles import bundle_dir
from monai_fetal.data.io import read_image
from monai_fetal.networks import build_prompted_sam
from monai_fetal.shape.biometry import biometry_from_mask

pytest.importorskip("monailabel", reason="monailabel is not installed: pip install -e '.[label]'")
requests = pytest.importorskip("requests", reason="requests comes with monailabel")
from monailabel.tasks.infer.bundle import BundleInferTask  # noqa: E402

CASE = "600_HC"  # HC18 image; the automatic prompt gives Dice 0.99 on it (0.80 mean over 10 images)
SERVER_START_S = 120


@pytest.fixture(scope="module")
def served_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the bundle with the pretrained LiteMedSAM state dict as ``models/model.pt``."""
    root = tmp_path_factory.mktemp("served") / "fetal_head_sam"
    shutil.copytree(bundle_dir("fetal_head_sam"), root, ignore=shutil.ignore_patterns("models", "eval"))
    (root / "models").mkdir()
    torch.save(build_prompted_sam("lite_medsam").state_dict(), root / "models" / "model.pt")
    return root


def _check_head(label: np.ndarray, cohort: Path) -> float:
    """Assert ``label`` is one filled head of plausible size; return its Dice against the filled ground truth."""
    truth = read_image(cohort / "masks" / f"{CASE}.png") > 0
    assert label.shape == truth.shape
    assert set(np.unique(label).tolist()) <= {0.0, 1.0}
    head = label > 0
    assert ndimage.label(head)[1] == 1
    assert np.array_equal(ndimage.binary_fill_holes(head), head)
    spacing, hc_mm = (float(v) for v in _spacing_row(cohort)[1:])
    assert abs(biometry_from_mask(head, spacing).hc_mm - hc_mm) < 0.1 * hc_mm
    return float(2 * (head & truth).sum() / (head.sum() + truth.sum()))


def _spacing_row(cohort: Path) -> list[str]:
    rows = [line.split(",") for line in (cohort / "spacing.csv").read_text().splitlines()]
    header = rows[0]
    row = next(r for r in rows if r[0] == CASE)
    return [row[header.index(key)] for key in ("id", "mm_per_pixel", "hc_mm")]


def test_bundle_infer_task_segments_a_real_image(served_bundle: Path, hc18_cohort: Path) -> None:
    task = BundleInferTask(str(served_bundle), {})
    assert task.is_valid() and task.labels == {"fetal_head": 1} and task.dimension == 2
    label_file, result = task({"image": str(hc18_cohort / "images" / f"{CASE}.png"), "device": "cpu"})
    try:
        dice = _check_head(read_image(label_file), hc18_cohort)
    finally:
        os.unlink(label_file)
    print(f"MONAI Label BundleInferTask: Dice {dice:.4f} on {CASE}, latencies {result['latencies']}")
    assert dice >= 0.85


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _monailabel(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "monailabel.main", *args], env=env, **kwargs)


def _wait_for_server(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"MONAI Label server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{url}/info/", timeout=5).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(1)
    pytest.fail(f"MONAI Label server not up after {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


@pytest.mark.slow
def test_server_infers_over_http(served_bundle: Path, hc18_cohort: Path, tmp_path: Path) -> None:
    """The stock ``monaibundle`` app with the bundle in ``model/``, started on loopback, answers ``/infer``."""
    assert _monailabel("apps", "--download", "--name", "monaibundle", "--output", str(tmp_path)).wait(60) == 0
    app = tmp_path / "monaibundle"
    shutil.copytree(served_bundle, app / "model" / "fetal_head_sam")
    studies = tmp_path / "studies"
    studies.mkdir()
    shutil.copy(hc18_cohort / "images" / f"{CASE}.png", studies)
    port = _free_port()
    log = tmp_path / "server.log"
    conf = ("models", "fetal_head_sam", "zoo_source", "github", "sam2", "false", "skip_trainers", "true")
    options = [arg for key, value in zip(conf[::2], conf[1::2]) for arg in ("--conf", key, value)]
    with log.open("w") as out:
        server = _monailabel(
            "start_server", "--app", str(app), "--studies", str(studies), "--host", "127.0.0.1", "--port", str(port),
            *options, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        _wait_for_server(url, server, log)
        info = requests.get(f"{url}/info/", timeout=10).json()
        assert info["models"]["fetal_head_sam"]["labels"] == {"fetal_head": 1}
        ready = time.monotonic()
        response = requests.post(
            f"{url}/infer/fetal_head_sam", params={"image": CASE, "output": "image"}, data={"params": "{}"}, timeout=300
        )
        assert response.status_code == 200, response.text[:2000]
        (tmp_path / "label.png").write_bytes(response.content)
        dice = _check_head(read_image(tmp_path / "label.png"), hc18_cohort)
        print(f"MONAI Label server: up in {ready - started:.1f} s, /infer {time.monotonic() - ready:.1f} s, Dice {dice:.4f}")
        assert dice >= 0.85
    finally:
        server.terminate()
        server.wait(30)
