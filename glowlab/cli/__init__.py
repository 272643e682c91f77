"""The ``glowlab`` command: parsers and thin handlers over the library.

Each module of this package holds one family of commands and registers its
parsers; heavy modules are imported inside handlers so ``glowlab submit`` stays
quick. A :class:`GlowlabError` becomes one line on stderr and its exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from typing import Callable, Sequence

from ..errors import GlowlabError
from ..settings import Settings
from .common import EXIT_CODES, _formatter

__all__ = ["main", "build_parser", "reference_markdown"]

FAMILIES = ("jobs", "sweeps", "operate")
"""This package's modules of commands, in the order ``--help`` lists them."""


def commands(wanted: str | None = None) -> dict[str, Callable]:
    """Command name -> the function that adds its parser.

    Families are imported in order until one has ``wanted``: ``glowlab submit``
    and ``glowlab listen`` load only the first.
    """
    found: dict[str, Callable] = {}
    for family in FAMILIES:
        found.update(importlib.import_module(f".{family}", __name__).COMMANDS)
        if wanted in found:
            break
    return found


def reference_markdown() -> str:
    """docs/cli.md, generated from the parsers (see :mod:`glowlab.cli.reference`)."""
    from .reference import reference_markdown

    return reference_markdown()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``glowlab`` parser; with ``command``, only that command's subparser.

    Building all sixteen costs more than a whole ``glowlab submit`` should
    (argparse looks up translations for every one), so :func:`main` builds only
    the one named, and everything for ``--help`` or a mistyped command.
    """
    parser = argparse.ArgumentParser(
        prog="glowlab", formatter_class=_formatter,
        description="A distributed batch runner on beanstalkd: submit jobs, run listeners, sweep parameters.",
        epilog="examples:\n"
               "  glowlab demo                                  # a sweep on a private cluster\n"
               "  glowlab up                                    # beanstalkd + 2 listeners here\n"
               "  glowlab listen --jobs 4                       # run jobs on this node\n"
               "  glowlab submit --tube test -- echo hello      # queue one job\n"
               "  glowlab submit < jobs.json                    # queue a JSON list of jobs\n\n"
               + EXIT_CODES,
    )
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"glowlab {__version__}")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    found = commands(command)
    for name in [command] if command in found else found:  # a mistyped one: all, to list them
        found[name](sub)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse, taking everything after the first ``--`` as the command (never as options)."""
    if "--" not in argv:
        return parser.parse_args(argv)
    split = argv.index("--")
    args = parser.parse_args(argv[:split])
    if not hasattr(args, "command"):
        parser.error(f"'glowlab {args.subcommand}' takes no command after --")
    args.command = [*args.command, *argv[split + 1:]]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv and not argv[0].startswith("-") else None)
    args = _parse(parser, argv)
    warnings.showwarning = _show_warning
    # submit logs nothing, and a single submit should not pay for importing logging
    if args.subcommand != "submit":
        _quiet_logging()
    try:
        return args.handler(args, Settings.from_env())
    except GlowlabError as exc:
        print(f"glowlab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    logging = sys.modules.get("logging")  # into the log where one is set up (a listener's file)
    if logging is not None and logging.getLogger("glowlab").handlers:
        logging.getLogger("glowlab").warning("%s", message)
    else:
        print(f"glowlab: WARNING: {message}", file=sys.stderr)


def _quiet_logging() -> None:
    """glowlab's log on stderr, warnings and errors only, unless the caller set up its own."""
    import logging

    logger = logging.getLogger("glowlab")
    if logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("glowlab: %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
