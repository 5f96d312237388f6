"""The docs that must stay in step with the code: the CLI reference and the README's set-up commands."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from monai_fetal.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("generate_cli_reference", ROOT / "docs" / "generate_cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_matches_the_parsers() -> None:
    rendered = _generator().render(build_parser())
    assert (ROOT / "docs" / "cli.md").read_text() == rendered, "run: python docs/generate_cli_reference.py"
    for command in ("demo", "experiment", "finetune", "synthesize"):
        assert f"\n## {command}\n" in rendered


def test_readme_first_set_up_command_installs_and_runs_the_demo() -> None:
    readme = (ROOT / "README.md").read_text()
    set_up = readme.split("## Set up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", set_up, flags=re.DOTALL)
    assert len(commands) == 2
    assert commands[0] == "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/monai-fetal demo --out demo"
    assert "pytest" in commands[1]


def test_bundle_ids_in_docs_exist_in_their_configs() -> None:
    import json

    text = (ROOT / "docs" / "bundles.md").read_text()
    sections = re.split(r"^### (\S+)$", text, flags=re.MULTILINE)[1:]
    assert len(sections) == 10
    for name, body in zip(sections[::2], sections[1::2]):
        bundle, _, config = name.split("/")
        ids = set(json.loads((ROOT / "bundles" / bundle / "configs" / config).read_text()))
        for row in re.findall(r"^\| (`[^|]*) \|", body, flags=re.MULTILINE):
            for key in re.findall(r"`([a-z_]+)`", row):
                assert key in ids, f"{name}: {key}"
