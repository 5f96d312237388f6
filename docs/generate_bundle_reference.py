"""Write ``docs/bundles.md`` from the job functions of ``monai_fetal.jobs``, the CLI that calls them and the bundle
configs: ``python docs/generate_bundle_reference.py``.

For each job: the configs it runs (merged in order), and each id those configs use (reached from ``initialize``
and ``run``) that is a setting (no component) with its default, the job parameter that sets it and the CLI
option that sets that parameter. ``tests/test_docs.py`` fails when the committed file differs from what this renders.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import re
import sys
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

from monai.bundle import ConfigParser

from monai_fetal import jobs
from monai_fetal.bundles import bundle_dir
from monai_fetal.cli import build_parser

BUNDLES_MD = Path(__file__).resolve().parent / "bundles.md"
JOBS = (jobs.finetune_sam, jobs.evaluate_sam, jobs.segment_images, jobs.train_generator, jobs.synthesize_pairs)
LONGEST_DEFAULT = 90
_REFERENCE = re.compile(r"@([A-Za-z_]\w*)")
_ENTRY_POINTS = ("initialize", "run", "finalize")
_CONFIG_DEFAULT = re.compile(r" ?\(default: the bundle config's; docs/bundles\.md\)")

HEADER = """# The two bundles: config ids and overrides

Generated from the job functions (`monai_fetal/jobs.py`), the CLI and the configs by
`python docs/generate_bundle_reference.py`; a test checks that it is up to date. Both bundles follow the
MONAI bundle specification (`configs/metadata.json`, JSON configs whose top-level keys are the **ids**
you override). Full descriptions, data and results: each bundle's own README,
[fetal_head_sam](../bundles/fetal_head_sam/docs/README.md) and
[fetal_us_diffusion](../bundles/fetal_us_diffusion/docs/README.md).

Three ways to run a config with overrides:

```bash
# 1. MONAI's runner: every id is a --flag; overlays are listed after the config they change
python -m monai.bundle run --config_file bundles/fetal_head_sam/configs/train.json \\
    --bundle_root bundles/fetal_head_sam --dataset_dir /tmp/h60 --output_dir runs/5shot --shots 5
# 2. the CLI (docs/cli.md), whose options set the job parameters below
.venv/bin/monai-fetal finetune --data /tmp/h60 --shots 5 --out runs/5shot
```

```python
# 3. from Python: the job functions; a parameter left at None keeps the config's default
from monai_fetal.jobs import finetune_sam
finetune_sam("/tmp/h60", "runs/5shot", shots=5)
```

**Mistyped ids are refused in all three ways.** MONAI's runner (1) would add `--max_epoch 3`, meant as
`max_epochs`, as a new id that nothing reads. The jobs (and `monai_fetal.bundles.run_bundle` under them)
refuse unknown ids by name. For (1), each train, evaluate and inference config runs
`monai_fetal.config_checks.check_command_line_ids()` first in `initialize`, before anything is
written. A config cannot see MONAI's parser, so the check reads the command line of
`python -m monai.bundle run` instead (its `--config_file`s and `--id` options). It stops with
`bad value '3' for 'max_epoch': expected an id defined by train.json (did you mean 'max_epochs'?)`.
Other callers are left alone, because their `sys.argv` is not a bundle run: MONAI Label, the CLI,
and Python code calling `ConfigWorkflow`. Ids given through `--args_file` are not checked.

**Overlays**, as in the MONAI model-zoo: `fetal_head_sam/configs/evaluate.json` changes
`inference.json` (MONAI Label reads `inference.json` alone, so that one stands alone), and
`fetal_us_diffusion/configs/train_controlnet.json` adds the ControlNet mode's base stage to `train.json`.
`monai_fetal.bundles.EVALUATE_CONFIGS` and `GENERATOR_CONFIGS` name the lists. `jobs.synth_report`
(`monai-fetal synth-report`) runs no config but takes the evaluation configs' `preprocessing` (prompt
`gt_box`), so its pair consistency frames images and draws boxes as `evaluate` does.

**Installed without the repository** (`pip install .`, no `-e`), the bundles ship inside the package:
`python -m monai_fetal.bundles fetal_head_sam` prints the bundle's folder, to use as `--bundle_root`
and for `--config_file "$B/configs/train.json"`; the jobs and the CLI find it themselves.
`monai_fetal.bundles.verify_bundle_metadata(name)` checks `metadata.json` against MONAI's metadata
schema (`bundles/meta_schema_20240725.json`, vendored, its SHA-256 checked; no download).

`dataset_dir` takes a prepared cohort folder or a raw HC18 folder (prepared into
`<output_dir>/cohort` on first use); its default, `/workspace/data/hc18`, is a placeholder to
override. Paths are best given absolute. The tables list, per job, the ids its configs use (reached from
`initialize` and `run`) that hold a plain value or that the job sets; a default starting with `$` is an
expression of other ids (cut at {longest} characters). Derived ids are listed by name under each table;
components such as `network` or `preprocessing` are left out (see the configs).
""".replace("{longest}", str(LONGEST_DEFAULT))


def _function(func: Callable) -> ast.FunctionDef:
    return ast.parse(textwrap.dedent(inspect.getsource(func))).body[0]


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def job_ids(func: Callable) -> dict[str, str]:
    """Config id -> parameter of ``func``: the string keys of its override dicts whose value uses a parameter."""
    params = set(inspect.signature(func).parameters)
    pairs: list[tuple[ast.AST, ast.AST]] = []
    for node in ast.walk(_function(func)):
        if isinstance(node, ast.Dict):
            pairs += [(k, v) for k, v in zip(node.keys, node.values) if k is not None]
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript):
            pairs.append((node.targets[0].slice, node.value))
    ids = {}
    for key, value in pairs:
        used = _names(value) & params
        if isinstance(key, ast.Constant) and isinstance(key.value, str) and len(used) == 1:
            ids[key.value] = used.pop()
    return ids


def job_configs(func: Callable) -> tuple[str, dict[str, tuple[str, ...]]]:
    """The bundle ``func`` runs and its configs: ``{"": configs}``, or one entry per value of the parameter choosing them."""
    call = next(
        n for n in ast.walk(_function(func)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "run_bundle"
    )
    bundle, configs = call.args[0].value, call.args[1]
    if isinstance(configs, ast.Constant):
        return bundle, {"": (configs.value,)}
    if isinstance(configs, ast.Subscript):
        return bundle, {f"{configs.slice.id} {key}": tuple(value) for key, value in getattr(jobs, configs.value.id).items()}
    return bundle, {"": tuple(getattr(jobs, configs.id))}


def cli_options(parser: argparse.ArgumentParser) -> dict[str, dict[str, argparse.Action]]:
    """Job name -> its parameter -> the CLI option (argparse action) whose value the CLI passes to it."""
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found: dict[str, dict[str, argparse.Action]] = {}
    for sub in subparsers.choices.values():
        handler = sub.get_default("func")
        calls = [
            n for n in ast.walk(_function(handler)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in jobs.__all__
        ]
        actions = {action.dest: action for action in sub._actions}
        for call in calls:
            params = list(inspect.signature(getattr(jobs, call.func.id)).parameters)
            given = [*zip(params, call.args), *((k.arg, k.value) for k in call.keywords)]
            options = found.setdefault(call.func.id, {})
            for param, value in given:
                dests = [n.attr for n in ast.walk(value) if isinstance(n, ast.Attribute) and _names(n.value) == {"args"}]
                options.update({param: actions[dest] for dest in dests[:1]})
    return found


def _is_expression(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("$", "@"))


def _references(value: object) -> set[str]:
    if isinstance(value, dict):
        return set().union(set(), *(_references(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(set(), *(_references(v) for v in value))
    if _is_expression(value):
        return set(_REFERENCE.findall(value))
    return set()


def _used(config: Mapping[str, object]) -> list[str]:
    """The ids reached from ``initialize``, ``run`` and ``finalize`` through references, in the config's order."""
    seen, todo = set(), list(_ENTRY_POINTS)
    while todo:
        key = todo.pop()
        if key not in seen and key in config:
            seen.add(key)
            todo += _references(config[key])
    return [key for key in config if key in seen and key not in _ENTRY_POINTS]


def _is_setting(value: object) -> bool:
    """A plain value: no component, no expression."""
    return not _is_expression(value) and "_target_" not in json.dumps(value) and not _references(value)


def settings(bundle: str, configs: tuple[str, ...], given: set[str]) -> tuple[dict[str, object], list[str]]:
    """The ids that ``configs`` (merged) use: those holding a plain value, or set by a job (one of ``given``), with
    their default; and the other ids that are expressions (derived values), by name."""
    config = ConfigParser.load_config_files([str(bundle_dir(bundle) / "configs" / name) for name in configs])
    used = _used(config)
    used += sorted(given & set(config) - set(used))
    plain = {key: config[key] for key in used if key in given or _is_setting(config[key])}
    return plain, [key for key in used if key not in plain and _is_expression(config[key])]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;")


def _default(value: object) -> str:
    text = value if _is_expression(value) else json.dumps(value)
    if len(text) > LONGEST_DEFAULT:
        text = text[: LONGEST_DEFAULT - 3] + "..."
    return f"`{_cell(text)}`"


def _table(ids: Mapping[str, object], parameters: Mapping[str, str], options: Mapping[str, argparse.Action]) -> list[str]:
    rows = ["| id | default | job parameter | CLI option | what (the option's help) |", "|---|---|---|---|---|"]
    for key, value in ids.items():
        param = parameters.get(key)
        action = options.get(param) if param else None
        flag = (", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.dest}` (positional)") if action else ""
        help_text = _cell(_CONFIG_DEFAULT.sub("", action.help or "")) if action else ""
        rows.append(f"| `{key}` | {_default(value)} | {f'`{param}`' if param else ''} | {flag} | {help_text} |")
    return rows


def render() -> str:
    """The Markdown reference: per job, its configs and the ids they use."""
    options = cli_options(build_parser())
    lines = [HEADER]
    for func in JOBS:
        bundle, config_sets = job_configs(func)
        parameters = job_ids(func)
        lines += ["", f"## `jobs.{func.__name__}` ({bundle})", "", _cell(inspect.getdoc(func).split("\n")[0])]
        shown: dict[str, object] = {}
        for choice, configs in config_sets.items():
            ids, derived = settings(bundle, configs, set(parameters))
            new = {key: value for key, value in ids.items() if key not in shown or shown[key] != value}
            title = (f"`{choice}`: " if choice else "") + " + ".join(f"`configs/{name}`" for name in configs)
            lines += ["", f"### {title}", ""]
            if not new:
                lines.append("The ids and defaults of the table above.")
                continue
            if len(new) < len(ids):
                lines += ["The ids new or changed from the table above:", ""]
            lines += _table(new, parameters, options.get(func.__name__, {}))
            names = ", ".join(f"`{key}`" for key in derived)
            lines += ["", f"Derived ids (expressions of the above; an override replaces the expression): {names}."]
            shown.update(ids)
        if set(parameters) - set(shown):
            raise ValueError(f"{func.__name__} sets ids {sorted(set(parameters) - set(shown))} that none of its configs defines")
    return "\n".join(lines) + "\n"


def main() -> int:
    """Write (or with ``--check``, compare) ``docs/bundles.md``; status 1 when ``--check`` finds a difference."""
    text = render()
    if "--check" in sys.argv[1:]:
        return int(BUNDLES_MD.read_text() != text)
    BUNDLES_MD.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
