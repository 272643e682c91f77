"""Commands about sweeps: sweep, results, watch."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Callable

from ..errors import GlowlabError
from ..settings import Settings
from .common import _command, add_queue_option, connect_queue


def cmd_sweep(args: argparse.Namespace, settings: Settings) -> int:
    from ..progress import follow
    from ..sweep import sweep

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
    from ..batch import Batch

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
    from .. import ops
    from ..errors import ConfigurationError
    from ..watch import watch

    if args.interval <= 0:
        raise ConfigurationError(f"--interval must be more than 0 seconds, not {args.interval}")
    tubes = ops.tube_names(args.tubes) if args.tubes else []
    batch = None
    if args.batch:
        from ..batch import Batch

        batch = Batch.open(args.batch, queue=args.queue)
    with batch.queue if batch else connect_queue(args, settings) as queue:
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


COMMANDS: dict[str, Callable] = {
    "sweep": _sweep_parser,
    "results": _results_parser,
    "watch": _watch_parser,
}
"""This module's commands: name -> the function that adds its parser."""
