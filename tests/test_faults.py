"""Faults and bad input: SAM training killed mid-epoch resumes; bad files and options fail clearly and harmlessly."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_fetal.bundles import bundle_dir
from monai_fetal.cli import main
from monai_fetal.data.io import write_png
from monai_fetal.data.phantom import make_phantom_cohort
from monai_fetal.engines import latest_checkpoint
from monai_fetal.networks import build_prompted_sam

BUNDLE = bundle_dir("fetal_head_sam")
EPOCHS = 3


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six half-HC18-sized phantoms: four training shots, one validation and one test image."""
    out = tmp_path_factory.mktemp("faults") / "phantom"
    make_phantom_cohort(out, 6, seed=0, size=(270, 400), progress=False)
    return out


def _train_command(cohort: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "monai.bundle", "run", "--config_file", str(BUNDLE / "configs" / "train.json"),
        "--bundle_root", str(BUNDLE), "--dataset_dir", str(cohort), "--output_dir", str(out), "--shots", "4",
        "--val_images", "1", "--batch_size", "1", "--augmentation_variants", "1", "--max_epochs", str(EPOCHS),
    ]  # fmt: skip


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"training ended (rc {process.returncode}) before the kill point:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def test_training_killed_mid_epoch_resumes_to_the_same_epoch_count(cohort: Path, tmp_path: Path) -> None:
    out, log = tmp_path / "run", tmp_path / "first.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log.open("w") as handle:
        first = subprocess.Popen(_train_command(cohort, out), stdout=handle, stderr=subprocess.STDOUT, env=env)
    _wait_for(lambda: (out / "checkpoint_epoch=1.pt").is_file() and "Epoch: 2/3, Iter: 1/4" in log.read_text(), first, log)
    first.send_signal(signal.SIGKILL)
    assert first.wait(30) == -signal.SIGKILL
    assert not (out / "checkpoint_epoch=2.pt").exists()
    build_prompted_sam("lite_medsam", checkpoint=out / "model.pt")

    second = subprocess.run(_train_command(cohort, out), capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming from {out / 'checkpoint_epoch=1.pt'}" in second.stdout + second.stderr
    assert latest_checkpoint(out).name == f"checkpoint_epoch={EPOCHS}.pt" and not (out / "checkpoint_epoch=2.pt").exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    trainer = torch.load(out / f"checkpoint_epoch={EPOCHS}.pt", weights_only=True)["trainer"]
    assert trainer["iteration"] == EPOCHS * trainer["epoch_length"] == EPOCHS * 4  # ended at epoch 3, as uninterrupted
    build_prompted_sam("lite_medsam", checkpoint=out / "model.pt")


@dataclass(frozen=True)
class BadInput:
    """A bad input: ``make(tmp, good_cohort)`` writes it and returns the CLI arguments that meet it.

    ``names`` are what the one-paragraph error must contain: the file or key at fault and the fix.
    """

    make: Callable[[Path, Path], list[str]]
    names: tuple[str, ...]


def _cohort_with(tmp: Path, good: Path, image: np.ndarray | bytes | None, mask: np.ndarray | bytes | None) -> Path:
    """``good``'s first case copied to ``tmp/src``, with the image or mask replaced (array or raw file bytes)."""
    src = tmp / "src"
    for part, replacement in (("images", image), ("masks", mask)):
        original = sorted((good / part).glob("*.png"))[0]
        (src / part).mkdir(parents=True)
        target = src / part / original.name
        if replacement is None:
            target.write_bytes(original.read_bytes())
        elif isinstance(replacement, bytes):
            target.write_bytes(replacement)
        else:
            write_png(target, replacement)
    return src


def _prepare(image=None, mask=None) -> Callable[[Path, Path], list[str]]:
    def make(tmp: Path, good: Path) -> list[str]:
        return ["prepare", str(_cohort_with(tmp, good, image, mask)), str(tmp / "prepared"), "--overwrite"]

    return make


def _png_bytes(good: Path) -> bytes:
    return sorted((good / "images").glob("*.png"))[0].read_bytes()


_SHAPE = (270, 400)
_THREE_LEVELS = np.zeros(_SHAPE, np.uint8)
_THREE_LEVELS[50:150, 100:250], _THREE_LEVELS[80:120, 150:200] = 128, 255


def _segment_with_checkpoint(state: object | None) -> Callable[[Path, Path], list[str]]:
    """``segment`` with ``bad.pt`` holding ``state`` (``None``: no such file)."""

    def make(tmp: Path, good: Path) -> list[str]:
        if state is not None:
            torch.save(state, tmp / "bad.pt")
        image = sorted((good / "images").glob("*.png"))[0]
        return ["segment", str(image), "--out", str(tmp / "segmented"), "--checkpoint", str(tmp / "bad.pt")]

    return make


def _finetune(*options: str) -> Callable[[Path, Path], list[str]]:
    def make(tmp: Path, good: Path) -> list[str]:
        return ["finetune", "--data", str(good), "--out", str(tmp / "run"), "--shots", "2", "--val", "1", *options]

    return make


BAD_INPUTS = {
    "missing source folder": BadInput(
        lambda tmp, good: ["prepare", str(tmp / "nowhere"), str(tmp / "prepared"), "--overwrite"], ("nowhere",)
    ),
    "corrupt png (truncated)": BadInput(
        lambda tmp, good: _prepare(image=_png_bytes(good)[:300])(tmp, good), ("images/phantom_0000.png", "re-export")
    ),
    "unreadable file (not an image)": BadInput(
        _prepare(mask=b"these bytes are not an image\n"), ("masks/phantom_0000.png", "cannot be read", "re-export")
    ),
    "image/mask size mismatch": BadInput(
        _prepare(mask=np.pad(np.full((100, 100), 255, np.uint8), 20)), ("masks/phantom_0000.png", "140x140", "image's size")
    ),
    "empty mask": BadInput(_prepare(mask=np.zeros(_SHAPE, np.uint8)), ("masks/phantom_0000.png", "empty", "annotate")),
    "non-binary mask": BadInput(_prepare(mask=_THREE_LEVELS), ("masks/phantom_0000.png", "3 distinct values", "one value")),
    "mistyped option value": BadInput(
        _finetune("--augmentation", "wek"),
        ("'augmentation'", "'weak'"),
    ),
    "missing image to segment": BadInput(
        lambda tmp, good: ["segment", str(tmp / "nowhere.png"), "--out", str(tmp / "segmented")],
        ("nowhere.png", "not found"),
    ),
    "missing checkpoint": BadInput(_segment_with_checkpoint(None), ("bad.pt", "not found", "existing")),
    "checkpoint of the wrong architecture": BadInput(
        _segment_with_checkpoint({"weight": torch.zeros(2, 2)}), ("bad.pt", "'lite_medsam' architecture", "unexpected")
    ),
    "checkpoint holding a pickled object": BadInput(
        _segment_with_checkpoint(torch.nn.Linear(2, 2)), ("bad.pt", "pickled Python objects", "state_dict()")
    ),
}


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def earlier_outputs(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Outputs of earlier good runs that a failing rerun must leave as they were."""
    root = tmp_path_factory.mktemp("earlier")
    assert main(["prepare", str(cohort), str(root / "prepared")]) == 0
    for folder in ("segmented", "run"):
        (root / folder).mkdir()
    (root / "segmented" / "phantom_000_mask.png").write_bytes(b"an earlier mask")
    torch.save({"network": {"w": torch.ones(1)}}, root / "run" / "model.pt")
    (root / "run" / "split.json").write_text('{"training": [], "validation": [], "test": []}\n')
    return root


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_clearly_and_keeps_earlier_outputs(
    case: str, cohort: Path, earlier_outputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for folder in ("prepared", "segmented", "run"):
        os.symlink(earlier_outputs / folder, tmp_path / folder)
    before = _digest(earlier_outputs)
    bad = BAD_INPUTS[case]
    argv = bad.make(tmp_path, cohort)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"monai-fetal {argv[0]}: error: " in err and "Traceback" not in err
    for name in bad.names:
        assert name in err, f"{name!r} not in: {err}"
    assert _digest(earlier_outputs) == before
    assert not [p for p in earlier_outputs.rglob(".*")]  # no partial or temporary folders left beside them
