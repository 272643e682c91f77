"""The ``glowlab`` command: parsers and thin handlers over the library.

Heavy modules are imported inside handlers so ``glowlab submit`` stays quick.
A :class:`GlowlabError` becomes one line on stderr and its exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
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
    from .progress import putting

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

    from .errors import ConfigurationError
    from .listener import Listener, ListenerOptions, install_signals, reopen_log

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
        from .settings import parse_address
        parse_address(options.smtp_server, what="--smtp-server")
    listener = Listener(options)
    install_signals(listener, partial(reopen_log, handler))
    log.info("listening on %s with %d slot(s)", options.address, listener.slots)
    listener.run()
    log.info("listener stopped")
    return 0


def _check_trust(options, *, allow_root: bool) -> None:
    """Refuse root unless told so; warn when anyone on a network could make us run commands."""
    from .errors import ConfigurationError
    from .listener import is_loopback

    if os.geteuid() == 0 and not allow_root:
        raise ConfigurationError(
            "refusing to run jobs as root: any job could then do anything to this machine; run "
            "the listener as an unprivileged user, or pass --allow-root (GLOWLAB_ALLOW_ROOT=1)")
    if options.keyring is None and not is_loopback(options.address):
        log.warning("jobs are not signed and %s is reachable from the network: anyone who can "
                    "connect to it can make this listener run any command; set GLOW_SECRET "
                    "(see docs/security.md)", options.address)


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
    import threading

    from .cluster import LocalCluster

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
    _sweep_parser(sub)
    _results_parser(sub)
    _watch_parser(sub)
    _call_parser(sub)
    _operator_parsers(sub)
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


def cmd_sweep(args: argparse.Namespace, settings: Settings) -> int:
    from .progress import follow
    from .sweep import sweep

    command = list(args.command)
    if not command:
        raise GlowlabError("give the command template after --, e.g. -- python sim.py --alpha {alpha}")
    df = read_table(args.params)
    template = command[0] if len(command) == 1 else shlex.join(command)
    batch = sweep(df, template, tube=args.tube, queue=args.queue or settings.queue, pri=args.pri,
                  delay=args.delay, workdir=args.workdir, timeout=args.timeout,
                  retries=args.retries, after=args.after, name=args.name, skip_done=args.skip_done)
    print(f"batch {batch.id}: {batch.total} jobs queued on {', '.join(batch.tubes)}", file=sys.stderr)
    if args.no_wait:
        print(batch.id)
        return 0
    follow(batch)
    return _write_results(batch, args.out)


def read_table(path: str):
    """A DataFrame from CSV, JSON or Parquet, chosen by the file's extension."""
    import pandas as pd

    readers = {".csv": pd.read_csv, ".json": pd.read_json, ".parquet": pd.read_parquet,
               ".tsv": lambda p: pd.read_csv(p, sep="\t")}
    ext = path[path.rfind("."):].lower() if "." in path else ""
    if ext not in readers:
        raise GlowlabError(f"cannot read {path}: use a .csv, .tsv, .json or .parquet file")
    try:
        return readers[ext](path)
    except (OSError, ValueError, ImportError) as exc:
        raise GlowlabError(f"cannot read {path}: {exc}") from None


def write_table(df, path: str) -> None:
    ext = path[path.rfind("."):].lower() if "." in path else ""
    try:
        if ext == ".parquet":
            df.to_parquet(path)
        elif ext in (".csv", ""):
            df.to_csv(path)
        else:
            raise GlowlabError(f"cannot write {path}: use a .csv or .parquet file")
    except (OSError, ImportError) as exc:
        raise GlowlabError(f"cannot write {path}: {exc}") from None


def _write_results(batch, out: str | None) -> int:
    results = batch.results()
    if out:
        write_table(results, out)
        print(f"results of {len(results)} jobs written to {out}", file=sys.stderr)
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", 200, "display.width", 200,
                               "display.max_colwidth", 40):
            print(results.drop(columns=["stdout", "stderr"]).to_string())
    return 0 if (results["status"] == "done").all() else 1


def cmd_results(args: argparse.Namespace, settings: Settings) -> int:
    from .batch import Batch

    batch = Batch.open(args.batch, queue=args.queue)
    return _write_results(batch, args.out)


def _sweep_parser(sub) -> None:
    p = _command(sub, "sweep", cmd_sweep,
                 "Queue one job per row of a table, show progress, write the results table.",
                 "  glowlab sweep params.csv --tube sims -- python sim.py --alpha {alpha} --seed {seed}\n"
                 "  glowlab sweep grid.csv --tube sims --pri size --out results.csv -- ./run {size}\n"
                 "  glowlab sweep grid.csv --tube sims -- mypkg.sims:simulate   # a Python function\n\n"
                 "{column} in the command is replaced by the row's value, as one argument (no shell).\n"
                 "--pri, --delay, --workdir and --timeout take a column name or a constant.")
    add_queue_option(p)
    p.add_argument("params", metavar="TABLE", help="parameters: .csv, .tsv, .json or .parquet")
    p.add_argument("--tube", required=True, help="tube to queue the jobs on (or a column name)")
    p.add_argument("--pri", metavar="COL|N", help="priority column or constant (smaller runs first)")
    p.add_argument("--delay", metavar="COL|S", help="delay column or constant, in seconds")
    p.add_argument("--workdir", metavar="COL|DIR", help="folder to run in (default: this folder)")
    p.add_argument("--timeout", metavar="COL|S", help="wall-clock limit per job, in seconds")
    p.add_argument("--retries", type=int, default=0, metavar="N", help="extra attempts after a failure")
    p.add_argument("--after", metavar="T,T", help="tubes (an earlier stage) that must finish first")
    p.add_argument("--name", help="a name to find the batch by later (glowlab results NAME)")
    p.add_argument("--skip-done", action="store_true", help="queue only rows without a successful earlier run")
    p.add_argument("--out", metavar="FILE", help="write results here (.csv or .parquet) instead of printing")
    p.add_argument("--no-wait", action="store_true", help="queue and print the batch id, without waiting")
    p.add_argument("command", nargs="*", metavar="-- COMMAND",
                   help="command template, or MODULE:FUNCTION")


def _results_parser(sub) -> None:
    p = _command(sub, "results", cmd_results, "Show or export the results of a batch at any time.",
                 "  glowlab results demo-1\n  glowlab results 3f2a9c1b0d4e --out results.parquet")
    add_queue_option(p)
    p.add_argument("batch", metavar="BATCH", help="batch id or name (see the journal in $GLOWLAB_HOME)")
    p.add_argument("--out", metavar="FILE", help="write results here (.csv or .parquet)")


def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    from . import ops
    from .errors import ConfigurationError
    from .watch import watch

    if args.interval <= 0:
        raise ConfigurationError(f"--interval must be more than 0 seconds, not {args.interval}")
    tubes = ops.tube_names(args.tubes) if args.tubes else []
    batch = None
    if args.batch:
        from .batch import Batch

        batch = Batch.open(args.batch, queue=args.queue)
    with batch.queue if batch else _connect(args, settings) as queue:
        return watch(queue, batch=batch, tubes=tubes, follow=args.follow, interval=args.interval)


def _watch_parser(sub) -> None:
    p = _command(sub, "watch", cmd_watch, "Show the progress of a batch, or the queue's tubes, live.",
                 "  glowlab watch                     # every tube and the listeners, until Ctrl-C\n"
                 "  glowlab watch sims,post           # these tubes only\n"
                 "  glowlab watch --batch first       # a sweep: bars, rate, latest results, failed rows\n"
                 "  glowlab watch --batch first -f > progress.log   # a line per change, until it ends\n\n"
                 "On a terminal the view is redrawn in place, until the batch has finished (or\n"
                 "Ctrl-C). When the output is not a terminal nothing animates: one snapshot is\n"
                 "printed, or with --follow a timestamped line for each change. With --batch the\n"
                 "exit status is 1 when rows failed, timed out or were cancelled.")
    add_queue_option(p)
    p.add_argument("tubes", nargs="*", metavar="TUBES",
                   help="tubes to show (T or T,T; default: every tube but glowlab.*)")
    p.add_argument("--batch", metavar="ID|NAME", help="show this batch of the journal (and TUBES, if given)")
    p.add_argument("--follow", "-f", action="store_true",
                   help="when not on a terminal, print a line per change instead of one snapshot")
    p.add_argument("--interval", type=float, default=1.0, metavar="S",
                   help="seconds between updates (default 1)")


def cmd_call(args: argparse.Namespace, settings: Settings) -> int:
    from .call import call

    call(args.target, args.kwargs)
    return 0


def _call_parser(sub) -> None:
    p = _command(sub, "call", cmd_call, "Call a Python function as a job (what function sweeps queue).",
                 "  glowlab call mypkg.sims:simulate '{\"alpha\": 0.1, \"seed\": 3}'")
    p.add_argument("target", metavar="MODULE:FUNCTION", help="the function to call")
    p.add_argument("kwargs", metavar="JSON", nargs="?", default="{}", help="keyword arguments as a JSON object")


# -- operator commands ----------------------------------------------------------
def _connect(args: argparse.Namespace, settings: Settings):
    from .queue import Queue

    return Queue(args.queue or settings.queue, keyring=settings.keyring())


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    from . import ops

    tubes = ops.tube_names(args.tubes) if args.tubes else []
    with _connect(args, settings) as queue:
        report = ops.stats(queue, tubes, internal=args.all)
    print(json.dumps(report, indent=2) if args.json else ops.format_stats(report))
    return 0


def cmd_drain(args: argparse.Namespace, settings: Settings) -> int:
    import signal

    from . import ops

    tubes = ops.tube_names(args.tubes)
    write = ops.JsonListWriter(sys.stdout)
    signal.signal(signal.SIGTERM, _interrupt)  # unwind, so the job in hand goes back as it was
    try:
        with _connect(args, settings) as queue:
            report = ops.drain(queue, tubes, write)
        write.close()
    except BrokenPipeError:
        _silence_stdout()
        raise GlowlabError("stdout was closed; every job not yet written is still queued") from None
    except BaseException:
        write.close()  # what was written stays a valid JSON list
        raise
    for tube, job_id, reason in report.kept:
        print(f"glowlab: kept job {job_id} on {tube}, not a glowlab job ({reason}); "
              f"see it with 'glowlab peek {tube}'", file=sys.stderr)
    for tube, count in report.reserved.items():
        print(f"glowlab: {tube}: {count} reserved job(s) left to their listeners", file=sys.stderr)
    print(f"drained {report.drained} job(s) from {', '.join(tubes)}", file=sys.stderr)
    return 1 if report.kept else 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so exit does not fail flushing it."""
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def cmd_pause(args: argparse.Namespace, settings: Settings) -> int:
    from . import ops

    tubes = ops.tube_names(args.tubes)
    seconds = getattr(args, "seconds", 0)
    with _connect(args, settings) as queue:
        ops.pause(queue, tubes, seconds)
    print(f"paused {', '.join(tubes)} for {seconds} s" if seconds else f"resumed {', '.join(tubes)}")
    return 0


def cmd_kick(args: argparse.Namespace, settings: Settings) -> int:
    from . import ops

    if args.job is not None:
        if args.tube or args.count is not None or args.all:
            raise GlowlabError("--job takes no tube, count or --all: glowlab kick --job ID")
        with _connect(args, settings) as queue:
            if not queue.kick_job(args.job):
                raise GlowlabError(f"job {args.job} is not buried or delayed (or does not exist); "
                                   "find ids with 'glowlab peek TUBE --buried'")
        print(f"kicked job {args.job}")
        return 0
    if not args.tube:
        raise GlowlabError("give a tube (glowlab kick TUBE [N | --all]) or --job ID")
    if args.all and args.count is not None:
        raise GlowlabError("give a count or --all, not both")
    if args.count is not None and args.count < 1:
        raise GlowlabError(f"the count must be 1 or more, not {args.count}")
    tube = ops.tube_names(args.tube)[0]
    with _connect(args, settings) as queue:
        bound = ops.kickable(queue, tube) if args.all else (1 if args.count is None else args.count)
        count, state = ops.kick(queue, tube, max(1, bound))
    print(f"kicked {count} {state} job(s) of {tube}" if count
          else f"nothing to kick: {tube} has no buried or delayed jobs")
    return 0


def cmd_peek(args: argparse.Namespace, settings: Settings) -> int:
    from . import ops

    tube = ops.tube_names(args.tube)[0]
    states = [args.state] if args.state else list(ops.STATES)
    with _connect(args, settings) as queue:
        found = {state: ops.peek(queue, tube, state) for state in states}
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    for state, info in found.items():
        print(ops.format_peek(info) if info else f"no {state} job on {tube}")
    return 0


def cmd_errors(args: argparse.Namespace, settings: Settings) -> int:
    from . import ops

    def emit(job_id: int, record: dict) -> None:
        text = json.dumps({"id": job_id, **record}) if args.json else ops.format_error(job_id, record)
        print(text if args.json else text + "\n", flush=True)

    with _connect(args, settings) as queue:
        if args.follow:
            try:
                ops.follow_errors(queue, emit)
            except KeyboardInterrupt:  # the way to end --follow: not an error
                pass
            return 0
        errors = ops.read_errors(queue)
        if args.json:
            print(json.dumps([{"id": job_id, **record} for job_id, record in errors], indent=2))
        else:
            for job_id, record in errors:
                emit(job_id, record)
        if args.delete:
            queue.delete_many([job_id for job_id, _ in errors])
    what = "deleted" if args.delete else "left in GLOW_ERRORS"
    print(f"{len(errors)} error report(s), {what}", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    import signal
    import threading

    from . import ops
    from .mail import Mailer

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


def _operator_parsers(sub) -> None:
    _stats_parser(sub)
    _drain_parser(sub)
    _pause_parser(sub)
    _resume_parser(sub)
    _kick_parser(sub)
    _peek_parser(sub)
    _errors_parser(sub)
    _run_parser(sub)


def _stats_parser(sub) -> None:
    p = _command(sub, "stats", cmd_stats, "Show jobs ready, reserved, delayed and buried per tube.",
                 "  glowlab stats                   # every tube, as a table\n"
                 "  glowlab stats sims post         # these tubes only\n"
                 "  glowlab stats --json            # glow's -stats shape, plus \"_server\" totals\n\n"
                 "--json prints {\"TUBE\": {\"jobs-ready\": N, \"jobs-reserved\": N, \"jobs-delayed\": N,\n"
                 "\"jobs-buried\": N, \"pause\": SECONDS_LEFT}, ..., \"_server\": {...}}; \"_server\" holds the\n"
                 "server's totals and \"listener-slots\" (connections that reserve: listener slots).")
    add_queue_option(p)
    p.add_argument("tubes", nargs="*", metavar="TUBES", help="tubes to show (T or T,T; default: all)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--all", action="store_true", help="also show glowlab's internal result tubes (glowlab.*)")


def _drain_parser(sub) -> None:
    p = _command(sub, "drain", cmd_drain,
                 "Remove every ready, delayed and buried job of tubes; print them as JSON.",
                 "  glowlab drain sims > sims.json          # empty the tube, keep the jobs\n"
                 "  glowlab submit < sims.json              # ... and queue them again, as they were\n"
                 "  glowlab drain sims,post > /dev/null     # throw them away\n\n"
                 "Each job is reserved, written to stdout (flushed) and only then deleted. The\n"
                 "output is a JSON list 'glowlab submit' accepts: the job records with their id,\n"
                 "current pri, ttr and remaining delay. Requeued buried jobs become ready.\n"
                 "Reserved (running) jobs are left to their listeners and counted on stderr.\n"
                 "Bodies that are not glowlab jobs are kept in the queue, as they were, and\n"
                 "named on stderr; the exit status is then 1. With GLOW_SECRET set, so are\n"
                 "bodies without a valid signature; the records printed carry no signature\n"
                 "(submit signs them again).")
    add_queue_option(p)
    p.add_argument("tubes", nargs="+", metavar="TUBES", help="tubes to empty (T or T,T)")


def _pause_parser(sub) -> None:
    p = _command(sub, "pause", cmd_pause, "Stop listeners from taking jobs of tubes for a while.",
                 "  glowlab pause sims --seconds 600\n  glowlab pause sims,post --seconds 3600\n"
                 "  glowlab resume sims                     # end the pause early")
    add_queue_option(p)
    p.add_argument("tubes", nargs="+", metavar="TUBES", help="tubes to pause (T or T,T)")
    p.add_argument("--seconds", type=_seconds, required=True, metavar="N",
                   help="how long, 1..4294967295 seconds")


def _seconds(text: str) -> int:
    if not text.strip().isdigit() or not 0 < int(text) < 2**32:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 1 to 4294967295")
    return int(text)


def _resume_parser(sub) -> None:
    p = _command(sub, "resume", cmd_pause, "End the pause of tubes: listeners take their jobs again.",
                 "  glowlab resume sims\n  glowlab resume sims,post")
    add_queue_option(p)
    p.add_argument("tubes", nargs="+", metavar="TUBES", help="tubes to resume (T or T,T)")


def _kick_parser(sub) -> None:
    p = _command(sub, "kick", cmd_kick, "Make buried (else delayed) jobs ready to run again.",
                 "  glowlab kick sims             # one buried job of sims\n"
                 "  glowlab kick sims 10          # up to ten\n"
                 "  glowlab kick sims --all       # every buried job (every delayed one if none is buried)\n"
                 "  glowlab kick --job 4711       # one job by its beanstalkd id (see glowlab peek)\n\n"
                 "As in beanstalkd, a tube's delayed jobs are kicked only when none is buried.\n"
                 "--job takes beanstalkd's job id (shown by peek and errors), not the glowlab id.")
    add_queue_option(p)
    p.add_argument("tube", nargs="?", metavar="TUBE", help="the tube to kick jobs of")
    p.add_argument("count", nargs="?", type=int, metavar="N", help="how many (default 1)")
    p.add_argument("--all", action="store_true", help="every buried job (or every delayed one)")
    p.add_argument("--job", type=int, metavar="ID", help="kick this one job (beanstalkd id)")


def _peek_parser(sub) -> None:
    p = _command(sub, "peek", cmd_peek, "Show the next job of a tube in a state, with its beanstalkd stats.",
                 "  glowlab peek sims --buried     # the oldest buried job\n"
                 "  glowlab peek sims              # the next ready, delayed and buried job\n"
                 "  glowlab peek sims --ready --json")
    add_queue_option(p)
    p.add_argument("tube", metavar="TUBE", help="the tube to look into")
    state = p.add_mutually_exclusive_group()
    for name, what in (("ready", "the job a listener takes next"),
                       ("delayed", "the delayed job due first"), ("buried", "the oldest buried job")):
        state.add_argument(f"--{name}", dest="state", action="store_const", const=name, help=what)
    p.add_argument("--json", action="store_true", help="print JSON (null for a state with no job)")


def _errors_parser(sub) -> None:
    p = _command(sub, "errors", cmd_errors, "List the failure reports in GLOW_ERRORS, leaving them there.",
                 "  glowlab errors                  # every report, oldest first\n"
                 "  glowlab errors --follow         # ... then each new one (Ctrl-C ends)\n"
                 "  glowlab errors --json           # a JSON list; with --follow, one object a line\n"
                 "  glowlab errors --delete         # print them, then delete them\n\n"
                 "Reports are reserved for an instant (the only way to see past the first),\n"
                 "released with their priority before anything is printed, and never deleted\n"
                 "unless --delete is given. #N is the report's beanstalkd id.")
    add_queue_option(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--follow", "-f", action="store_true", help="keep printing new reports")
    mode.add_argument("--delete", action="store_true", help="delete the reports printed")
    p.add_argument("--json", action="store_true", help="print JSON")


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
    parser = build_parser()
    args = _parse(parser, list(sys.argv[1:] if argv is None else argv))
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


# -- reference ------------------------------------------------------------------
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
