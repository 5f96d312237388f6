"""The package's import graph runs one way: a layer imports only the layers below it (read from the source, no import)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "monai_fetal"

# Lowest first. A unit is a subpackage (``data``) or a top-level module (``bundles``); a unit may import
# its own modules and those of units in lower layers only. Reading files, running models or jobs are
# jobs of the upper layers: ``shape`` is geometry on arrays, ``networks`` builds and loads modules.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("atomic", "config_checks", "checkpoint_files", "distributed"),
    ("staging",),
    ("shape",),
    ("data",),
    ("transforms",),
    ("visualize",),
    ("networks",),
    ("metrics",),
    ("engines",),
    ("bundles",),
    ("jobs",),
    ("study",),
    ("cli",),
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of the ``monai_fetal`` modules that ``path`` imports (at any depth, lazy imports too)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.add(node.module)
    return {name for name in found if name.startswith("monai_fetal.")}


def unit_imports() -> dict[tuple[str, str], list[str]]:
    """``(importing unit, imported unit) -> [importing modules]`` over the whole package."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _unit(_module_name(path))
        for target in sorted({_unit(name) for name in _imported_modules(path)} - {source}):
            edges.setdefault((source, target), []).append(_module_name(path))
    return edges


def test_every_unit_of_the_package_has_a_layer() -> None:
    units = {_unit(_module_name(path)) for path in PACKAGE.rglob("*.py")} - {"__init__"}
    missing = sorted(units - set(RANK))
    assert not missing, f"place {missing} in LAYERS of tests/test_layers.py (lowest layer it may sit in)"


def test_no_import_runs_up_the_layers() -> None:
    upward = [
        f"{', '.join(modules)} ({source}, layer {RANK[source]}) imports {target} (layer {RANK[target]})"
        for (source, target), modules in unit_imports().items()
        if source in RANK and target in RANK and RANK[target] >= RANK[source]
    ]
    assert not upward, "imports that run up or across the layers:\n" + "\n".join(upward)


def test_the_graph_reader_sees_imports_inside_functions() -> None:
    assert "monai_fetal.data.phantom" in _imported_modules(PACKAGE / "networks" / "openvino_runtime.py")
    assert ("networks", "data") in unit_imports()
