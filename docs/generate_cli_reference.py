"""Write ``docs/cli.md`` from ``monai_fetal.cli.build_parser()``: ``python docs/generate_cli_reference.py``.

``tests/test_docs.py`` fails when the committed file differs from what this renders.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monai_fetal.cli import build_parser

USAGE_WIDTH = 100
CLI_MD = Path(__file__).resolve().parent / "cli.md"

HEADER = """# `monai-fetal` command reference

Generated from the argument parsers by `python docs/generate_cli_reference.py`; a test checks that it
is up to date. `monai-fetal -v COMMAND ...` logs debug messages. Errors in your input (a missing file,
a bad value, an output that would overlap an input) print one paragraph naming the file or option and
the fix, and exit with status 2; Ctrl-C prints one line and exits with status 130. An output is never
an input, the current folder or a folder that holds either; folders are written whole (staged, then
renamed) by one run at a time (a second run to the same output waits); `--overwrite` replaces only what
monai-fetal wrote there (listed in its `.monai-fetal.json`) and keeps everything else, such as `splits/`.
"""


def _option(action: argparse.Action) -> str:
    names = ", ".join(f"`{name}`" for name in action.option_strings) or f"`{action.dest}`"
    if action.nargs != 0:
        metavar = action.metavar or (action.dest.upper() if action.option_strings else None)
        if isinstance(metavar, tuple):
            metavar = " ".join(metavar)
        if metavar and action.option_strings:
            names += f" `{metavar}`"
    return names


def _usage(parser: argparse.ArgumentParser) -> str:
    """Usage wrapped at a fixed width, whatever the terminal's."""
    formatter = argparse.HelpFormatter(parser.prog, width=USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _text(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("<", "&lt;")


def _rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| argument | required | help |", "|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        required = "yes" if action.required or not action.option_strings else ""
        text = _text(action.help)
        if action.choices and not isinstance(action, argparse._SubParsersAction):
            text += " (one of: " + ", ".join(str(c) for c in action.choices) + ")"
        rows.append(f"| {_option(action)} | {required} | {text} |")
    return rows


def render(parser: argparse.ArgumentParser) -> str:
    """The Markdown reference of ``parser`` and each of its sub-commands, in the parser's order."""
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: _text(choice.help) for choice in subparsers._choices_actions}
    lines = [HEADER, "| command | what it does |", "|---|---|"]
    lines += [f"| [`{name}`](#{name}) | {helps.get(name, '')} |" for name in subparsers.choices]
    for name, sub in subparsers.choices.items():
        lines += ["", f"## {name}", "", helps.get(name, ""), "", "```", _usage(sub), "```", ""]
        lines += _rows(sub)
    return "\n".join(lines) + "\n"


def main() -> int:
    """Write (or with ``--check``, compare) ``docs/cli.md``; status 1 when ``--check`` finds a difference."""
    text = render(build_parser())
    if "--check" in sys.argv[1:]:
        return int(CLI_MD.read_text() != text)
    CLI_MD.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
