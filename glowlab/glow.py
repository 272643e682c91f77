"""The ``glow`` command: glow's Go-style flags, translated into a ``glowlab`` command line.

Nothing here runs jobs or speaks beanstalkd: :func:`translate` turns glow's
arguments into the argument list of a ``glowlab`` subcommand, and :func:`main`
hands that to :func:`glowlab.cli.main`. Flags follow Go's ``flag`` package:
``-name=value`` or ``-name value`` (one or two dashes), bare booleans, and
parsing stops at the first argument that is not a flag (or after ``--``), so
``glow -tube=t ls -la`` passes ``-la`` to ``ls``.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

BOOL, TEXT = "bool", "text"

FLAGS: dict[str, tuple[str, str]] = {
    "listen": (BOOL, "Start listener"),
    "v": (BOOL, "Increase verbosity [listen]"),
    "exclude": (TEXT, "Tubes to ignore (comma separated) [listen]"),
    "deps": (TEXT, "Path to tube dependency config file [listen]"),
    "log": (TEXT, "File to log to instead of stderr [listen]"),
    "smtp-server": (TEXT, "Server to use for sending emails [listen, local]"),
    "mail-from": (TEXT, "Email 'from' field [listen, local]"),
    "tube": (TEXT, "Beanstalkd tube to send the job to [submit]"),
    "out": (TEXT, "File to send job's stdout and stderr [submit]"),
    "stdout": (TEXT, "File to send job's stdout [submit]"),
    "stderr": (TEXT, "File to send job's stderr [submit]"),
    "workdir": (TEXT, "Directory to run job from [submit]"),
    "pri": (TEXT, "Job priority (smaller runs first) [submit]"),
    "delay": (TEXT, "Job delay in seconds [submit]"),
    "mailto": (TEXT, "Who to email on failure (comma separated) [submit]"),
    "local": (BOOL, "Run locally, reporting errors to the configured beanstalk"),
    "stats": (BOOL, "Show queue stats"),
    "drain": (TEXT, "Empty tubes (comma separated)"),
    "pause": (TEXT, "Pause tubes (comma separated)"),
    "pause-delay": (TEXT, "How many seconds to pause tubes for"),
    "help": (BOOL, "Show help"),
}
JOB_FLAGS = ("tube", "out", "stdout", "stderr", "workdir", "pri", "delay", "mailto")
LISTEN_FLAGS = ("exclude", "deps", "log", "smtp-server", "mail-from")
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}

USAGE = """usage:
  glow -listen [-v] [-exclude=T,T] [-deps=FILE] [-log=FILE] [-smtp-server=H:P] [-mail-from=A]
  glow -tube=T [-out=F] [-stdout=F] [-stderr=F] [-workdir=D] [-pri=N] [-delay=S] [-mailto=A,B] CMD ARGS...
  glow [job flags] < jobs.json         queue a JSON list of jobs read from stdin
  glow -local [job flags] CMD ARGS...  run one job here, reporting a failure like a listener
  glow -stats | -drain=T,T | -pause=T,T -pause-delay=N | -h

glow is glowlab's glow-compatible front end; each form runs a glowlab command
(see 'glowlab --help' and docs/coming-from-glow.md). GLOW_QUEUE, GLOW_SMTP_SERVER
and GLOW_MAIL_FROM are read as glow read them.

flags:
"""


class UsageError(Exception):
    """A glow command line that cannot be translated; the message is one line."""


class HelpRequested(Exception):
    """``-h``, ``-help`` or ``--help``."""


def parse_flags(argv: Sequence[str]) -> tuple[dict[str, str | bool], list[str]]:
    """Go ``flag`` parsing: the flags given (last one wins) and the arguments after them."""
    flags: dict[str, str | bool] = {}
    args = list(argv)
    while args:
        arg = args[0]
        if len(arg) < 2 or not arg.startswith("-"):
            break
        args.pop(0)
        if arg == "--":
            break
        name = arg[2:] if arg.startswith("--") else arg[1:]
        name, has_value, value = name.partition("=")
        if not name or name[0] in "-=":
            raise UsageError(f"bad flag syntax: {arg}")
        if name not in FLAGS:
            if name in ("h", "help"):
                raise HelpRequested
            raise UsageError(f"flag provided but not defined: -{name}")
        flags[name] = _value(name, bool(has_value), value, args)
    return flags, args


def _value(name: str, has_value: bool, value: str, rest: list[str]) -> str | bool:
    if FLAGS[name][0] == BOOL:
        if not has_value or value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise UsageError(f'invalid boolean value "{value}" for -{name}')
    if has_value:
        return value
    if not rest:
        raise UsageError(f"flag needs an argument: -{name}")
    return rest.pop(0)  # as in Go, the next argument is the value even if it starts with '-'


def translate(argv: Sequence[str]) -> list[str]:
    """The ``glowlab`` argument list that does what ``glow argv`` did."""
    flags, command = parse_flags(argv)
    if flags.get("listen"):
        return ["listen", *(["--verbose"] if flags.get("v") else []), *_options(flags, LISTEN_FLAGS)]
    if flags.get("help"):
        raise HelpRequested
    if flags.get("local"):
        if not command:
            raise UsageError("-local needs a command: glow -local [job flags] CMD ARGS...")
        return ["run", *_job_options(flags), *_options(flags, ("smtp-server", "mail-from")), "--", *command]
    if flags.get("drain"):
        return ["drain", str(flags["drain"])]
    if flags.get("pause"):
        if str(flags.get("pause-delay", "0")).strip() in ("", "0"):
            raise UsageError("-pause needs -pause-delay: glow -pause=<tube1,tube2,...> -pause-delay=<seconds>")
        return ["pause", str(flags["pause"]), f"--seconds={flags['pause-delay']}"]
    if flags.get("stats"):
        return ["stats", "--json"]
    if not command:
        return ["submit", *_job_options(flags)]
    return ["submit", *_job_options(flags), "--", *command]


def _job_options(flags: dict[str, str | bool]) -> list[str]:
    if "workdir" in flags:  # glow made it absolute where the job was submitted
        flags = {**flags, "workdir": os.path.abspath(str(flags["workdir"]))}
    return _options(flags, JOB_FLAGS)


def _options(flags: dict[str, str | bool], names: Sequence[str]) -> list[str]:
    # --name=value: a value starting with '-' stays a value for argparse too
    return [f"--{name}={flags[name]}" for name in names if name in flags]


def usage() -> str:
    width = max(len(name) for name in FLAGS) + 2
    lines = [f"  -{name:<{width}}{text}" for name, (_, text) in FLAGS.items()]
    return USAGE + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = translate(sys.argv[1:] if argv is None else argv)
    except HelpRequested:
        print(usage())
        return 0
    except UsageError as exc:
        print(f"glow: error: {exc} (see 'glow -h')", file=sys.stderr)
        return 2
    from .cli import main as glowlab_main

    return glowlab_main(args)


if __name__ == "__main__":
    sys.exit(main())
