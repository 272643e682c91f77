"""Operator commands: stats, drain, pause, resume, kick, peek, errors."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable

from ..errors import GlowlabError
from ..settings import Settings
from .common import _command, add_queue_option, connect_queue


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    from .. import ops

    tubes = ops.tube_names(args.tubes) if args.tubes else []
    with connect_queue(args, settings) as queue:
        report = ops.stats(queue, tubes, internal=args.all)
    print(json.dumps(report, indent=2) if args.json else ops.format_stats(report))
    return 0


def cmd_drain(args: argparse.Namespace, settings: Settings) -> int:
    import signal

    from .. import ops

    tubes = ops.tube_names(args.tubes)
    write = ops.JsonListWriter(sys.stdout)
    signal.signal(signal.SIGTERM, _interrupt)  # unwind, so the job in hand goes back as it was
    try:
        with connect_queue(args, settings) as queue:
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

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def cmd_pause(args: argparse.Namespace, settings: Settings) -> int:
    from .. import ops

    tubes = ops.tube_names(args.tubes)
    seconds = getattr(args, "seconds", 0)
    with connect_queue(args, settings) as queue:
        ops.pause(queue, tubes, seconds)
    print(f"paused {', '.join(tubes)} for {seconds} s" if seconds else f"resumed {', '.join(tubes)}")
    return 0


def cmd_kick(args: argparse.Namespace, settings: Settings) -> int:
    from .. import ops

    if args.job is not None:
        if args.tube or args.count is not None or args.all:
            raise GlowlabError("--job takes no tube, count or --all: glowlab kick --job ID")
        with connect_queue(args, settings) as queue:
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
    with connect_queue(args, settings) as queue:
        bound = ops.kickable(queue, tube) if args.all else (1 if args.count is None else args.count)
        count, state = ops.kick(queue, tube, max(1, bound))
    print(f"kicked {count} {state} job(s) of {tube}" if count
          else f"nothing to kick: {tube} has no buried or delayed jobs")
    return 0


def cmd_peek(args: argparse.Namespace, settings: Settings) -> int:
    from .. import ops

    tube = ops.tube_names(args.tube)[0]
    states = [args.state] if args.state else list(ops.STATES)
    with connect_queue(args, settings) as queue:
        found = {state: ops.peek(queue, tube, state) for state in states}
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    for state, info in found.items():
        print(ops.format_peek(info) if info else f"no {state} job on {tube}")
    return 0


def cmd_errors(args: argparse.Namespace, settings: Settings) -> int:
    from .. import ops

    def emit(job_id: int, record: dict) -> None:
        text = json.dumps({"id": job_id, **record}) if args.json else ops.format_error(job_id, record)
        print(text if args.json else text + "\n", flush=True)

    with connect_queue(args, settings) as queue:
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


COMMANDS: dict[str, Callable] = {
    "stats": _stats_parser,
    "drain": _drain_parser,
    "pause": _pause_parser,
    "resume": _resume_parser,
    "kick": _kick_parser,
    "peek": _peek_parser,
    "errors": _errors_parser,
}
"""This module's commands: name -> the function that adds its parser."""
