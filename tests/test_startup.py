"""What small runs import (issue 18): ``--help`` and ``prepare`` of PNGs load neither torch, MONAI nor ITK's wrapped
modules (together about 1 GB and 10-15 s of start-up); ``segment`` pays for torch and MONAI only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from monai_fetal.data.io import write_png

_HEAVY = "sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'monai', 'ignite'} | {m for m in sys.modules if m.startswith('itk.ITK')})"


def _imports_of(*argv: str) -> tuple[int, str]:
    """Exit status and the heavy modules loaded by ``monai-fetal ARGV`` in a fresh interpreter."""
    code = (
        "import sys\nfrom monai_fetal.cli import main\n"
        f"try:\n    status = main({list(argv)!r})\nexcept SystemExit as done:\n    status = done.code\n"
        f"print('STATUS', status, {_HEAVY})"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    status, modules = run.stdout.strip().splitlines()[-1].removeprefix("STATUS ").split(" ", 1)
    return int(status), modules


def _cohort(root: Path) -> Path:
    for k in range(2):
        image = np.full((48, 64), 40, np.uint8)
        image[12:36, 16:48] = 200
        write_png(root / "images" / f"case_{k}.png", image)
        write_png(root / "masks" / f"case_{k}.png", (image > 100).astype(np.uint8) * 255)
    return root


@pytest.mark.parametrize("argv", [["--help"], ["segment", "--help"]])
def test_help_imports_neither_torch_monai_nor_itk(argv: list[str]) -> None:
    assert _imports_of(*argv) == (0, "[]")


def test_prepare_of_pngs_imports_neither_torch_monai_nor_itk(tmp_path: Path) -> None:
    status, modules = _imports_of("prepare", str(_cohort(tmp_path / "src")), str(tmp_path / "out"))
    assert (status, modules) == (0, "[]") and (tmp_path / "out" / "datalist.json").is_file()
