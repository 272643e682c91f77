"""The ``glowlab`` command: parsers and thin handlers over the library.

Each module of this package holds one family of commands and registers its
parsers; heavy modules are imported inside handlers so ``glowlab submit`` stays
quick. A :class:`GlowlabError` becomes one line on stderr and its exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from ..errors import GlowlabError
from ..settings import Settings
from . import jobs, operate, sweeps
from .common import EXIT_CODES, _formatter
from .reference import reference_markdown

__all__ = ["main", "build_parser", "reference_markdown"]


COMMANDS = {**jobs.COMMANDS, **sweeps.COMMANDS, **operate.COMMANDS}


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
    for name, add_parser in COMMANDS.items():
        if command in (None, name):
            add_parser(sub)
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
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = _parse(parser, argv)
    if not logging.getLogger("glowlab").handlers:
        _quiet_logging()
    try:
        return args.handler(args, Settings.from_env())
    except GlowlabError as exc:
        print(f"glowlab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _quiet_logging() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("glowlab: %(levelname)s: %(message)s"))
    logging.getLogger("glowlab").addHandler(handler)
    logging.getLogger("glowlab").setLevel(logging.WARNING)
