"""Nothing the user points the tool at is ever lost (issue 18): outputs never overlap inputs, ``--overwrite`` keeps what
the tool did not write, concurrent runs are safe, no stale result is left to be misread, and every user error is one
paragraph with exit status 2 (Ctrl-C: one line, 130).

Each case of :data:`CASES` is a row of the issue's tables: the command is run in-process on small inputs; the source
stays byte-identical, no temporary file remains, and the exit status and the message are as stated.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from monai_fetal.cli import main
from monai_fetal.data.phantom import make_phantom_cohort
from monai_fetal.data.splits import write_split
from monai_fetal.staging import MARKER_NAME, output_lock

ROOT = Path(__file__).resolve().parents[1]
HC18_CSV = "training_set_pixel_size_and_HC.csv"


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small phantoms: a prepared cohort to copy into each test."""
    out = tmp_path_factory.mktemp("safety") / "phantoms"
    make_phantom_cohort(out, 6, seed=0, size=(64, 96), progress=False)
    return out


def _hc18_copy(hc18_subset: Path, dest: Path, count: int = 4) -> Path:
    """The first ``count`` HC18 pairs of ``hc18_subset`` with their CSV rows, in the published layout under ``dest``."""
    images = sorted((hc18_subset / "images").glob("*_HC.png"))[:count]
    for sub in ("images", "annotations"):
        (dest / sub).mkdir(parents=True)
    for image in images:
        shutil.copy2(image, dest / "images" / image.name)
        note = f"{image.stem}_Annotation.png"
        shutil.copy2(hc18_subset / "annotations" / note, dest / "annotations" / note)
    lines = (hc18_subset / HC18_CSV).read_text().splitlines()
    keep = {image.name for image in images}
    (dest / HC18_CSV).write_text("\n".join([lines[0], *(line for line in lines[1:] if line.split(",")[0] in keep)]) + "\n")
    return dest


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _leftovers(root: Path) -> list[str]:
    """Hidden files or folders under ``root`` other than the tool's markers: staging folders, lock or temporary files."""
    return [str(p.relative_to(root)) for p in root.rglob(".*") if p.name != MARKER_NAME]


@dataclass(frozen=True)
class Case:
    """A row: ``make(tmp, phantoms, hc18)`` sets it up under ``tmp`` and returns the CLI arguments.

    ``names`` must all appear in the one-paragraph error; ``status`` is the exit status; ``fault`` sets up a fault
    of the machine for the run; ``check(tmp)`` asserts what else must hold after it (an old result removed...).
    """

    make: Callable[[Path, Path, Path], list[str]]
    names: tuple[str, ...]
    status: int = 2
    fault: Callable[[pytest.MonkeyPatch, Path], None] | None = None
    check: Callable[[Path], None] | None = None


def _cohort(tmp: Path, phantoms: Path, name: str = "cohort") -> Path:
    shutil.copytree(phantoms, tmp / name)
    return tmp / name


def _with_datalist(content: str | None = None, drop_image: bool = False) -> Callable[[Path, Path, Path], list[str]]:
    """``evaluate`` of a phantom cohort whose datalist is ``content`` (or whose first image is missing), with an
    earlier run's ``metrics.json`` in the output folder."""

    def make(tmp: Path, phantoms: Path, hc18: Path) -> list[str]:
        cohort = _cohort(tmp, phantoms)
        if content is not None:
            (cohort / "datalist.json").write_text(content)
        if drop_image:
            (cohort / "images" / "phantom_0000.png").unlink()
        (tmp / "eval").mkdir()
        (tmp / "eval" / "metrics.json").write_text('{"dice_mean": 0.97}\n')
        return ["evaluate", "--data", str(cohort), "--out", str(tmp / "eval")]

    return make


def _no_stale_metrics(tmp: Path) -> None:
    assert not (tmp / "eval" / "metrics.json").exists(), "the earlier run's metrics.json is left to be misread"


def _split_of_another_cohort(tmp: Path, phantoms: Path, hc18: Path) -> list[str]:
    """Two cohorts with the same ids but other names: a split of one given with the other."""
    mine, other = _cohort(tmp, phantoms, "mine"), _cohort(tmp, phantoms, "other")
    data = json.loads((other / "datalist.json").read_text())
    (other / "datalist.json").write_text(json.dumps({**data, "name": "another_cohort"}))
    split = write_split(other, 2, 0, val=1)
    return ["evaluate", "--data", str(mine), "--split", str(split), "--out", str(tmp / "eval")]


def _split_with_unknown_ids(tmp: Path, phantoms: Path, hc18: Path) -> list[str]:
    cohort = _cohort(tmp, phantoms)
    split = write_split(cohort, 2, 0, val=1)
    content = json.loads(split.read_text())
    content["test"][0]["id"] = "not_in_the_cohort"
    split.write_text(json.dumps(content))
    return ["evaluate", "--data", str(cohort), "--split", str(split), "--out", str(tmp / "eval")]


def _empty_split_part(tmp: Path, phantoms: Path, hc18: Path) -> list[str]:
    cohort = _cohort(tmp, phantoms)
    split = write_split(cohort, 2, 0, val=1, test=0)
    return ["evaluate", "--data", str(cohort), "--split", str(split), "--out", str(tmp / "eval")]


def _read_only(monkeypatch: pytest.MonkeyPatch, tmp: Path) -> None:
    """``tmp/ro`` is on a read-only file system: creating anything under it fails with ``EROFS``."""
    (tmp / "ro").mkdir(exist_ok=True)
    locked = str(tmp / "ro")
    real_open, real_mkdir = os.open, os.mkdir

    def refused(path: object) -> bool:
        text = os.fsdecode(path)
        return text.startswith(locked + os.sep) and not os.path.exists(text)

    def ro_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and refused(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    def ro_mkdir(path, *args, **kwargs):
        if refused(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", ro_open)
    monkeypatch.setattr(os, "mkdir", ro_mkdir)


def _csv_with(cell: str | None = None, header: str | None = None) -> Callable[[Path, Path, Path], list[str]]:
    """``prepare`` of HC18 files whose CSV has ``cell`` as the second row's pixel size, or ``header`` as header."""

    def make(tmp: Path, phantoms: Path, hc18: Path) -> list[str]:
        src = _hc18_copy(hc18, tmp / "src")
        lines = (src / HC18_CSV).read_text().splitlines()
        if cell is not None:
            parts = lines[2].split(",")
            lines[2] = ",".join([parts[0], cell, *parts[2:]])
        if header is not None:
            lines[0] = header
        (src / HC18_CSV).write_text("\n".join(lines) + "\n")
        return ["prepare", str(src), str(tmp / "prepared")]

    return make


def _spacing_nan(tmp: Path, phantoms: Path, hc18: Path) -> list[str]:
    cohort = _cohort(tmp, phantoms, "src")
    lines = (cohort / "spacing.csv").read_text().splitlines()
    parts = lines[3].split(",")
    lines[3] = ",".join([parts[0], "nan", *parts[2:]])
    (cohort / "spacing.csv").write_text("\n".join(lines) + "\n")
    return ["prepare", str(cohort), str(tmp / "prepared")]


def _many_unpaired(tmp: Path, phantoms: Path, hc18: Path) -> list[str]:
    cohort = _cohort(tmp, phantoms, "src")
    image = (cohort / "images" / "phantom_0000.png").read_bytes()
    for k in range(100, 125):
        (cohort / "images" / f"extra_{k}.png").write_bytes(image)
    return ["prepare", str(cohort), str(tmp / "prepared")]


def _prepared_with_splits(tmp: Path, phantoms: Path, hc18: Path) -> list[str]:
    """A prepared cohort with a split and a user's note in it, re-prepared from its source with --overwrite."""
    src = _hc18_copy(hc18, tmp / "src")
    assert main(["prepare", str(src), str(tmp / "prepared")]) == 0
    write_split(tmp / "prepared", 1, 0, val=1)
    (tmp / "prepared" / "notes.txt").write_text("my notes\n")
    return ["prepare", str(src), str(tmp / "prepared"), "--overwrite", "--cohort", "hc18_again"]


def _kept_splits_and_notes(tmp: Path) -> None:
    prepared = tmp / "prepared"
    assert (prepared / "splits" / "shots1_seed0.json").is_file() and (prepared / "notes.txt").read_text() == "my notes\n"
    assert json.loads((prepared / "datalist.json").read_text())["name"] == "hc18_again"
    assert len(list((prepared / "images").glob("*.png"))) == 4


def _src(tmp: Path, phantoms: Path, hc18: Path) -> Path:
    return _hc18_copy(hc18, tmp / "src")


def _users_file(tmp: Path) -> Path:
    (tmp / "file.txt").write_text("mine\n")
    return tmp / "file.txt"


def assert_unchanged(path: Path, text: str) -> None:
    assert path.read_text() == text and not list(path.parent.glob(f".{path.name}*")), "the file was changed or renamed"


CASES = {
    # what the user ran, as in the first table (segment rows aside)
    "prepare DIR DIR --overwrite": Case(
        lambda tmp, p, h: ["prepare", str(_src(tmp, p, h)), str(tmp / "src"), "--overwrite"], ("src", "is also an input", "Fix:")
    ),
    "prepare PARENT/src PARENT --overwrite": Case(
        lambda tmp, p, h: ["prepare", str(_src(tmp, p, h)), str(tmp), "--overwrite"], ("holds the input", "src")
    ),
    "prepare DIR DIR/images --overwrite": Case(
        lambda tmp, p, h: ["prepare", str(_src(tmp, p, h)), str(tmp / "src" / "images"), "--overwrite"],
        ("src/images", "data folder"),
    ),
    "prepare COHORT COHORT --overwrite": Case(
        lambda tmp, p, h: ["prepare", str(_cohort(tmp, p)), str(tmp / "cohort"), "--overwrite"], ("cohort", "is also an input")
    ),
    "prepare SRC COHORT --overwrite keeps splits/ and other files": Case(_prepared_with_splits, (), 0, None, _kept_splits_and_notes),
    "evaluate on a datalist without items": Case(
        _with_datalist('{"name": "cohort", "numTraining": 0, "training": []}'),
        ("datalist.json", "'training' lists no images", "prepare the cohort again"),
        check=_no_stale_metrics,
    ),
    "evaluate --split of another cohort with the same ids": Case(
        _split_of_another_cohort, ("shots2_seed0.json", "split of cohort 'another_cohort', not of 'phantom'", "Fix:")
    ),
    # the second table: tracebacks that become one paragraph and exit 2
    "evaluate on an empty split part": Case(_empty_split_part, ("shots2_seed0.json", "'test' lists no images")),
    "evaluate --split with ids the cohort lacks": Case(_split_with_unknown_ids, ("1 ids", "not_in_the_cohort")),
    "evaluate on malformed datalist.json": Case(
        _with_datalist('{"training": [ '), ("datalist.json", "not a readable MONAI datalist"), check=_no_stale_metrics
    ),
    "evaluate on a non-list training": Case(
        _with_datalist('{"training": {"image": "images/phantom_0000.png"}}'), ("'training' is not a list of items (a JSON dict)",)
    ),
    "evaluate on a datalist listing missing files": Case(
        _with_datalist(drop_image=True), ("1 files that do not exist", "images/phantom_0000.png"), check=_no_stale_metrics
    ),
    "read-only output location: prepare": Case(
        lambda tmp, p, h: ["prepare", str(_src(tmp, p, h)), str(tmp / "ro" / "prepared")],
        ("ro/prepared", "cannot be written (Read-only file system)", "Fix:"),
        fault=_read_only,
    ),
    "read-only output location: evaluate": Case(
        lambda tmp, p, h: ["evaluate", "--data", str(_cohort(tmp, p)), "--out", str(tmp / "ro" / "eval")],
        ("ro/eval", "Read-only file system", "Fix:"),
        fault=_read_only,
    ),
    "read-only output location: split": Case(
        lambda tmp, p, h: ["split", str(_cohort(tmp, p)), "--shots", "1", "--val", "1", "--out", str(tmp / "ro" / "split.json")],
        ("ro/", "Read-only file system", "Fix:"),
        fault=_read_only,
    ),
    "--out an existing file: prepare --overwrite": Case(
        lambda tmp, p, h: ["prepare", str(_src(tmp, p, h)), str(_users_file(tmp)), "--overwrite"],
        ("file.txt", "is a file, not a folder"),
        check=lambda tmp: assert_unchanged(tmp / "file.txt", "mine\n"),
    ),
    "--out an existing file: evaluate": Case(
        lambda tmp, p, h: ["evaluate", "--data", str(_cohort(tmp, p)), "--out", str(_users_file(tmp))],
        ("file.txt", "is a file, not a folder"),
        check=lambda tmp: assert_unchanged(tmp / "file.txt", "mine\n"),
    ),
    "split --out the cohort's datalist": Case(
        lambda tmp, p, h: ["split", str(_cohort(tmp, p)), "--shots", "1", "--val", "1", "--out", str(tmp / "cohort" / "datalist.json")],
        ("datalist.json", "is also an input"),
    ),
    "prepare SRC .": Case(lambda tmp, p, h: ["prepare", str(_src(tmp, p, h)), "."], ("is the current folder", "Fix:")),
    "HC18 CSV with n/a": Case(_csv_with(cell="n/a"), (HC18_CSV, "line 3", "'pixel size(mm)' is 'n/a'", "Fix:")),
    "HC18 CSV with NaN": Case(_csv_with(cell="NaN"), (HC18_CSV, "line 3", "'NaN', not a positive number")),
    "HC18 CSV without a filename column": Case(_csv_with(header="name,pixel size(mm),head circumference (mm)"), ("no 'filename' column",)),
    "spacing.csv with NaN": Case(_spacing_nan, ("spacing.csv", "line 4", "'mm_per_pixel' is 'nan'")),
    "unpaired files: the first ten and the count": Case(
        _many_unpaired, ("25 image(s) in images/ have no mask (extra_100, ", "extra_109, ... and 15 more (25 in all)")
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_user_error_is_one_paragraph_and_harms_nothing(
    name: str,
    phantoms: Path,
    hc18_subset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case = CASES[name]
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    argv = case.make(work, phantoms, hc18_subset)
    capsys.readouterr()
    before = _digest(work)
    if case.fault is not None:
        case.fault(monkeypatch, work)
    assert main(argv) == case.status
    err = capsys.readouterr().err
    if case.status == 2:
        message = err[err.index(f"monai-fetal {argv[0]}: error: ") :].strip()
        assert "Traceback" not in err and "\n" not in message, err  # one paragraph
        for part in case.names:
            assert part in message, f"{part!r} not in: {message}"
        changed = {k for k, v in _digest(work).items() if before.get(k) != v}
        assert not changed, f"files changed by a refused run: {sorted(changed)}"
        assert not set(before) - set(_digest(work)) - {"eval/metrics.json"}, "files were removed"
    if case.check is not None:
        case.check(work)
    assert not _leftovers(tmp_path), "a staging folder, lock or temporary file was left"


def test_ctrl_c_exits_130_with_one_line_and_leaves_the_output_as_it_was(
    phantoms: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from monai_fetal.data import prepare

    assert main(["prepare", str(phantoms), str(tmp_path / "out")]) == 0
    before = _digest(tmp_path / "out")
    calls = []

    def interrupted(case):
        calls.append(case)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(case)

    real = prepare.prepare_case
    monkeypatch.setattr(prepare, "prepare_case", interrupted)
    capsys.readouterr()
    assert main(["prepare", str(phantoms), str(tmp_path / "out"), "--overwrite"]) == 130
    err = capsys.readouterr().err
    assert err.rstrip().endswith("\nmonai-fetal prepare: interrupted") and "Traceback" not in err  # after the progress bar
    assert _digest(tmp_path / "out") == before and not _leftovers(tmp_path)


@pytest.mark.parametrize(
    "argv", [["segment", "x.png", "--out", "o", "--spacing", "-1"], ["experiment", "--data", "d", "--out", "o", "--shots", "1,x"]]
)
def test_option_errors_never_show_internal_names(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "invalid _" not in err and "_positive_float" not in err and "_int_list" not in err
    assert "got '-1'" in err or "got '1,x'" in err


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "monai_fetal.cli", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}


def _complete_cohort(out: Path, count: int) -> None:
    datalist = json.loads((out / "datalist.json").read_text())
    assert datalist["numTraining"] == len(datalist["training"]) == count
    for item in datalist["training"]:
        assert (out / item["image"]).is_file() and (out / item["label"]).is_file()
    assert len(list((out / "images").iterdir())) == len(list((out / "masks").iterdir())) == count


def test_two_concurrent_prepare_runs_give_one_complete_cohort(hc18_subset: Path, tmp_path: Path) -> None:
    src, out = _hc18_copy(hc18_subset, tmp_path / "src", count=5), tmp_path / "out"
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    runs = []
    for log in logs:
        with log.open("w") as handle:
            command = _cli("prepare", str(src), str(out), "--overwrite")
            runs.append(subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=_env()))
    statuses = [run.wait(300) for run in runs]
    assert statuses == [0, 0], [log.read_text()[-2000:] for log in logs]
    _complete_cohort(out, 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.log", "b.log", "out", "src"]  # no staging folder or lock left


def test_a_second_run_waits_for_the_lock_and_names_the_other_run(phantoms: Path, tmp_path: Path) -> None:
    out, log = tmp_path / "out", tmp_path / "second.log"
    with output_lock(out):
        with log.open("w") as handle:
            second = subprocess.Popen(_cli("prepare", str(phantoms), str(out)), stdout=handle, stderr=subprocess.STDOUT, env=_env())
        deadline = time.monotonic() + 120
        while f"pid {os.getpid()}" not in log.read_text():
            assert second.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert "being written by another monai-fetal run" in log.read_text() and not out.exists()
    assert second.wait(120) == 0, log.read_text()
    _complete_cohort(out, 6)
    assert not _leftovers(tmp_path)


def test_overwrite_refuses_a_folder_the_tool_did_not_write(phantoms: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.docx").write_text("years of work")
    assert main(["phantom", str(mine), "--n", "1", "--height", "64", "--width", "64", "--overwrite"]) == 2
    assert "did not write" in capsys.readouterr().err and (mine / "thesis.docx").read_text() == "years of work"
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.docx"] and not _leftovers(tmp_path)


def test_re_preparing_a_cohort_elsewhere_keeps_its_name(phantoms: Path, tmp_path: Path) -> None:
    assert main(["prepare", str(phantoms), str(tmp_path / "copy")]) == 0
    assert json.loads((tmp_path / "copy" / "datalist.json").read_text())["name"] == "phantom"


TINY_GENERATOR = {
    "mode": "concat",
    "image_size": [32, 48],
    "unet_args": {"channels": [8, 16, 16], "attention_levels": [False, False, True], "num_head_channels": 8, "norm_num_groups": 8},
    "epoch_length": 2,
    "batch_size": 2,
    "max_epochs": 1,
    "sample_count": 1,
    "sample_steps": 1,
}


@pytest.fixture(scope="module")
def generator(phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pixel-space generator trained for one tiny epoch on the phantoms: enough to sample pairs from."""
    from monai_fetal.bundles import run_bundle

    out = tmp_path_factory.mktemp("generator") / "concat"
    run_bundle("fetal_us_diffusion", "train.json", {"dataset_dir": str(phantoms), "output_dir": str(out), **TINY_GENERATOR})
    return out


def _synthesize(generator: Path, out: Path, *options: str) -> list[str]:
    return ["synthesize", "--generator", str(generator), "--n", "2", "--steps", "1", "--out", str(out), *options]


def _users_folder(tmp: Path, phantoms: Path) -> Path:
    mine = tmp / "mine"
    (mine / "images").mkdir(parents=True)
    (mine / "thesis.docx").write_text("years of work")
    shutil.copy2(phantoms / "images" / "phantom_0000.png", mine / "images" / "scan.png")
    return mine


def _users_folder_with_a_manifest(tmp: Path, phantoms: Path) -> Path:
    mine = _users_folder(tmp, phantoms)
    (mine / "synthesis.json").write_text('{"seed": 0}\n')
    return mine


@pytest.mark.parametrize(
    "make, names",
    [
        (_users_folder, ("mine", "did not write", MARKER_NAME, "Fix: choose a new output folder")),
        (_users_folder_with_a_manifest, ("mine", "did not write", MARKER_NAME)),
        (_cohort, ("cohort", "is a cohort written by monai-fetal phantom", "Fix: choose a new output folder")),
    ],
    ids=["a user's folder", "a user's folder with a synthesis.json", "a prepared cohort"],
)
@pytest.mark.parametrize("overwrite", [False, True], ids=["", "--overwrite"])
def test_synthesize_never_writes_into_a_folder_it_did_not_write(
    make: Callable[[Path, Path], Path],
    names: tuple[str, ...],
    overwrite: bool,
    generator: Path,
    phantoms: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = make(tmp_path, phantoms)
    before = _digest(tmp_path)
    capsys.readouterr()
    assert main(_synthesize(generator, out, *(["--overwrite"] if overwrite else []))) == 2
    err = capsys.readouterr().err
    message = err[err.index("monai-fetal synthesize: error: ") :].strip()
    assert "Traceback" not in err and "\n" not in message, err
    for part in names:
        assert part in message, f"{part!r} not in: {message}"
    assert _digest(tmp_path) == before and not _leftovers(tmp_path)


def test_synthesize_marks_its_folder_and_overwrite_replaces_only_its_set(
    generator: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "syn"
    assert main(_synthesize(generator, out)) == 0
    marker = json.loads((out / MARKER_NAME).read_text())
    assert marker["command"] == "synthesize" and marker["entries"] == sorted(["datalist.json", "images", "masks", "synthesis.json"])
    (out / "notes.txt").write_text("mine")
    first = _digest(out)
    assert main(_synthesize(generator, out)) == 0 and _digest(out) == first  # a rerun completes the set: nothing to do
    capsys.readouterr()
    assert main(_synthesize(generator, out, "--seed", "1")) == 2
    message = capsys.readouterr().err.strip()
    assert "seed differ" in message and "--overwrite" in message and "\n" not in message and _digest(out) == first
    assert main(_synthesize(generator, out, "--seed", "1", "--overwrite")) == 0
    replaced = _digest(out)
    assert json.loads((out / "synthesis.json").read_text())["seed"] == 1 and (out / "notes.txt").read_text() == "mine"
    assert replaced["images/syn_00000.png"] != first["images/syn_00000.png"] and set(replaced) == set(first)
    assert not _leftovers(tmp_path)


def test_synthesize_takes_over_a_set_of_an_earlier_version_without_a_marker(generator: Path, tmp_path: Path) -> None:
    out = tmp_path / "syn"
    assert main(_synthesize(generator, out)) == 0
    (out / MARKER_NAME).unlink()
    (out / "images" / "syn_00001.png").unlink()
    assert main(_synthesize(generator, out)) == 0
    assert (out / "images" / "syn_00001.png").is_file() and json.loads((out / MARKER_NAME).read_text())["command"] == "synthesize"
