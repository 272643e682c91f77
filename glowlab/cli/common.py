"""Shared pieces of the command line: job options, the queue option, help layout."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Callable

from ..errors import InvalidJobError
from ..settings import Settings


EXIT_CODES = """exit codes:
  0  success            3  invalid job          6  beanstalkd not installed
  1  other error        4  queue unreachable    130 interrupted
  2  bad configuration  5  beanstalkd refused
"""


JOB_OPTIONS = ("tube", "out", "stdout", "stderr", "workdir", "pri", "delay", "mailto",
               "ttr", "timeout", "retries", "after")


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32, width=_columns() - 2)


@functools.cache
def _columns() -> int:
    """The terminal's width, found as ``shutil.get_terminal_size`` does.

    Left to argparse, every parser imports shutil, and with it the compression
    modules: 3 ms of each ``glowlab`` start-up.
    """
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


def add_queue_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue", metavar="HOST:PORT",
                        help="beanstalkd address (default: $GLOW_QUEUE, else 0.0.0.0:11300)")


def add_job_options(parser: argparse.ArgumentParser) -> None:
    """The job fields as options; values are validated by the job model, not here."""
    group = parser.add_argument_group("job options")
    group.add_argument("--tube", help="tube to queue the job on (required for a command)")
    group.add_argument("--out", metavar="FILE", help="file for stdout and stderr together (default /dev/null)")
    group.add_argument("--stdout", metavar="FILE", help="file for stdout (overrides --out)")
    group.add_argument("--stderr", metavar="FILE", help="file for stderr (overrides --out)")
    group.add_argument("--workdir", metavar="DIR", help="folder to run in (default /tmp)")
    group.add_argument("--pri", metavar="N", help="priority 0..4294967295, smaller runs first (default 0)")
    group.add_argument("--delay", metavar="S", help="seconds before the job may run (default 0)")
    group.add_argument("--mailto", metavar="A,B", help="addresses to mail when the job finally fails")
    group.add_argument("--ttr", metavar="S", help="seconds a listener may hold the job between heartbeats (default 60)")
    group.add_argument("--timeout", metavar="S", help="wall-clock limit; the job is stopped after it")
    group.add_argument("--retries", metavar="N", help="extra attempts after a failure (default 0)")
    group.add_argument("--after", metavar="T,T", help="tubes that must be empty before this job starts")
    group.add_argument("--env", metavar="NAME=VALUE", action="append", default=[],
                       help="add a variable to the job's environment (repeatable)")


def job_fields(args: argparse.Namespace) -> dict:
    """The job options the user gave, as job record keys."""
    fields = {k: getattr(args, k) for k in JOB_OPTIONS if getattr(args, k, None) is not None}
    if "workdir" in fields:  # as glow did: relative to where you submit, not to the listener
        fields["workdir"] = os.path.abspath(fields["workdir"])
    if getattr(args, "env", None):
        env = {}
        for item in args.env:
            name, sep, value = item.partition("=")
            if not sep:
                raise InvalidJobError(f"--env {item!r} is not NAME=VALUE", field="env")
            env[name] = value
        fields["env"] = env
    return fields


def _command(sub, name: str, handler: Callable, help: str, epilog: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help, description=help, formatter_class=_formatter,
                            epilog=f"examples:\n{epilog}\n\n{EXIT_CODES}")
    parser.set_defaults(handler=handler)
    return parser


def _names(value: str | None) -> tuple[str, ...]:
    from ..job import check_tube

    return tuple(check_tube(t.strip()) for t in (value or "").split(",") if t.strip())


def connect_queue(args: argparse.Namespace, settings: Settings):
    from ..queue import Queue

    return Queue(args.queue or settings.queue, keyring=settings.keyring())

