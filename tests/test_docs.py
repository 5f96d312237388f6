"""The docs that must stay in step with the code: the CLI and bundle references, the README's set-up commands and CI."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from monai_fetal.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _docs_script(name: str):
    """The module of ``docs/<name>.py`` (the docs' generators are scripts, not package modules)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_matches_the_parsers() -> None:
    rendered = _docs_script("generate_cli_reference").render(build_parser())
    assert (ROOT / "docs" / "cli.md").read_text() == rendered, "run: python docs/generate_cli_reference.py"
    for command in ("demo", "experiment", "finetune", "synthesize"):
        assert f"\n## {command}\n" in rendered


def _set_up_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    set_up = readme.split("## Set up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", set_up, flags=re.DOTALL)


def test_readme_first_set_up_command_installs_and_runs_the_demo() -> None:
    commands = _set_up_commands()
    assert len(commands) == 2
    assert commands[0] == "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/monai-fetal demo --out demo"


def test_ci_runs_the_readme_test_commands_line_for_line() -> None:
    """``.ci/run`` is README's test command (main venv, then the MONAI Label venv) after its set-up lines."""
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    set_up = ("#", "set -euo pipefail", 'cd "$(dirname "$0")/.."', "export CI=true")
    commands = [line for line in script if line.strip() and not line.startswith(set_up)]
    assert commands == [_set_up_commands()[1]]
    assert "-m pytest -q tests/test_monai_label.py" in commands[0] and '".[label,test]" -c .ci/lowest-versions.txt' in commands[0]
    assert "export CI=true" in script


def test_ci_fails_without_the_real_data_where_a_local_run_skips_saying_why(tmp_path: Path) -> None:
    missing = tmp_path / "no_data"
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env["MONAI_FETAL_SHARED_DATA"] = str(missing)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests/test_splits.py::test_patients_never_cross_sides"]

    local = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert local.returncode == 0, local.stdout[-2000:]
    assert "SKIPPED [1]" in local.stdout and f"real HC18 data not found at {missing}" in local.stdout

    ci = subprocess.run(command, cwd=ROOT, env={**env, "CI": "true"}, capture_output=True, text=True, timeout=300, check=False)
    assert ci.returncode == 1 and "passed" not in ci.stdout and "skipped" not in ci.stdout
    assert f"CI=true: real HC18 data not found at {missing}" in ci.stdout + ci.stderr


def test_bundle_reference_matches_the_jobs_cli_and_configs() -> None:
    rendered = _docs_script("generate_bundle_reference").render()
    assert (ROOT / "docs" / "bundles.md").read_text() == rendered, "run: python docs/generate_bundle_reference.py"
    assert "| `max_epochs` | `10` | `epochs` | `--epochs` |" in rendered  # train.json's default; finetune_sam(epochs=) <- --epochs
    assert "| `num_samples` | `100` | `count` | `--n` |" in rendered
    assert "`mode controlnet`: `configs/train.json` + `configs/train_controlnet.json`" in rendered
    assert "`configs/inference.json` + `configs/evaluate.json`" in rendered


def test_bundle_reference_refuses_a_job_id_that_no_config_defines(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = _docs_script("generate_bundle_reference")
    original = generator.job_ids
    monkeypatch.setattr(generator, "job_ids", lambda func: {**original(func), "max_epoch": "epochs"})
    with pytest.raises(ValueError, match="max_epoch"):
        generator.render()
