"""MONAI Label serves the fetal_head_sam bundle as shipped: its own ``BundleInferTask`` in-process, and its server over HTTP.

The bundle is a fresh copy of the package's: no model file is made by hand (the shipped ``models/model.pt``
is an empty state dict, so the pretrained LiteMedSAM weights come from the package). Requests carry no
prompt (the automatic prompt), a box (``roi``) or foreground clicks, and the result parameters carry the
head's measurements.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from monai_fetal.bundles import bundle_dir, bundle_weights
from monai_fetal.data.io import read_image
from monai_fetal.errors import ConfigError
from monai_fetal.jobs import segment_images
from monai_fetal.networks import default_precision
from monai_fetal.shape.biometry import biometry_from_mask
from monai_fetal.transforms import box_from_mask

pytest.importorskip("monailabel", reason="monailabel is not installed: pip install -e '.[label]'")
requests = pytest.importorskip("requests", reason="requests comes with monailabel")
from monailabel.tasks.infer.bundle import BundleInferTask  # noqa: E402

CASE = "600_HC"  # HC18 image; the automatic prompt gives Dice 0.99 on it (0.80 mean over 10 images)
SERVER_START_S = 120


@pytest.fixture(scope="module")
def fresh_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the bundle as the package ships it (run outputs left out), with nothing added."""
    root = tmp_path_factory.mktemp("served") / "fetal_head_sam"
    shutil.copytree(bundle_dir("fetal_head_sam"), root, ignore=shutil.ignore_patterns("eval"))
    return root


@pytest.fixture(scope="module")
def task(fresh_bundle: Path) -> BundleInferTask:
    return BundleInferTask(str(fresh_bundle), {})


def _truth(cohort: Path) -> np.ndarray:
    return read_image(cohort / "masks" / f"{CASE}.png") > 0


def _published(cohort: Path) -> tuple[float, float]:
    """``(mm_per_pixel, hc_mm)`` of :data:`CASE` from the cohort's ``spacing.csv``."""
    rows = [line.split(",") for line in (cohort / "spacing.csv").read_text().splitlines()]
    row = next(r for r in rows if r[0] == CASE)
    return float(row[rows[0].index("mm_per_pixel")]), float(row[rows[0].index("hc_mm")])


def _dice(label: np.ndarray, truth: np.ndarray) -> float:
    head = label > 0
    return float(2 * (head & truth).sum() / (head.sum() + truth.sum()))


def _infer(task: BundleInferTask, image: Path, **params) -> tuple[np.ndarray, dict]:
    label_file, result = task({"image": str(image), "device": "cpu", **params})
    try:
        return read_image(label_file), result
    finally:
        os.unlink(label_file)


def _check_head(label: np.ndarray, truth: np.ndarray) -> None:
    """``label`` is one filled head (0/1) at the image's size."""
    assert label.shape == truth.shape
    assert set(np.unique(label).tolist()) <= {0.0, 1.0}
    head = label > 0
    assert ndimage.label(head)[1] == 1
    assert np.array_equal(ndimage.binary_fill_holes(head), head)


def test_the_shipped_bundle_loads_with_no_manual_step_on_the_fast_path(fresh_bundle: Path, task: BundleInferTask) -> None:
    assert bundle_weights(fresh_bundle) is None  # the shipped model.pt holds no weights: network_def's are used
    assert task.is_valid() and task.labels == {"fetal_head": 1} and task.dimension == 2
    assert task.network.precision == default_precision("cpu")


def test_no_prompt_gives_the_head_and_its_measurements(task: BundleInferTask, hc18_cohort: Path) -> None:
    label, result = _infer(task, hc18_cohort / "images" / f"{CASE}.png")
    truth = _truth(hc18_cohort)
    _check_head(label, truth)
    dice = _dice(label, truth)
    spacing, hc_mm = _published(hc18_cohort)
    print(f"MONAI Label BundleInferTask, no prompt: Dice {dice:.4f} on {CASE}, HC {result['hc_mm']} mm, latencies {result['latencies']}")
    assert dice >= 0.85
    assert result["spacing_source"] == "table" and result["mm_per_pixel"] == pytest.approx(spacing, rel=1e-5)
    assert abs(result["hc_mm"] - hc_mm) < 0.1 * hc_mm
    assert result["hc_mm"] == pytest.approx(biometry_from_mask(label > 0, spacing).hc_mm, rel=1e-3)
    threshold = result["flag_searched_below"] if result["searched"] else result["flag_below"]
    assert result["boxed"] is False and result["flagged"] is (result["quality"] < threshold)
    assert 0 < result["quality_terms"]["sam_iou"] < 1  # SAM's IoU estimate reached the measurement


def test_monai_label_and_segment_share_one_no_box_path(task: BundleInferTask, hc18_cohort: Path, tmp_path: Path) -> None:
    """The same image gives the same mask and the same measurements through MONAI Label and ``monai-fetal segment``."""
    image = hc18_cohort / "images" / f"{CASE}.png"
    label, result = _infer(task, image)
    with segment_images([image], tmp_path).open() as table:
        row = next(csv.DictReader(table))
    assert np.array_equal(read_image(tmp_path / f"{CASE}_mask.png") > 0, label > 0)
    for key in ("hc_mm", "hc_px", "bpd_mm", "ofd_mm", "quality"):
        assert result[key] == float(row[key]), key
    assert result["flagged"] == bool(int(row["flagged"]))


def test_pixel_size_from_the_request_else_unknown(task: BundleInferTask, hc18_cohort: Path, tmp_path: Path) -> None:
    """An image with no spacing table and no header has hc_px but no hc_mm; a ``spacing`` parameter gives mm."""
    shutil.copy(hc18_cohort / "images" / f"{CASE}.png", tmp_path)
    _, unknown = _infer(task, tmp_path / f"{CASE}.png")
    assert unknown["spacing_source"] == "unknown" and unknown["hc_px"] > 0
    assert unknown["hc_mm"] is None and unknown["bpd_mm"] is None and unknown["mm_per_pixel"] is None
    _, given = _infer(task, tmp_path / f"{CASE}.png", spacing=0.2)
    assert given["spacing_source"] == "given" and given["hc_px"] == unknown["hc_px"]
    assert given["hc_mm"] == pytest.approx(0.2 * given["hc_px"], abs=1e-3)
    with pytest.raises(ConfigError, match="spacing"):
        _infer(task, tmp_path / f"{CASE}.png", spacing=-1)


def test_a_box_from_the_viewer_is_used(task: BundleInferTask, hc18_cohort: Path) -> None:
    """A box on the head gives the head; a box on the left half of the head gives a mask within that box."""
    truth = _truth(hc18_cohort)
    x0, y0, x1, y1 = box_from_mask(truth).tolist()
    margin = 0.05 * (x1 - x0), 0.05 * (y1 - y0)
    box = [x0 - margin[0], y0 - margin[1], x1 + margin[0], y1 + margin[1]]
    label, result = _infer(task, hc18_cohort / "images" / f"{CASE}.png", roi=box)
    _check_head(label, truth)
    assert _dice(label, truth) >= 0.9
    assert result["boxed"] is True and result["flagged"] is (result["quality"] < result["flag_boxed_below"])
    half = [box[0], box[1], (x0 + x1) / 2, box[3]]
    moved, moved_result = _infer(task, hc18_cohort / "images" / f"{CASE}.png", roi=half)
    inside = (np.argwhere(moved > 0)[:, 1] <= half[2] + 5).mean()
    print(f"box Dice {_dice(label, truth):.4f}; box on the left half: Dice {_dice(moved, truth):.4f}, {inside:.3f} of the mask inside it")
    assert _dice(moved, truth) < 0.8 and inside > 0.95
    assert moved_result["hc_px"] < 0.9 * result["hc_px"]


def test_foreground_clicks_on_the_skull_are_used(task: BundleInferTask, hc18_cohort: Path) -> None:
    """Clicks at the head's leftmost, rightmost, top and bottom points give the head; one click is refused."""
    truth = _truth(hc18_cohort)
    rows, cols = np.nonzero(truth)
    ends = [np.argmin(cols), np.argmax(cols), np.argmin(rows), np.argmax(rows)]
    clicks = [[int(cols[k]), int(rows[k])] for k in ends]
    label, _ = _infer(task, hc18_cohort / "images" / f"{CASE}.png", foreground=clicks)
    _check_head(label, truth)
    print(f"foreground clicks: Dice {_dice(label, truth):.4f}")
    assert _dice(label, truth) >= 0.9
    with pytest.raises(ConfigError, match="two or more clicks"):
        _infer(task, hc18_cohort / "images" / f"{CASE}.png", foreground=clicks[:1])
    with pytest.raises(ConfigError, match="background"):
        _infer(task, hc18_cohort / "images" / f"{CASE}.png", foreground=clicks, background=[[1, 1]])


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
def test_server_infers_over_http(hc18_cohort: Path, tmp_path: Path) -> None:
    """The stock ``monaibundle`` app with a fresh copy of the bundle in ``model/``, started on loopback, answers
    ``/infer`` with the label, and with the measurements as its result parameters."""
    assert _monailabel("apps", "--download", "--name", "monaibundle", "--output", str(tmp_path)).wait(60) == 0
    app = tmp_path / "monaibundle"
    shutil.copytree(bundle_dir("fetal_head_sam"), app / "model" / "fetal_head_sam", ignore=shutil.ignore_patterns("eval"))
    studies = tmp_path / "studies"
    studies.mkdir()
    shutil.copy(hc18_cohort / "images" / f"{CASE}.png", studies)
    shutil.copy(hc18_cohort / "spacing.csv", studies)
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
    truth = _truth(hc18_cohort)
    try:
        started = time.monotonic()
        _wait_for_server(url, server, log)
        info = requests.get(f"{url}/info/", timeout=10).json()
        assert info["models"]["fetal_head_sam"]["labels"] == {"fetal_head": 1}
        ready = time.monotonic()
        x0, y0, x1, y1 = box_from_mask(truth).tolist()
        outputs = {}
        for output in ("image", "json"):
            response = requests.post(
                f"{url}/infer/fetal_head_sam",
                params={"image": CASE, "output": output},
                data={"params": json.dumps({"roi": [x0 - 10, y0 - 10, x1 + 10, y1 + 10]})},
                timeout=300,
            )
            assert response.status_code == 200, response.text[:2000]
            outputs[output] = response
        (tmp_path / "label.png").write_bytes(outputs["image"].content)
        label = read_image(tmp_path / "label.png")
        _check_head(label, truth)
        dice = _dice(label, truth)
        params = outputs["json"].json()
        print(f"MONAI Label server: up in {ready - started:.1f} s, 2 x /infer {time.monotonic() - ready:.1f} s, Dice {dice:.4f}, {params}")
        assert dice >= 0.9
        spacing, hc_mm = _published(hc18_cohort)
        assert params["spacing_source"] == "table" and abs(params["hc_mm"] - hc_mm) < 0.1 * hc_mm
    finally:
        server.terminate()
        server.wait(30)
