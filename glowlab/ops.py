"""Operator commands: stats, drain, pause, kick, peek, errors and run-here.

Each command is a small function over :class:`~glowlab.queue.Queue`; what it
prints is built by a pure ``format_*`` function beside it. ``glowlab.cli``
only parses, calls and prints.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence, TextIO

from . import runner
from .errors import GlowlabError, InvalidJobError, QueueUnreachableError
from .job import Job, check_tube, decode, from_dict
from .listener import ERRORS_TUBE, INTERNAL_PREFIX, report_failure
from .mail import SMTP_TIMEOUT, Mailer
from .outcome import Outcome, Status
from .queue import Queue, Reserved
from .signing import SIG_KEY, Keyring

log = logging.getLogger("glowlab")

STATES = ("ready", "delayed", "buried")
"""The states a job can be drained, peeked or kicked in (reserved ones belong to a listener)."""
COUNTS = ("ready", "reserved", "delayed", "buried")
SERVER_KEY = "_server"
"""Key of the server totals in ``glowlab stats --json`` (beside one key per tube)."""


def tube_names(text: str | Iterable[str]) -> list[str]:
    """Tube names from ``a,b`` (or several such words), checked, in order, without repeats."""
    words = [text] if isinstance(text, str) else list(text)
    names = [t.strip() for word in words for t in word.split(",") if t.strip()]
    if not names:
        raise InvalidJobError("give at least one tube name, e.g. sims or sims,post", field="tube")
    return list(dict.fromkeys(check_tube(t) for t in names))


# -- stats -------------------------------------------------------------------------
def stats(queue: Queue, tubes: Sequence[str] = (), *, internal: bool = False) -> dict[str, Any]:
    """glow's ``-stats`` record: one entry per tube, plus the server totals under ``_server``.

    Without ``tubes``, every tube but glowlab's internal result tubes (unless ``internal``).
    """
    names = list(tubes) or sorted(t for t in queue.tubes()
                                  if internal or not t.startswith(INTERNAL_PREFIX))
    report: dict[str, Any] = {name: tube_counts(queue.stats_tube(name)) for name in names}
    report[SERVER_KEY] = server_counts(queue.stats(), queue.address)
    return report


def tube_counts(raw: Mapping[str, Any] | None) -> dict[str, int]:
    """beanstalkd's ``stats-tube`` in glow's shape; a tube that does not exist is empty."""
    raw = raw or {}
    counts = {f"jobs-{k}": int(raw.get(f"current-jobs-{k}", 0)) for k in COUNTS}
    counts["pause"] = int(raw.get("pause-time-left", 0))
    return counts


def server_counts(raw: Mapping[str, Any], address: str) -> dict[str, Any]:
    """The server totals; ``listener-slots`` counts connections that reserve (listener slots)."""
    counts: dict[str, Any] = {"address": address}
    counts.update({f"jobs-{k}": int(raw.get(f"current-jobs-{k}", 0)) for k in COUNTS})
    counts.update({
        "listener-slots": int(raw.get("current-workers", 0)),
        "listener-slots-idle": int(raw.get("current-waiting", 0)),
        "connections": int(raw.get("current-connections", 0)),
        "tubes": int(raw.get("current-tubes", 0)),
        "total-jobs": int(raw.get("total-jobs", 0)),
        "uptime": int(raw.get("uptime", 0)),
        "version": str(raw.get("version", "")),
    })
    return counts


def format_stats(report: Mapping[str, Any]) -> str:
    """The stats record as an aligned table and a line of server totals."""
    rows = [["TUBE", "READY", "RESERVED", "DELAYED", "BURIED", "PAUSED"]]
    for name, c in report.items():
        if name != SERVER_KEY:
            rows.append([name, *(str(c[f"jobs-{k}"]) for k in COUNTS),
                         f"{c['pause']}s" if c["pause"] else "-"])
    width = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width[0]) if i == 0 else cell.rjust(width[i])
                       for i, cell in enumerate(row)).rstrip() for row in rows]
    if len(rows) == 1:
        lines.append("(no tubes)")
    s = report[SERVER_KEY]
    lines.append(
        f"\nbeanstalkd {s['version']} at {s['address']}: {s['jobs-ready']} ready, "
        f"{s['jobs-reserved']} reserved, {s['jobs-delayed']} delayed, {s['jobs-buried']} buried; "
        f"{s['listener-slots']} listener slot(s) connected, {s['listener-slots-idle']} idle")
    return "\n".join(lines)


# -- drain -------------------------------------------------------------------------
@dataclass
class DrainReport:
    """What a drain did: jobs written and deleted, jobs kept, jobs left to their listeners."""

    drained: int = 0
    kept: list[tuple[str, int, str]] = field(default_factory=list)
    """(tube, beanstalkd id, reason) of bodies that are not glowlab jobs; still queued."""
    reserved: dict[str, int] = field(default_factory=dict)
    """Per tube, jobs reserved by listeners (running), which a drain never takes."""


@dataclass
class _Held:
    """A job the drain reserved; ``restore`` puts it back in the state it had."""

    id: int
    tube: str
    state: str
    pri: int
    ready_at: float

    def delay_left(self) -> int:
        """Whole seconds until the job was due to become ready (0 unless delayed)."""
        return max(0, math.ceil(self.ready_at - time.monotonic())) if self.state == "delayed" else 0

    def restore(self, queue: Queue) -> None:
        if self.state == "buried":
            queue.bury(self.id, self.pri)
        else:
            queue.release(self.id, self.pri, self.delay_left())


def drained_record(body: bytes, job_stats: Mapping[str, Any],
                   keyring: Keyring | None = None) -> dict[str, Any]:
    """The job record that ``glowlab submit`` requeues as the job was: its body with
    beanstalkd's current priority and, for a delayed job, the delay still to run.

    Raises InvalidJobError for a body that is not a glowlab job or, with a
    keyring, has no valid signature: a drain must not launder a forged job into
    one that submit signs. The signature itself is left out (submit signs anew).
    """
    try:
        job = decode(body, keyring)
    except RecursionError:
        raise InvalidJobError("body is nested too deeply to be a job") from None
    delay = int(job_stats.get("time-left", 0)) if job_stats.get("state") == "delayed" else 0
    # the body as written (keys glowlab ignores included), scheduled as beanstalkd holds it now
    record = {k: v for k, v in json.loads(body).items() if k != SIG_KEY}
    return {**record, "pri": int(job_stats.get("pri", job.pri)), "delay": delay, "ttr": job.ttr}


def drain(queue: Queue, tubes: Sequence[str], emit: Callable[[dict[str, Any]], None]) -> DrainReport:
    """Remove every ready, delayed and buried job of ``tubes``, passing each record to ``emit``.

    A job is reserved (so no listener starts it meanwhile), emitted, and only then
    deleted. Bodies that are not glowlab jobs stay queued, in their state. If ``emit``
    or the connection fails, the job in hand goes back as it was.
    """
    report = DrainReport()
    held: dict[int, _Held] = {}
    try:
        for tube in tubes:
            for state in STATES:
                _drain_state(queue, tube, state, emit, held, report)
            mine = sum(1 for h in held.values() if h.tube == tube)
            reserved = tube_counts(queue.stats_tube(tube))["jobs-reserved"] - mine
            if reserved > 0:
                report.reserved[tube] = reserved
    finally:
        _restore(queue, held.values())
    return report


def _drain_state(queue: Queue, tube: str, state: str, emit: Callable[[dict[str, Any]], None],
                 held: dict[int, _Held], report: DrainReport) -> None:
    peek = getattr(queue, f"peek_{state}")
    while (peeked := peek(tube)) is not None:
        if peeked.id in held:  # held longer than its ttr, so it came back: hold it again
            queue.reserve_job(peeked.id)
            continue
        taken = _take(queue, peeked, tube)
        if taken is None:
            continue  # a listener reserved it first, or it is gone
        try:
            record = drained_record(peeked.body, {"state": taken.state, "pri": taken.pri,
                                                  "time-left": taken.delay_left()}, queue.keyring)
        except InvalidJobError as exc:
            held[taken.id] = taken
            report.kept.append((tube, taken.id, str(exc)))
            continue
        try:
            emit(record)
        except BaseException:
            _restore(queue, [taken])
            raise
        queue.delete(taken.id)
        report.drained += 1


def _take(queue: Queue, peeked: Reserved, tube: str) -> _Held | None:
    job_stats = queue.stats_job(peeked.id)
    if job_stats is None or job_stats.get("state") not in STATES:
        return None
    if queue.reserve_job(peeked.id) is None:
        return None
    return _Held(peeked.id, tube, job_stats["state"], int(job_stats["pri"]),
                 time.monotonic() + int(job_stats.get("time-left", 0)))


def _restore(queue: Queue, held: Iterable[_Held]) -> None:
    for job in held:
        try:
            job.restore(queue)
        except GlowlabError as exc:  # the connection is gone: beanstalkd makes the job ready
            log.warning("job %s went back to ready, not %s: %s", job.id, job.state, exc)
            return


class JsonListWriter:
    """Writes records as a JSON list, one per line, flushing each before returning.

    ``close`` ends the list, so even an interrupted drain leaves valid JSON.
    """

    def __init__(self, stream: TextIO):
        self._stream = stream
        self._count = 0

    def __call__(self, record: Mapping[str, Any]) -> None:
        self._stream.write(("[\n" if self._count == 0 else ",\n") + json.dumps(record))
        self._stream.flush()
        self._count += 1

    def close(self) -> None:
        self._stream.write("[]\n" if self._count == 0 else "\n]\n")
        self._stream.flush()


# -- pause, kick, peek ---------------------------------------------------------------
def pause(queue: Queue, tubes: Sequence[str], seconds: int) -> None:
    """Stop listeners reserving from ``tubes`` for ``seconds``; 0 resumes them.

    beanstalkd keeps a tube only while it has jobs or clients, so a pause of a
    tube that does not exist now fails before any tube is paused.
    """
    missing = [t for t in tubes if queue.stats_tube(t) is None]
    if missing and seconds:
        raise GlowlabError(f"cannot pause {', '.join(missing)}: beanstalkd has no such tube now "
                           "(a tube exists only while it has jobs or watchers); queue the jobs first")
    for tube in tubes:
        queue.pause_tube(tube, seconds)


def kickable(queue: Queue, tube: str) -> int:
    """How many jobs a kick of ``tube`` can reach now: its buried jobs, else its delayed ones."""
    counts = tube_counts(queue.stats_tube(tube))
    return counts["jobs-buried"] or counts["jobs-delayed"]


def kick(queue: Queue, tube: str, bound: int) -> tuple[int, str]:
    """Make up to ``bound`` jobs of ``tube`` ready: buried ones, or delayed ones if
    none is buried (beanstalkd's rule). Returns (count, the state they were in)."""
    state = "buried" if tube_counts(queue.stats_tube(tube))["jobs-buried"] else "delayed"
    return queue.kick(tube, bound), state


def peek(queue: Queue, tube: str, state: str) -> dict[str, Any] | None:
    """The next job of ``tube`` in ``state``: beanstalkd id, stats-job, body, job record."""
    peeked = getattr(queue, f"peek_{state}")(tube)
    if peeked is None:
        return None
    try:
        record: dict[str, Any] | None = decode(peeked.body).to_dict()
    except (InvalidJobError, RecursionError):
        record = None
    return {"id": peeked.id, "state": state, "stats": queue.stats_job(peeked.id) or {},
            "job": record, "body": peeked.body.decode("utf-8", errors="replace")}


def format_peek(info: Mapping[str, Any]) -> str:
    """A peeked job for people: id and state, its stats, its record (or raw body)."""
    s = info["stats"]
    lines = [f"job {info['id']} ({info['state']}) on tube {s.get('tube', '?')}"]
    lines += [f"  {key}: {s[key]}" for key in ("pri", "age", "delay", "ttr", "time-left", "reserves",
                                               "timeouts", "releases", "buries", "kicks") if key in s]
    if info["job"] is not None:
        job = from_dict(info["job"])
        lines += [f"  command: {job.command_line}", f"  record: {json.dumps(info['job'])}"]
    else:
        lines.append(f"  body (not a glowlab job): {info['body'][:2000]}")
    return "\n".join(lines)


# -- errors ------------------------------------------------------------------------
def read_errors(queue: Queue) -> list[tuple[int, dict[str, Any]]]:
    """Every ready GLOW_ERRORS message, oldest first, left in the queue.

    The messages are reserved, which is the only way to see past the first, and
    released with their priority at once, before anything is printed. Should
    this connection die meanwhile, beanstalkd makes them ready again: none is lost.
    """
    queue.watch_only([ERRORS_TUBE])  # a watched tube is never removed, so its counters last
    taken: list[tuple[Reserved, int]] = []
    try:
        while (reserved := queue.reserve(0)) is not None:
            job_stats = queue.stats_job(reserved.id) or {}
            taken.append((reserved, int(job_stats.get("pri", 0))))
    finally:
        for reserved, pri in taken:
            queue.release(reserved.id, pri)
    return [(r.id, error_record(r.body)) for r, _ in taken]


def error_record(body: bytes) -> dict[str, Any]:
    """A GLOW_ERRORS message as a dict; a body that is not a JSON object is kept as ``raw``."""
    try:
        record = json.loads(body)
    except (ValueError, RecursionError):
        record = None
    return record if isinstance(record, dict) else {"raw": body.decode("utf-8", errors="replace")}


def follow_errors(queue: Queue, emit: Callable[[int, dict[str, Any]], None], *,
                  interval: float = 0.5, stop: threading.Event | None = None) -> None:
    """Emit every GLOW_ERRORS message, then each new one as it comes, until ``stop``.

    It rereads the tube only when its ``total-jobs`` counter moved (a put), and
    emits messages with a beanstalkd id above the last seen (ids only grow).
    """
    stop = stop or threading.Event()
    last_id, last_total = 0, -1
    while not stop.is_set():
        total = int((queue.stats_tube(ERRORS_TUBE) or {}).get("total-jobs", 0))
        if total != last_total:
            for job_id, record in read_errors(queue):
                if job_id > last_id:
                    emit(job_id, record)
                    last_id = job_id
            last_total = int((queue.stats_tube(ERRORS_TUBE) or {}).get("total-jobs", 0))
        stop.wait(interval)


def format_error(job_id: int, record: Mapping[str, Any], *, log_lines: int = 8) -> str:
    """One GLOW_ERRORS message for people: when, where, what failed, the end of its log."""
    if "raw" in record and len(record) == 1:
        return f"#{job_id}  (not a glowlab report) {record['raw'][:2000]}"
    when = record.get("finished") or record.get("started")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) if isinstance(when, (int, float)) else ""
    head = [f"#{job_id}", stamp, " ".join(str(record[k]) for k in ("host", "tube") if record.get(k)),
            str(record.get("error") or "failed")]
    lines = ["  ".join(part for part in head if part),
             f"    $ {record.get('cmd') or record.get('command') or '(no command)'}"]
    tail = str(record.get("log") or "").rstrip().splitlines()[-log_lines:]
    lines += [f"    | {line}" for line in tail]
    return "\n".join(lines)


# -- run here ------------------------------------------------------------------------
def local_job(fields: Mapping[str, Any], command: Sequence[str]) -> Job:
    """The job ``glowlab run`` runs: the tube defaults to ``local`` and, without
    --out/--stdout/--stderr, output goes to this terminal."""
    if not command:
        raise InvalidJobError("give the command to run after --, e.g. glowlab run -- ./sim.sh")
    record = {"tube": "local", **fields, "cmd": command[0], "args": list(command[1:])}
    if not any(k in fields for k in ("out", "stdout", "stderr")):
        record.update(stdout="/dev/stdout", stderr="/dev/stderr")
    return from_dict(record)


def run_here(job: Job, *, address: str, mailer: Mailer | None = None,
             stop: threading.Event | None = None) -> Outcome:
    """Run ``job`` in the foreground as a listener would, retries included (at once,
    without backoff); a final failure is reported to GLOW_ERRORS and by mail."""
    name = f"{runner.HOST}:{os.getpid()} (glowlab run)"
    control = runner.Control(stop=stop)
    for attempt in range(1, job.retries + 2):
        outcome = runner.run(job, attempt=attempt, listener=name, control=control)
        if outcome.ok or outcome.permanent or outcome.status is Status.INTERRUPTED:
            break
        if stop is not None and stop.is_set():
            return outcome  # interrupted as the attempt ended: neither retried nor reported
        if attempt <= job.retries:
            log.warning("attempt %d of %d failed (%s); trying again", attempt, job.retries + 1,
                        outcome.describe())
    if not outcome.ok and outcome.status is not Status.INTERRUPTED:
        _report(job, outcome, address, mailer)
    return outcome


def _report(job: Job, outcome: Outcome, address: str, mailer: Mailer | None) -> None:
    try:
        with Queue(address) as queue:
            report_failure(queue, job, outcome, mailer)
    except QueueUnreachableError as exc:
        log.warning("the failure was not reported to %s: %s", ERRORS_TUBE, exc)
    finally:
        if mailer is not None:
            mailer.close(timeout=SMTP_TIMEOUT)


def exit_status(outcome: Outcome) -> int:
    """The shell's convention for how the job ended: its exit status, 128 + a killing
    signal, 124 for a timeout, 127 for a missing command, 126 if it could not start."""
    if outcome.status is Status.TIMEOUT:
        return 124
    if outcome.error:
        return 127 if outcome.permanent else 126
    if outcome.signal is not None:
        return 128 + outcome.signal
    return outcome.exit_code or 0
