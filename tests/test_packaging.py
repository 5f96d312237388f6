"""Portable bundles: their metadata against MONAI's schema, versions in step with the package, neutral defaults,
and a non-editable install that runs the CLI and a bundle from outside the checkout."""

from __future__ import annotations

import ast
import configparser
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import numpy as np
import pytest
import yaml
from monai.apps.utils import HashCheckError
from monai.bundle import verify_metadata

from monai_fetal.bundles import BUNDLES, EVALUATE_CONFIGS, META_SCHEMA, META_SCHEMA_SHA256, bundle_dir, verify_bundle_metadata
from monai_fetal.data.phantom import make_phantom_cohort

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_VERSION = configparser.ConfigParser()
PACKAGE_VERSION.read(ROOT / "setup.cfg")
VERSION = PACKAGE_VERSION["metadata"]["version"]


def _metadata(name: str) -> dict:
    return json.loads((bundle_dir(name) / "configs" / "metadata.json").read_text())


@pytest.mark.parametrize("name", BUNDLES)
def test_metadata_validates_against_monais_schema_and_requires_this_package_version(name: str) -> None:
    verify_bundle_metadata(name)
    meta = _metadata(name)
    assert meta["schema"].endswith("/" + META_SCHEMA)
    assert meta["version"] in meta["changelog"]
    assert meta["required_packages_version"]["monai-fetal"] == VERSION
    assert "monai-fetal" not in meta.get("supported_apps", {})  # the package is a requirement, not an app


def test_the_schema_refuses_metadata_without_its_required_keys(tmp_path: Path) -> None:
    meta = _metadata("fetal_head_sam")
    del meta["authors"]
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    schema = bundle_dir("fetal_head_sam").parent / META_SCHEMA
    with pytest.raises(ValueError, match="authors"):
        verify_metadata(
            meta_file=str(tmp_path / "metadata.json"), filepath=str(schema), hash_val=META_SCHEMA_SHA256, hash_type="sha256"
        )


def test_a_changed_schema_file_fails_its_recorded_hash(tmp_path: Path) -> None:
    copy = tmp_path / META_SCHEMA
    copy.write_text((bundle_dir("fetal_head_sam").parent / META_SCHEMA).read_text().replace('"authors",', ""))
    with pytest.raises(HashCheckError):
        verify_metadata(
            meta_file=str(bundle_dir("fetal_head_sam") / "configs" / "metadata.json"),
            filepath=str(copy),
            hash_val=META_SCHEMA_SHA256,
            hash_type="sha256",
        )


def test_sam_bundle_names_monai_label_as_its_app() -> None:
    assert _metadata("fetal_head_sam")["supported_apps"] == {"monai-label": "0.8.5"}


@pytest.mark.parametrize("name", BUNDLES)
def test_default_paths_stay_inside_the_bundle_or_are_neutral(name: str) -> None:
    for config in sorted((bundle_dir(name) / "configs").glob("*.json")):
        text = config.read_text()
        assert "shared/data" not in text and "/../" not in text, config.name


@pytest.mark.parametrize("name", BUNDLES)
def test_the_data_licence_attributes_hc18(name: str) -> None:
    text = (bundle_dir(name) / "docs" / "data_license.txt").read_text()
    for needle in ("van den Heuvel", "PLOS ONE", "10.5281/zenodo.1327317", "CC BY 4.0"):
        assert needle in text


@pytest.mark.parametrize("name", BUNDLES)
def test_every_shipped_weights_file_is_listed_with_its_sha256(name: str) -> None:
    """Each ``models/`` file the wheel ships is in the bundle's ``large_files.yml``, whose sha256 it matches."""
    from monai_fetal.networks.latent_release import sha256_of

    root = bundle_dir(name)
    entries = yaml.safe_load((root / "large_files.yml").read_text())["large_files"]
    listed = {entry["path"]: entry for entry in entries}
    shipped = [p.relative_to(root).as_posix() for p in (root / "models").rglob("*") if p.is_file()] if (root / "models").is_dir() else []
    assert shipped and set(shipped) <= set(listed), f"list {sorted(set(shipped) - set(listed))} in {root / 'large_files.yml'}"
    for path, entry in listed.items():
        assert entry["hash_type"] == "sha256" and sha256_of(root / path) == entry["hash_val"], f"{name}/{path} does not match its sha256"


def test_the_wheel_patterns_cover_every_bundle_file() -> None:
    """Each file of ``bundles/`` (but run outputs) matches a ``package_data`` pattern of setup.py; shipped weights
    are those of ``large_files.yml``."""
    patterns = [
        element.value
        for node in ast.walk(ast.parse((ROOT / "setup.py").read_text()))
        if isinstance(node, ast.Dict)
        for key, value in zip(node.keys, node.values)
        if isinstance(key, ast.Constant) and key.value == "monai_fetal.bundle_files" and isinstance(value, ast.List)
        for element in value.elts
    ]
    assert patterns
    shipped = {
        f"{name}/{entry['path']}"
        for name in BUNDLES
        if (bundle_dir(name) / "large_files.yml").is_file()
        for entry in yaml.safe_load((bundle_dir(name) / "large_files.yml").read_text())["large_files"]
    }
    files = [
        path.relative_to(ROOT / "bundles").as_posix()
        for path in (ROOT / "bundles").rglob("*")
        if path.is_file() and not {"eval", "__pycache__"} & set(path.relative_to(ROOT / "bundles").parts)
    ]
    files = [f for f in files if "/models/" not in f or f in shipped]
    uncovered = [f for f in files if not any(fnmatch.fnmatch(f, p) and f.count("/") == p.count("/") for p in patterns)]
    assert not uncovered, f"add patterns to setup.py's package_data for {uncovered}"


def _source_copy(out: Path) -> Path:
    """The files a release is built from, copied so that the build leaves the checkout untouched."""
    out.mkdir()
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, out / name)
    shutil.copytree(ROOT / "monai_fetal", out / "monai_fetal", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "bundles", out / "bundles", ignore=_run_outputs)
    return out


def _run_outputs(folder: str, names: list[str]) -> set[str]:
    """What runs write into a bundle folder: ``eval/``, and ``models/`` but for the shipped ``models/prior/``."""
    return {n for n in names if n in ("eval", "__pycache__") or (Path(folder).name == "models" and n != "prior")}


@pytest.mark.slow
def test_a_non_editable_install_runs_the_cli_and_a_bundle_outside_the_checkout(tmp_path: Path) -> None:
    """``pip install .`` (no ``-e``) into a venv that borrows this interpreter's packages (no download)."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True)
    Path(site.strip(), "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MONAI_FETAL_BUNDLES")}
    install = [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "--ignore-installed"]
    result = subprocess.run([*install, _source_copy(tmp_path / "source")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    def run(*args: object) -> subprocess.CompletedProcess:
        return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)

    located = run(python, "-c", "import monai_fetal.bundles as b; print(b.__file__); print(b.bundle_dir('fetal_head_sam'))")
    module, bundle = (Path(line) for line in located.stdout.split())
    assert module.is_relative_to(site.strip()) and bundle.is_relative_to(site.strip()), located.stdout + located.stderr
    prior = run(
        python, "-c", "from monai_fetal.bundles import bundle_dir; from monai_fetal.networks.latent_release import "
        "verified_release; b = bundle_dir('fetal_us_diffusion'); print(verified_release(b, b / 'models' / 'prior'))",
    )  # fmt: skip
    assert prior.returncode == 0 and Path(prior.stdout.strip()).is_relative_to(site.strip()), prior.stderr[-2000:]
    configs = bundle / "configs"
    verified = run(
        python, "-m", "monai.bundle", "verify_metadata", "--meta_file", configs / "metadata.json",
        "--filepath", bundle.parent / META_SCHEMA, "--hash_val", META_SCHEMA_SHA256, "--hash_type", "sha256",
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr[-3000:]

    cohort = tmp_path / "cohort"
    make_phantom_cohort(cohort, 2, seed=0, size=(135, 200), progress=False)
    evaluated = run(
        python, "-m", "monai.bundle", "run", "--config_file", str([str(configs / name) for name in EVALUATE_CONFIGS]),
        "--meta_file", configs / "metadata.json", "--logging_file", configs / "logging.conf",
        "--bundle_root", bundle, "--dataset_dir", cohort, "--output_dir", tmp_path / "eval", "--precision", "fp32",
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 2 and np.isfinite(metrics["dice_mean"])
    # MONAI's Hausdorff and surface distances warned once per image (always_return_as_numpy); nothing now
    assert "deprecat" not in (evaluated.stderr + evaluated.stdout).lower()
    cli = run(env_dir / "bin" / "monai-fetal", "evaluate", "--data", cohort, "--out", tmp_path / "cli_eval", "--precision", "fp32")
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert json.loads((tmp_path / "cli_eval" / "metrics.json").read_text())["dice_mean"] == metrics["dice_mean"]
