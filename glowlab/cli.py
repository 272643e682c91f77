"""The ``glowlab`` command: parsers and thin handlers over the library.

Heavy modules are imported inside handlers so ``glowlab submit`` stays quick.
A :class:`GlowlabError` becomes one line on stderr and its exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Callable, Sequence

from .errors import GlowlabError, InvalidJobError
from .settings import Settings

log = logging.getLogger("glowlab")

EXIT_CODES = """exit codes:
  0  success            3  invalid job          6  beanstalkd not installed
  1  other error        4  queue unreachable    130 interrupted
  2  bad configuration  5  beanstalkd refused
"""

JOB_OPTIONS = ("tube", "out", "stdout", "stderr", "workdir", "pri", "delay", "mailto",
               "ttr", "timeout", "retries", "after")


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


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
    if getattr(args, "env", None):
        env = {}
        for item in args.env:
            name, sep, value = item.partition("=")
            if not sep:
                raise InvalidJobError(f"--env {item!r} is not NAME=VALUE", field="env")
            env[name] = value
        fields["env"] = env
    return fields


# -- handlers -----------------------------------------------------------------
def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    from .job import from_dict, parse_batch
    from .queue import Queue

    fields = job_fields(args)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if command:
        if "tube" not in fields:
            raise InvalidJobError("--tube is required when a command is given", field="tube")
        jobs = [from_dict({**fields, "cmd": command[0], "args": command[1:]})]
    else:
        if sys.stdin is None or sys.stdin.isatty():
            raise InvalidJobError("no command given and stdin is a terminal: give a command "
                                  "after --, or pipe a JSON list of jobs to stdin")
        jobs = parse_batch(sys.stdin.buffer.read(), defaults=fields)
    with Queue(args.queue or settings.queue) as queue:
        queue.submit_many(jobs)
    _print_submitted(jobs, args.json)
    return 0


def _print_submitted(jobs: Sequence, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"queued": len(jobs), "jobs": [{"id": j.id, "tube": j.tube} for j in jobs]}))
        return
    for job in jobs:
        print(job.id)
    tubes = sorted({j.tube for j in jobs})
    print(f"queued {len(jobs)} job{'s' * (len(jobs) != 1)}"
          + (f" on {', '.join(tubes[:5])}{' ...' if len(tubes) > 5 else ''}" if tubes else ""),
          file=sys.stderr)


def cmd_listen(args: argparse.Namespace, settings: Settings) -> int:
    from .listener import Listener, ListenerOptions, install_signals

    handler = _log_to(args.log, verbose=args.verbose)
    options = ListenerOptions(
        address=args.queue or settings.queue,
        tubes=_names(args.tubes), exclude=_names(args.exclude), jobs=args.jobs,
        deps_file=args.deps, smtp_server=args.smtp_server or settings.smtp_server,
        mail_from=args.mail_from or settings.mail_from,
    )
    listener = Listener(options)
    install_signals(listener, reopen_log=getattr(handler, "reopenIfNeeded", lambda: None))
    log.info("listening on %s with %d slot(s)", options.address, listener.slots)
    listener.run()
    return 0


def _names(value: str | None) -> tuple[str, ...]:
    from .job import check_tube

    return tuple(check_tube(t.strip()) for t in (value or "").split(",") if t.strip())


def _log_to(path: str | None, *, verbose: bool) -> logging.Handler:
    import logging.handlers

    handler = logging.handlers.WatchedFileHandler(path) if path else logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("glowlab")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    return handler


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    import signal

    from .cluster import LocalCluster

    with LocalCluster(listeners=args.listeners, jobs=args.jobs, verbose=args.verbose) as cluster:
        print(f"GLOW_QUEUE={cluster.address}", flush=True)
        print(f"beanstalkd and {args.listeners} listener(s) running; in another shell:\n"
              f"  export GLOW_QUEUE={cluster.address}\n"
              f"  glowlab submit --tube test --out /dev/stdout -- echo hello\n"
              "Press Ctrl-C to stop everything.", file=sys.stderr, flush=True)
        signal.signal(signal.SIGTERM, lambda s, f: sys.exit(0))
        try:
            while True:
                signal.pause()
        except KeyboardInterrupt:
            print("stopping", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from .demo import run_demo

    return run_demo(out_dir=args.out, listeners=args.listeners, quick=args.quick)


# -- parsers ------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
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
    from . import __version__
    parser.add_argument("--version", action="version", version=f"glowlab {__version__}")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    _submit_parser(sub)
    _listen_parser(sub)
    _up_parser(sub)
    _demo_parser(sub)
    _call_parser(sub)
    return parser


def _command(sub, name: str, handler: Callable, help: str, epilog: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help, description=help, formatter_class=_formatter,
                            epilog=f"examples:\n{epilog}\n\n{EXIT_CODES}")
    parser.set_defaults(handler=handler)
    return parser


def _submit_parser(sub) -> None:
    p = _command(sub, "submit", cmd_submit, "Queue one job, or a JSON list of jobs read from stdin.",
                 "  glowlab submit --tube sims --out /tmp/run.log -- python sim.py --alpha 0.1\n"
                 "  glowlab submit --tube sims --pri 10 --retries 2 --timeout 3600 -- ./long.sh\n"
                 "  echo '[{\"cmd\":\"ls\",\"tube\":\"foo\",\"pri\":\"0\"}]' | glowlab submit\n"
                 "  glowlab submit --tube sims < jobs.jsonl      # JSON lines; --tube fills gaps")
    add_queue_option(p)
    add_job_options(p)
    p.add_argument("--json", action="store_true", help="print the queued ids as JSON")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]",
                   help="the command to run; without it, jobs are read from stdin")


def _listen_parser(sub) -> None:
    p = _command(sub, "listen", cmd_listen, "Reserve jobs from beanstalkd tubes and run them.",
                 "  glowlab listen                          # all tubes, one job at a time\n"
                 "  glowlab listen --jobs 0 --exclude slow  # one slot per core, skip 'slow'\n"
                 "  GLOW_QUEUE=10.0.0.4:11300 glowlab listen -v --log /var/log/glowlab.log\n\n"
                 "signals: INT finishes running jobs then exits (twice: like TERM);\n"
                 "TERM stops running jobs and releases them to other listeners; HUP reopens --log.")
    add_queue_option(p)
    p.add_argument("--tubes", metavar="T,T", help="only these tubes (default: every tube, new ones too)")
    p.add_argument("--exclude", metavar="T,T", help="never reserve from these tubes")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="jobs run at once (0: one per core; default 1)")
    p.add_argument("--deps", metavar="FILE", help='tube dependencies as JSON, e.g. {"foo": ["bar"]}')
    p.add_argument("-v", "--verbose", action="store_true", help="log RUNNING/COMPLETE/FAILED per job")
    p.add_argument("--log", metavar="FILE", help="log to FILE instead of stderr")
    p.add_argument("--smtp-server", metavar="HOST:PORT", help="mail failures through this server ($GLOW_SMTP_SERVER)")
    p.add_argument("--mail-from", metavar="ADDR", help="sender of failure mail ($GLOW_MAIL_FROM)")


def _up_parser(sub) -> None:
    p = _command(sub, "up", cmd_up, "Start a private beanstalkd and listeners here until Ctrl-C.",
                 "  glowlab up --listeners 4\n  eval $(glowlab up 2>/dev/null | head -1)  # in scripts")
    p.add_argument("--listeners", type=int, default=2, metavar="N", help="listener processes (default 2)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="slots per listener (default 1)")
    p.add_argument("-v", "--verbose", action="store_true", help="listeners log every job")


def _demo_parser(sub) -> None:
    p = _command(sub, "demo", cmd_demo, "Run a Monte-Carlo parameter sweep on a private cluster.",
                 "  glowlab demo\n  glowlab demo --out results/ --quick")
    p.add_argument("--out", metavar="DIR", default=None, help="results folder (default glowlab-demo-<time>/)")
    p.add_argument("--listeners", type=int, default=2, metavar="N", help="listener processes (default 2)")
    p.add_argument("--quick", action="store_true", help="a smaller sweep")


def cmd_call(args: argparse.Namespace, settings: Settings) -> int:
    from .call import call

    call(args.target, args.kwargs)
    return 0


def _call_parser(sub) -> None:
    p = _command(sub, "call", cmd_call, "Call a Python function as a job (what function sweeps queue).",
                 "  glowlab call mypkg.sims:simulate '{\"alpha\": 0.1, \"seed\": 3}'")
    p.add_argument("target", metavar="MODULE:FUNCTION", help="the function to call")
    p.add_argument("kwargs", metavar="JSON", nargs="?", default="{}", help="keyword arguments as a JSON object")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
