"""The command-line reference page, written from ``retrograd.cli.build_parser()`` at every site build,
so it cannot drift from the parser: every subcommand (nested ones too), its usage line, and each
argument with its flags, value, default and help text.

``python docs/hooks/cli_reference.py`` prints the page (with ``src/`` on ``PYTHONPATH``).
"""
from __future__ import annotations

import argparse

INTRO = """\
# Command line

`retrograd` is installed with the package (`python -m retrograd` runs the same program). Each
subcommand below is one `retrograd COMMAND ...`; `retrograd COMMAND --help` prints the same text in
the terminal. A mistake (a bad flag, a config error, a missing file) is one line
`retrograd COMMAND: error: ...` on stderr with exit status 2, never a traceback; the exit statuses
are listed under [Run folders](run-folder.md#exit-statuses).

This page is generated from the argument parser (`retrograd.cli.build_parser`) when the site is
built, so it lists exactly the flags of the version you are reading. The config file the commands
read is described in the [config reference](../config.md).
"""


def _cell(text: str) -> str:
    """Text for one markdown table cell: no line breaks, no unescaped pipes."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help_of(parser: argparse.ArgumentParser, name: str) -> str:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if choice.dest == name:
                    return choice.help or ""
    return ""


def _argument_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.option_strings:
            name = ", ".join(f"`{s}`" for s in action.option_strings)
            if action.nargs != 0:
                name += f" `{action.metavar or action.dest.upper()}`"
        else:
            name = f"`{action.metavar or action.dest}`"
            if action.nargs == "?":
                name += " (optional)"
        if action.choices is not None:
            value = "one of " + ", ".join(f"`{c}`" for c in action.choices)
        elif action.nargs == 0:
            value = "flag"
        elif isinstance(action, argparse._AppendAction):
            value = "repeatable"
        else:
            value = ""
        required = getattr(action, "required", False) and action.option_strings
        default = ("required" if required else
                   "" if action.default in (None, False, argparse.SUPPRESS) or action.nargs == 0
                   else f"`{action.default!r}`")
        help_text = (action.help or "") % {"default": action.default, "prog": parser.prog} \
            if action.help and "%(" in action.help else (action.help or "")
        rows.append(f"| {_cell(name)} | {_cell(value)} | {_cell(default)} | {_cell(help_text)} |")
    return rows


def _section(parser: argparse.ArgumentParser, path: list[str], help_text: str, level: int) -> list[str]:
    title = " ".join(path)
    lines = [f"{'#' * level} `{title}`", ""]
    if help_text:
        lines += [help_text[0].upper() + help_text[1:] + ".", ""]
    if parser.description and parser.description != help_text:
        lines += [parser.description, ""]
    usage = parser.format_usage().strip()
    usage = usage[len("usage: "):] if usage.startswith("usage: ") else usage
    lines += ["```text", " ".join(usage.split()), "```", ""]
    rows = _argument_rows(parser)
    if rows:
        lines += ["| argument | value | default | what it does |", "|---|---|---|---|", *rows, ""]
    for name, sub in _subparsers(parser).items():
        lines += _section(sub, path + [name], _help_of(parser, name), min(level + 1, 4))
    return lines


def commands(parser: argparse.ArgumentParser | None = None) -> dict[str, argparse.ArgumentParser]:
    """Every command path ("train", "rl play", ...) of the parser, to its own parser."""
    if parser is None:
        from retrograd.cli import build_parser
        parser = build_parser()
    out = {}

    def walk(p, path):
        for name, sub in _subparsers(p).items():
            out[" ".join(path + [name])] = sub
            walk(sub, path + [name])

    walk(parser, [])
    return out


def reference(parser: argparse.ArgumentParser | None = None) -> str:
    """The markdown of the command-line page."""
    if parser is None:
        from retrograd.cli import build_parser
        parser = build_parser()
    subs = _subparsers(parser)
    lines = [INTRO, "| command | what it does |", "|---|---|"]
    for name in subs:
        anchor = "retrograd-" + name.replace(" ", "-")
        lines.append(f"| [`retrograd {name}`](#{anchor}) | {_cell(_help_of(parser, name))} |")
    lines.append("")
    lines += ["## Global options", "", "```text", " ".join(parser.format_usage().split()[1:]), "```", "",
              "| argument | value | default | what it does |", "|---|---|---|---|", *_argument_rows(parser), ""]
    for name, sub in subs.items():
        lines += _section(sub, ["retrograd", name], _help_of(parser, name), 2)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(reference(), end="")
