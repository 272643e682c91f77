"""Commands about single jobs and listeners: submit, listen, run, up, demo, call."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Callable, Sequence

from ..errors import InvalidJobError
from ..settings import Settings
from .common import _command, _names, add_job_options, add_queue_option, job_fields

if TYPE_CHECKING:
    import logging


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    from ..job import from_dict, parse_batch
    from ..queue import Queue

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
    from ..progress import putting

    with Queue(args.queue or settings.queue, keyring=settings.keyring()) as queue, \
            putting(len(jobs)) as report:
        queue.submit_many(jobs, progress=report)
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
    from functools import partial

    from ..errors import ConfigurationError
    from ..listener import Listener, ListenerOptions, install_signals, log, reopen_log

    for flag in ("jobs", "retry_base", "retry_cap", "kill_grace"):
        if getattr(args, flag) < 0:
            raise ConfigurationError(f"--{flag.replace('_', '-')} must be 0 or more, not {getattr(args, flag)}")
    try:
        handler = _log_to(args.log, verbose=args.verbose)
    except OSError as exc:
        raise ConfigurationError(f"cannot open log file {args.log}: {exc.strerror or exc}") from None
    options = ListenerOptions(
        address=args.queue or settings.queue,
        tubes=_names(args.tubes), exclude=_names(args.exclude), jobs=args.jobs,
        deps_file=args.deps, smtp_server=args.smtp_server or settings.smtp_server,
        mail_from=args.mail_from or settings.mail_from,
        backoff_base=args.retry_base, backoff_cap=args.retry_cap, kill_grace=args.kill_grace,
        keyring=settings.keyring(args.secret_file),
    )
    _check_trust(options, allow_root=args.allow_root or settings.allow_root)
    if options.smtp_server:
        from ..settings import parse_address
        parse_address(options.smtp_server, what="--smtp-server")
    listener = Listener(options)
    install_signals(listener, partial(reopen_log, handler))
    log.info("listening on %s with %d slot(s)", options.address, listener.slots)
    listener.run()
    log.info("listener stopped")
    return 0


def _check_trust(options, *, allow_root: bool) -> None:
    """Refuse root unless told so; warn when anyone on a network could make us run commands."""
    from ..errors import ConfigurationError
    from ..listener import is_loopback, log

    if os.geteuid() == 0 and not allow_root:
        raise ConfigurationError(
            "refusing to run jobs as root: any job could then do anything to this machine; run "
            "the listener as an unprivileged user, or pass --allow-root (GLOWLAB_ALLOW_ROOT=1)")
    if options.keyring is None and not is_loopback(options.address):
        log.warning("jobs are not signed and %s is reachable from the network: anyone who can "
                    "connect to it can make this listener run any command; set GLOW_SECRET "
                    "(see docs/security.md)", options.address)


def _log_to(path: str | None, *, verbose: bool) -> "logging.Handler":
    import logging.handlers

    handler = logging.handlers.WatchedFileHandler(path) if path else logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("glowlab")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    return handler


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    import signal
    import threading

    from ..cluster import LocalCluster

    with LocalCluster(listeners=args.listeners, jobs=args.jobs, verbose=args.verbose,
                      show_logs=True) as cluster:
        print(f"GLOW_QUEUE={cluster.address}", flush=True)
        print(f"beanstalkd and {args.listeners} listener(s) running; in another shell:\n"
              f"  export GLOW_QUEUE={cluster.address}\n"
              f"  glowlab submit --tube test --out /dev/stdout -- echo hello\n"
              "Press Ctrl-C to stop everything.", file=sys.stderr, flush=True)
        stop = threading.Event()
        # Explicit handlers: a shell starts background jobs with SIGINT ignored.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda s, f: stop.set())
        while not stop.wait(1):
            pass
        print("stopping", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from ..demo import run_demo

    return run_demo(out_dir=args.out, listeners=args.listeners, quick=args.quick)


def cmd_call(args: argparse.Namespace, settings: Settings) -> int:
    from ..call import call

    call(args.target, args.kwargs)
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    import signal
    import threading

    from .. import ops
    from ..mail import Mailer

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    job = ops.local_job(job_fields(args), command)
    smtp = args.smtp_server or settings.smtp_server
    mailer = Mailer(smtp, args.mail_from or settings.mail_from) if smtp else None
    stop, stopped_by = threading.Event(), []

    def on_signal(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second signal: stop waiting for the report too
        stopped_by.append(signum)
        stop.set()  # the runner stops the job's whole process group

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    outcome = ops.run_here(job, address=args.queue or settings.queue, mailer=mailer, stop=stop)
    if stopped_by:
        return 128 + stopped_by[0]
    if not outcome.ok:
        print(f"glowlab: job failed: {outcome.describe()}", file=sys.stderr)
    return ops.exit_status(outcome)


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
                 "TERM stops running jobs and releases them to other listeners; HUP reopens --log.\n"
                 "See docs/listener.md for outcomes, retries, GLOW_ERRORS, dependencies and systemd.")
    add_queue_option(p)
    p.add_argument("--tubes", metavar="T,T", help="only these tubes (default: every tube, new ones too)")
    p.add_argument("--exclude", metavar="T,T", help="never reserve from these tubes")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="jobs run at once (0: one per core; default 1)")
    p.add_argument("--deps", metavar="FILE", help='tube dependencies as JSON, e.g. {"foo": ["bar"]}')
    p.add_argument("-v", "--verbose", action="store_true", help="log RUNNING/COMPLETE/FAILED per job")
    p.add_argument("--log", metavar="FILE", help="log to FILE instead of stderr")
    p.add_argument("--smtp-server", metavar="HOST:PORT", help="mail failures through this server ($GLOW_SMTP_SERVER)")
    p.add_argument("--mail-from", metavar="ADDR", help="sender of failure mail ($GLOW_MAIL_FROM)")
    p.add_argument("--kill-grace", type=float, default=5.0, metavar="S",
                   help="seconds between TERM and KILL when a job must stop (default 5)")
    p.add_argument("--secret-file", metavar="FILE",
                   help="run only jobs signed with a key in FILE, one per line ($GLOW_SECRET_FILE; "
                        "or the key itself in $GLOW_SECRET)")
    p.add_argument("--allow-root", action="store_true",
                   help="run jobs even as root ($GLOWLAB_ALLOW_ROOT=1); refused otherwise")
    advanced = p.add_argument_group("retries (advanced)")
    advanced.add_argument("--retry-base", type=float, default=5.0, metavar="S",
                          help="seconds before a failed job's first retry; doubles per retry, "
                               "jittered (default 5)")
    advanced.add_argument("--retry-cap", type=float, default=600.0, metavar="S",
                          help="longest wait before a retry (default 600)")


def _up_parser(sub) -> None:
    p = _command(sub, "up", cmd_up, "Start a private beanstalkd and listeners here until Ctrl-C.",
                 "  glowlab up --listeners 4\n"
                 "  glowlab up > cluster.env &   # in scripts: then  export $(head -1 cluster.env)")
    p.add_argument("--listeners", type=int, default=2, metavar="N", help="listener processes (default 2)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="slots per listener (default 1)")
    p.add_argument("-v", "--verbose", action="store_true", help="listeners log every job")


def _demo_parser(sub) -> None:
    p = _command(sub, "demo", cmd_demo, "Run a Monte-Carlo parameter sweep on a private cluster.",
                 "  glowlab demo\n  glowlab demo --out results/ --quick")
    p.add_argument("--out", metavar="DIR", default=None, help="results folder (default glowlab-demo-<time>/)")
    p.add_argument("--listeners", type=int, default=2, metavar="N", help="listener processes (default 2)")
    p.add_argument("--quick", action="store_true", help="a smaller sweep")


def _call_parser(sub) -> None:
    p = _command(sub, "call", cmd_call, "Call a Python function as a job (what function sweeps queue).",
                 "  glowlab call mypkg.sims:simulate '{\"alpha\": 0.1, \"seed\": 3}'")
    p.add_argument("target", metavar="MODULE:FUNCTION", help="the function to call")
    p.add_argument("kwargs", metavar="JSON", nargs="?", default="{}", help="keyword arguments as a JSON object")


def _run_parser(sub) -> None:
    p = _command(sub, "run", cmd_run,
                 "Run one job here in the foreground, reporting a failure like a listener (glow -local).",
                 "  glowlab run -- ./simulate.sh --alpha 0.1\n"
                 "  glowlab run --tube sims --mailto me@example.org --timeout 600 -- ./long.sh\n"
                 "  glowlab run --out /tmp/run.log --workdir . -- make\n\n"
                 "The job runs as a listener would run it (workdir /tmp unless --workdir), except\n"
                 "that its output comes to this terminal unless --out, --stdout or --stderr is\n"
                 "given. --retries runs it again at once. A final failure goes to GLOW_ERRORS\n"
                 "(a warning if beanstalkd cannot be reached) and to --mailto by mail.\n"
                 "The exit status is the job's: its own, 128+N if killed by signal N, 124 on\n"
                 "timeout, 127 if the command is missing, 126 if it could not start. INT or TERM\n"
                 "stops the job (its whole process group); the exit status is then 130 or 143.")
    add_queue_option(p)
    add_job_options(p)
    p.add_argument("--smtp-server", metavar="HOST:PORT", help="mail failures through this server ($GLOW_SMTP_SERVER)")
    p.add_argument("--mail-from", metavar="ADDR", help="sender of failure mail ($GLOW_MAIL_FROM)")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]", help="the command to run")


COMMANDS: dict[str, Callable] = {
    "submit": _submit_parser,
    "listen": _listen_parser,
    "run": _run_parser,
    "up": _up_parser,
    "demo": _demo_parser,
    "call": _call_parser,
}
"""This module's commands: name -> the function that adds its parser."""
