"""Faults and bad input: SAM and generator training killed mid-epoch resume; bad files, options and a full disk
fail clearly and harmlessly."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
import torch
from monai.data import PILWriter

from monai_fetal.bundles import bundle_dir
from monai_fetal.cli import main
from monai_fetal.data.io import write_png
from monai_fetal.data.phantom import make_phantom_cohort
from monai_fetal.data.writers import AtomicPILWriter
from monai_fetal.networks import build_prompted_sam
from monai_fetal.networks.diffusion import load_generator
from monai_fetal.staging import MARKER_NAME

EPOCHS = 3


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six half-HC18-sized phantoms: four training shots, one validation and one test image."""
    out = tmp_path_factory.mktemp("faults") / "phantom"
    make_phantom_cohort(out, 6, seed=0, size=(270, 400), progress=False)
    return out


def _train_command(bundle: str, cohort: Path, out: Path, options: dict[str, object]) -> list[str]:
    """``python -m monai.bundle run`` of ``bundle``'s train.json with ``options`` as ``--id value`` (Python literals)."""
    root = bundle_dir(bundle)
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(root / "configs" / "train.json")]
    for key, value in {"bundle_root": str(root), "dataset_dir": str(cohort), "output_dir": str(out), **options}.items():
        command += [f"--{key}", value if isinstance(value, str) else repr(value)]
    return command


def _sam_train_command(cohort: Path, out: Path) -> list[str]:
    options = {"shots": 4, "val_images": 1, "batch_size": 1, "augmentation_variants": 1, "max_epochs": EPOCHS}
    return _train_command("fetal_head_sam", cohort, out, options)


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen, log: Path, timeout: float = 600) -> None:
    """Poll ``condition`` until it holds; fail if ``process`` ends first or after ``timeout`` seconds (the first run
    of a session may also quantise the encoder to int8 for the session's model cache, about a minute)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"training ended (rc {process.returncode}) before the kill point:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def test_training_killed_mid_epoch_resumes_to_the_same_epoch_count(cohort: Path, tmp_path: Path) -> None:
    out, log = tmp_path / "run", tmp_path / "first.log"
    with log.open("w") as handle:
        first = subprocess.Popen(_sam_train_command(cohort, out), stdout=handle, stderr=subprocess.STDOUT)
    # MONAI's CheckpointSaver writes in place (atomic=False): wait for the zip's central directory, its last bytes
    _wait_for(lambda: zipfile.is_zipfile(out / "checkpoint_epoch=2.pt"), first, log)
    first.send_signal(signal.SIGKILL)
    assert first.wait(30) == -signal.SIGKILL
    assert sorted(p.name for p in out.glob("checkpoint_*")) == ["checkpoint_epoch=2.pt"]
    build_prompted_sam("lite_medsam", checkpoint=out / "model.pt")

    second = subprocess.run(_sam_train_command(cohort, out), check=False, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming from {out / 'checkpoint_epoch=2.pt'}" in second.stdout + second.stderr
    assert [p.name for p in out.glob("checkpoint_*")] == [f"checkpoint_epoch={EPOCHS}.pt"]  # not the killed run's either
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left
    trainer = torch.load(out / f"checkpoint_epoch={EPOCHS}.pt", weights_only=True)["trainer"]
    assert trainer["iteration"] == EPOCHS * trainer["epoch_length"] == EPOCHS * 4  # ended at epoch 3, as uninterrupted
    build_prompted_sam("lite_medsam", checkpoint=out / "model.pt")


TINY_GENERATOR = {
    "mode": "concat",
    "image_size": [32, 48],
    "unet_args": {"channels": [8, 16, 16], "attention_levels": [False, False, True], "num_head_channels": 8, "norm_num_groups": 8},
    "epoch_length": 50,  # about 2 s an epoch: the kill lands inside epoch 3
    "batch_size": 2,
    "max_epochs": EPOCHS,
    "sample_count": 2,
    "sample_steps": 2,
    "sample_interval": 1,
    "log_every": 1,
}


def test_generator_training_killed_mid_epoch_resumes_to_the_same_epoch_count(cohort: Path, tmp_path: Path) -> None:
    out, log = tmp_path / "generator", tmp_path / "first.log"
    checkpoints, grids = out / "checkpoints", [out / "samples" / f"epoch_{e:04d}.png" for e in (1, 2)]
    command = _train_command("fetal_us_diffusion", cohort, out, TINY_GENERATOR)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log.open("w") as handle:
        first = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    # both written whole (renamed into place) at the end of epoch 2, the grid last: the kill lands in epoch 3
    _wait_for(lambda: (checkpoints / "checkpoint_epoch=2.pt").is_file() and grids[1].is_file(), first, log)
    first.send_signal(signal.SIGKILL)
    assert first.wait(30) == -signal.SIGKILL
    assert [p.name for p in checkpoints.iterdir()] == ["checkpoint_epoch=2.pt"] and not (out / "model.pt").exists()
    grids_written = [grid.stat().st_mtime_ns for grid in grids]

    second = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert [p.name for p in checkpoints.iterdir()] == [f"checkpoint_epoch={EPOCHS}.pt"]  # no temporary or older ones left
    assert [grid.stat().st_mtime_ns for grid in grids] == grids_written  # epochs 1-2 not trained again: resumed from epoch 2
    assert sorted(p.name for p in grids[0].parent.iterdir()) == [f"epoch_{e:04d}.png" for e in range(1, EPOCHS + 1)]
    trainer = torch.load(checkpoints / f"checkpoint_epoch={EPOCHS}.pt", weights_only=True)["trainer"]
    assert trainer["iteration"] == EPOCHS * trainer["epoch_length"] == EPOCHS * 50  # ended at epoch 3, as uninterrupted
    assert load_generator(out)[1]["image_size"] == [32, 48]


@dataclass(frozen=True)
class BadInput:
    """A bad input: ``make(tmp, good_cohort)`` writes it and returns the CLI arguments that meet it.

    ``names`` are what the one-paragraph error must contain: the file or key at fault and the fix.
    ``fault``, if given, sets up a fault of the machine (a full disk) for the command's run.
    """

    make: Callable[[Path, Path], list[str]]
    names: tuple[str, ...]
    fault: Callable[[pytest.MonkeyPatch], None] | None = None


def _cohort_with(tmp: Path, good: Path, image: np.ndarray | bytes | None, mask: np.ndarray | bytes | None) -> Path:
    """``good``'s first case copied to ``tmp/src``, with the image or mask replaced (array or raw file bytes)."""
    src = tmp / "src"
    for part, replacement in (("images", image), ("masks", mask)):
        original = min((good / part).glob("*.png"))
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
    return min((good / "images").glob("*.png")).read_bytes()


_SHAPE = (270, 400)
_THREE_LEVELS = np.zeros(_SHAPE, np.uint8)
_THREE_LEVELS[50:150, 100:250], _THREE_LEVELS[80:120, 150:200] = 128, 255


def _segment_with_checkpoint(state: object | None) -> Callable[[Path, Path], list[str]]:
    """``segment`` with ``bad.pt`` holding ``state`` (``None``: no such file)."""

    def make(tmp: Path, good: Path) -> list[str]:
        if state is not None:
            torch.save(state, tmp / "bad.pt")
        image = min((good / "images").glob("*.png"))
        return ["segment", str(image), "--out", str(tmp / "segmented"), "--checkpoint", str(tmp / "bad.pt")]

    return make


_NO_SPACE = os.strerror(errno.ENOSPC)


def _no_free_space(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=1 << 30, used=1 << 30, free=0))


def _png_write_fails(monkeypatch: pytest.MonkeyPatch, error: OSError = OSError(errno.ENOSPC, _NO_SPACE)) -> None:
    """Pillow on a full disk: part of the PNG is written, then ``error``."""

    def save(image: PIL.Image.Image, fp: str, *args: object, **kwargs: object) -> None:
        Path(fp).write_bytes(b"\x89PNG\r\n\x1a\n")
        raise error

    _no_free_space(monkeypatch)
    monkeypatch.setattr(PIL.Image.Image, "save", save)


def _png_write_fails_without_saying_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """A PNG write on a full disk that fails with an error that does not name the full disk."""
    _png_write_fails(monkeypatch, OSError(errno.EIO, os.strerror(errno.EIO)))


def _text_write_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python write on a full disk: part of the text is written, then ``OSError(ENOSPC)``."""
    write_text = Path.write_text

    def short_write_text(path: Path, text: str, *args, **kwargs) -> int:
        write_text(path, text[: len(text) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, _NO_SPACE)

    monkeypatch.setattr(Path, "write_text", short_write_text)


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
        ("--augmentation", "'wek'", "'weak'"),
    ),
    "disk full: PNG write fails": BadInput(
        _prepare(), (".prepared.partial-", "/masks/phantom_0000.png", _NO_SPACE, "free disk space", "another output folder"), _png_write_fails
    ),
    "disk full: PNG write fails without naming the full disk": BadInput(
        _prepare(), (".prepared.partial-", "/masks/phantom_0000.png", _NO_SPACE, "free disk space"), _png_write_fails_without_saying_why
    ),
    "disk full: datalist write fails": BadInput(
        _prepare(), (".prepared.partial-", "/datalist.json", _NO_SPACE, "free disk space"), _text_write_fails
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
    (root / "segmented" / "phantom_0000_mask.png").write_bytes(b"an earlier mask")
    torch.save({"network": {"w": torch.ones(1)}}, root / "run" / "model.pt")
    (root / "run" / "split.json").write_text('{"training": [], "validation": [], "test": []}\n')
    return root


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_fails_clearly_and_keeps_earlier_outputs(
    case: str,
    cohort: Path,
    earlier_outputs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for folder in ("prepared", "segmented", "run"):
        os.symlink(earlier_outputs / folder, tmp_path / folder)
    before = _digest(earlier_outputs)
    bad = BAD_INPUTS[case]
    argv = bad.make(tmp_path, cohort)
    if bad.fault is not None:
        bad.fault(monkeypatch)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"monai-fetal {argv[0]}: error: " in err and "Traceback" not in err
    for name in bad.names:
        assert name in err, f"{name!r} not in: {err}"
    assert _digest(earlier_outputs) == before
    assert not [p for p in earlier_outputs.rglob(".*") if p.name != MARKER_NAME]  # no partial or temporary folders left
    assert not [p for p in tmp_path.rglob(".*")]  # nor beside the links to them (a staging folder)


def test_segment_writes_masks_whole_or_not_at_all(
    cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    image = min((cohort / "images").glob("*.png"))
    mask = tmp_path / "segmented" / f"{image.stem}_mask.png"
    assert main(["segment", str(image), "--out", str(mask.parent)]) == 0
    with monkeypatch.context() as plain:
        plain.setattr(AtomicPILWriter, "write", PILWriter.write)
        assert main(["segment", str(image), "--out", str(tmp_path / "plain")]) == 0
    earlier = mask.read_bytes()
    assert earlier == (tmp_path / "plain" / mask.name).read_bytes()  # the bytes MONAI's PILWriter writes
    _png_write_fails(monkeypatch)
    capsys.readouterr()
    assert main(["segment", str(image), "--out", str(mask.parent), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"monai-fetal segment: error: {mask}: cannot be written ({_NO_SPACE})" in err and "free disk space" in err
    assert "Traceback" not in err
    assert mask.read_bytes() == earlier
    assert not [p.name for p in mask.parent.iterdir() if p.name.startswith(".")]  # no temporary file left


@pytest.mark.parametrize(
    "bundle, typo, meant", [("fetal_head_sam", "max_epoch", "max_epochs"), ("fetal_us_diffusion", "max_epoch", "max_epochs")]
)
def test_mistyped_override_under_monai_bundle_run_is_refused_before_writing(
    cohort: Path, tmp_path: Path, bundle: str, typo: str, meant: str
) -> None:
    out = tmp_path / "run"
    command = _train_command(bundle, cohort, out, {typo: 2})
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert f"'{typo}'" in result.stderr and f"did you mean '{meant}'?" in result.stderr
    assert not out.exists()
