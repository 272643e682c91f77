"""docs/cli.md, generated from the parsers so it cannot drift from them."""

from __future__ import annotations

import argparse

from .common import EXIT_CODES


REFERENCE_HEADER = """\
<!-- Generated from the argparse parsers by glowlab.cli.reference_markdown(); do not edit.
     Regenerate: .venv/bin/python -c 'from glowlab.cli import reference_markdown as r; print(r(), end="")' > docs/cli.md -->
# Command reference

Every `glowlab` command, generated from its parser (`glowlab COMMAND --help` shows the same).
Each command takes `--queue HOST:PORT` or reads `GLOW_QUEUE` where it talks to beanstalkd.
A user error is one line on stderr, `glowlab: error: ...`, and one of these exit codes:

```text
{exit_codes}```
"""


def reference_markdown() -> str:
    """docs/cli.md: every command's usage, arguments and examples, from the parsers."""
    from . import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {choice.dest: choice.help for choice in sub._choices_actions}
    parts = [REFERENCE_HEADER.format(exit_codes=EXIT_CODES.split("\n", 1)[1])]
    parts += [f"- [`glowlab {name}`](#glowlab-{name}): {summaries[name]}" for name in sub.choices]
    parts += [_command_markdown(name, p) for name, p in sub.choices.items()]
    return "\n".join(parts)


def _command_markdown(name: str, parser: argparse.ArgumentParser) -> str:
    positionals = [a for a in parser._actions if not a.option_strings]
    synopsis = " ".join(["glowlab", name, "[options]", *(_positional_usage(a) for a in positionals)])
    lines = [f"\n## glowlab {name}\n", parser.description or "", "", f"```text\n{synopsis}\n```"]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
        if actions:
            title = {"positional arguments": "arguments"}.get(group.title or "", group.title)
            lines += ["", f"{title}:", ""] + [f"- `{_action_usage(a)}`: {a.help}" for a in actions]
    epilog = (parser.epilog or "").replace(EXIT_CODES, "").strip()
    lines += ["", f"```text\n{epilog}\n```"] if epilog else []
    return "\n".join(lines)


def _positional_usage(action: argparse.Action) -> str:
    metavar = action.metavar or action.dest
    return {"?": f"[{metavar}]", "*": f"[{metavar} ...]", "+": f"{metavar} [{metavar} ...]"}.get(
        action.nargs, metavar)


def _action_usage(action: argparse.Action) -> str:
    if not action.option_strings:
        return _positional_usage(action)
    flags = ", ".join(action.option_strings)
    if action.nargs == 0:
        return flags
    return f"{flags} {action.metavar or action.dest.upper()}"
