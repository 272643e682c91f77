"""The listener: reserve jobs from beanstalkd tubes, run them, settle them.

Each slot (``--jobs N``) is a thread with its own connection, so each running
job holds its own reservation and is touched on that connection. An idle slot
blocks in ``reserve-with-timeout``; the timeout is only the rhythm at which it
notices new tubes, dependency changes and shutdown.

A job the listener hands back without having run it to the end (shutdown, a
dependency that still has work) goes back by closing that slot's connection:
beanstalkd returns it to ready at once and, unlike ``release``, does not count
it. So ``releases + 1`` is exactly the attempt number: only failures release.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from . import runner
from .deps import Dependencies
from .errors import GlowlabError, InvalidJobError, QueueUnreachableError
from .guardian import Guardian
from .job import Job, decode
from .mail import SMTP_TIMEOUT, Mailer
from .outcome import Outcome, Status, error_report, malformed_report
from .queue import Queue, Reserved
from .settings import parse_address
from .signing import Keyring

log = logging.getLogger("glowlab")

ERRORS_TUBE = "GLOW_ERRORS"
INTERNAL_PREFIX = "glowlab."
"""Tubes under this prefix carry results back to submitters; listeners never run them."""

IDLE_TUBE = INTERNAL_PREFIX + "idle"
"""Watched when every tube is excluded or waiting; nothing is ever put there."""
_IDLE_ONLY = [IDLE_TUBE]

RHYTHM = 1
"""Seconds an idle slot blocks in reserve before it looks at tubes and shutdown again."""
HEARTBEAT_CHECK = 0.3
"""Seconds between looks at a running job's connection (touches are rarer: a third of the TTR)."""
TOUCH_MARGIN = 0.5
"""Seconds before a reservation would lapse at which a job without an answered touch is stopped."""
RECONNECT_CAP = 5.0
"""Longest pause between attempts to reach a beanstalkd that went away."""


@dataclass
class ListenerOptions:
    """How one listener behaves (the ``glowlab listen`` flags)."""

    address: str
    tubes: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    jobs: int = 1
    deps_file: str | None = None
    smtp_server: str | None = None
    mail_from: str = "glow@example.com"
    name: str = field(default_factory=lambda: f"{runner.HOST}:{os.getpid()}")
    backoff_base: float = 5.0
    """Seconds before the first retry; each further retry waits about twice as long."""
    backoff_cap: float = 600.0
    kill_grace: float = runner.KILL_GRACE
    keyring: Keyring | None = None
    """With keys, only jobs signed with one of them run (see docs/security.md)."""


class _Finished(NamedTuple):
    """A job that succeeded; its delete goes out with the slot's next reserve, which
    saves each job a round trip."""

    beanstalkd_id: int
    job: Job
    outcome: Outcome


def backoff(attempt: int, base: float, cap: float) -> int:
    """Whole seconds before retrying after failed ``attempt``: exponential, capped,
    jittered within the upper half so failed jobs do not come back in lockstep."""
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return math.ceil(random.uniform(ceiling / 2, ceiling)) if ceiling > 0 else 0


class Listener:
    """Runs jobs from a queue until told to stop (see :meth:`stop`)."""

    def __init__(self, options: ListenerOptions):
        self.options = options
        self.slots = options.jobs or os.cpu_count() or 1
        self.deps = Dependencies(options.deps_file)
        self.mailer = Mailer(options.smtp_server, options.mail_from) if options.smtp_server else None
        self.draining = threading.Event()   # stop reserving, finish running jobs
        self.killing = threading.Event()    # stop running jobs and hand them back
        self.reopen_log: Callable[[], None] = lambda: None
        self._watchlist = _Watchlist(options, self.deps)
        self._link = _Link(options.address)
        self._guardian: Guardian | None = None
        self._results_dir = ""

    def stop(self, *, graceful: bool = True) -> None:
        """Stop reserving; ``graceful=False`` also stops running jobs and hands them back."""
        self.draining.set()
        if not graceful:
            self.killing.set()

    def run(self) -> None:
        """Run the slots until stopped; returns when every slot has finished."""
        self._results_dir = tempfile.mkdtemp(prefix="glowlab-results-")
        self._guardian = Guardian()
        threads = [threading.Thread(target=self._slot, args=(i,), name=f"slot-{i}", daemon=True)
                   for i in range(self.slots)]
        for thread in threads:
            thread.start()
        try:
            self._wait(threads)
        finally:
            self._guardian.close()
            if self.mailer:
                self.mailer.close(timeout=SMTP_TIMEOUT)
            shutil.rmtree(self._results_dir, ignore_errors=True)

    def _wait(self, threads: list[threading.Thread]) -> None:
        """Wait for the slots; signal handlers run in this thread meanwhile.

        No timeout: a join is interrupted for a signal's handler and resumed, so
        an idle listener's main thread never wakes on its own.
        """
        for thread in threads:
            thread.join()

    # -- one slot -------------------------------------------------------------
    def _slot(self, index: int) -> None:
        queue = Queue(self.options.address)
        finished: _Finished | None = None
        pause = 0.0
        while not self.draining.is_set():
            try:
                finished = self._step(queue, finished)
                self._link.up()
                pause = 0.0
            except QueueUnreachableError as exc:
                finished = self._unsettled(finished)
                self._link.down(exc)
                pause = min(RECONNECT_CAP, pause * 2 or 0.1)
            except Exception:  # a bug or a refusal must not end the slot: log it, carry on
                finished = self._unsettled(finished)
                log.exception("slot %d: unexpected error; carrying on", index)
                pause = RHYTHM
            if pause:
                queue.close()  # whatever it held goes back to ready
                self.draining.wait(pause)
        if finished is not None:  # told to stop: the last job's delete cannot wait for a reserve
            try:
                self._deleted(finished, queue.delete(finished.beanstalkd_id))
            except QueueUnreachableError:
                self._unsettled(finished)
        queue.close()

    def _step(self, queue: Queue, finished: _Finished | None) -> _Finished | None:
        """Reserve the next job (deleting the last one in the same round trip) and run it."""
        # with nothing to watch, block on a tube nobody uses: same rhythm, same liveness check
        queue.watch_only(self._watchlist.tubes(queue) or _IDLE_ONLY)
        if finished is None:
            reserved = queue.reserve(RHYTHM)
        else:
            deleted, reserved = queue.delete_and_reserve(finished.beanstalkd_id, RHYTHM)
            self._deleted(finished, deleted)
        if reserved is None:
            return None
        if self.draining.is_set():
            queue.close()  # reserved as we were told to stop: hand it back, uncounted
            return None
        return self._handle(queue, reserved)

    def _deleted(self, finished: _Finished, deleted: bool) -> None:
        self._event("COMPLETE" if deleted else "LOST", finished.job, finished.outcome)

    @staticmethod
    def _unsettled(finished: _Finished | None) -> None:
        """Say that a job ran but beanstalkd never heard how it ended (so it will run again)."""
        if finished is not None:
            outcome = finished.outcome
            log.warning("job %s ended (%s) but beanstalkd went away before it was settled; "
                        "it will run again", finished.job.id, "done" if outcome.ok else outcome.describe())

    # -- one job --------------------------------------------------------------
    def _handle(self, queue: Queue, reserved: Reserved) -> _Finished | None:
        """Run one job; a success comes back to be deleted with the next reserve."""
        try:
            job = decode(reserved.body, self.options.keyring)
        except (InvalidJobError, RecursionError) as exc:
            self._reject(queue, reserved, queue.stats_job(reserved.id) or {}, str(exc))
            return None
        # Only a job that was released (a retry) or may have to wait needs beanstalkd's view
        # of it: skipping the round trip otherwise is a third of the per-job cost of `true`.
        needs_stats = job.retries or job.after or self._watchlist.has_dependencies
        stats = (queue.stats_job(reserved.id) or {}) if needs_stats else {}
        tube = stats.get("tube") or job.tube
        if self._watchlist.must_wait(queue, tube, job.after):
            queue.close()  # hand it back, uncounted: it did not run
            self._event("WAITING", job)
            return None
        attempt = int(stats.get("releases", 0)) + 1
        self._event("RUNNING", job, attempt=attempt)
        self._announce(queue, job, attempt)
        outcome = runner.run(job, attempt=attempt, listener=self.options.name,
                             control=self._control(queue, reserved, job),
                             result_path=os.path.join(self._results_dir, f"{reserved.id}.json"))
        try:
            return self._settle(queue, reserved, job, outcome)
        except QueueUnreachableError:
            self._unsettled(_Finished(reserved.id, job, outcome))
            raise

    def _announce(self, queue: Queue, job: Job, attempt: int) -> None:
        """Tell the job's submitter (its results tube) that it started."""
        if job.results:
            self._put(queue, job.results, {"event": "start", "job_id": job.id, "attempt": attempt,
                                           "host": runner.HOST, "started": time.time()})

    def _control(self, queue: Queue, reserved: Reserved, job: Job) -> runner.Control:
        return runner.Control(
            tick=_Heartbeat(queue, reserved.id, job.ttr), tick_every=HEARTBEAT_CHECK, stop=self.killing,
            kill_grace=self.options.kill_grace,
            on_start=self._guardian.add, on_exit=self._guardian.remove,
        )

    def _settle(self, queue: Queue, reserved: Reserved, job: Job, outcome: Outcome) -> _Finished | None:
        if outcome.status is Status.INTERRUPTED:
            self._interrupted(queue, job, outcome)
        elif self._retry(queue, reserved, job, outcome):
            pass
        elif outcome.ok:
            self._publish(queue, job, outcome)  # its result is out before the job is deleted
            return _Finished(reserved.id, job, outcome)
        else:
            self._publish(queue, job, outcome)
            if queue.bury(reserved.id, job.pri):
                self._report_failure(queue, job, outcome)
            else:
                self._event("LOST", job, outcome)
        return None

    def _interrupted(self, queue: Queue, job: Job, outcome: Outcome) -> None:
        if self.killing.is_set():
            queue.close()  # hand it back, uncounted, for another listener to run at once
            self._event("RELEASED", job, outcome)
        else:  # the heartbeat failed: beanstalkd has given the job away, so ours was stopped
            self._event("LOST", job, outcome)

    def _retry(self, queue: Queue, reserved: Reserved, job: Job, outcome: Outcome) -> bool:
        if outcome.ok or outcome.permanent or outcome.attempt > job.retries:
            return False
        delay = backoff(outcome.attempt, self.options.backoff_base, self.options.backoff_cap)
        released = queue.release(reserved.id, job.pri, delay)
        self._event("RETRY" if released else "LOST", job, outcome, delay=delay)
        return True

    def _publish(self, queue: Queue, job: Job, outcome: Outcome) -> None:
        if job.results:
            self._put_body(queue, job.results, outcome.encode(queue.max_job_size))

    def _report_failure(self, queue: Queue, job: Job, outcome: Outcome) -> None:
        self._event("FAILED", job, outcome)
        report_failure(queue, job, outcome, self.mailer)

    def _reject(self, queue: Queue, reserved: Reserved, stats: dict, reason: str) -> None:
        """A malformed or unsigned body is never run: bury it and say why."""
        log.error("burying job %s without running it: %s", reserved.id, reason)
        if queue.bury(reserved.id, int(stats.get("pri", 0))):
            self._put_body(queue, ERRORS_TUBE, malformed_report(
                reserved.body, reason, beanstalkd_id=reserved.id, tube=stats.get("tube", ""),
                host=runner.HOST, listener=self.options.name, limit=queue.max_job_size))

    def _put(self, queue: Queue, tube: str, message: dict) -> None:
        self._put_body(queue, tube, json.dumps(message).encode())

    @staticmethod
    def _put_body(queue: Queue, tube: str, body: bytes) -> None:
        try:
            queue.put(tube, body)
        except QueueUnreachableError:
            raise
        except GlowlabError as exc:  # refused (too big, draining): the job itself goes on
            log.error("could not put a message on %s: %s", tube, exc)

    def _event(self, what: str, job: Job, outcome: Outcome | None = None, **extra: object) -> None:
        level = logging.WARNING if what in ("FAILED", "LOST") else logging.INFO
        if not log.isEnabledFor(level):
            return
        record = {**job.to_dict(), **extra}
        if outcome is not None:
            record["outcome"] = {"status": outcome.status.value, "exit_code": outcome.exit_code,
                                 "signal": outcome.signal, "seconds": round(outcome.seconds, 3),
                                 "attempt": outcome.attempt,
                                 "error": outcome.describe() if not outcome.ok else None}
        log.log(level, "%s %s", what, json.dumps(record))


def is_loopback(address: str) -> bool:
    """True when ``address`` can only be reached from this machine."""
    import ipaddress

    host, _ = parse_address(address)
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


def report_failure(queue: Queue, job: Job, outcome: Outcome, mailer: Mailer | None) -> None:
    """Say that ``job`` finally failed: mail its addresses, put a report on GLOW_ERRORS.

    Listeners and ``glowlab run`` both report through here. The mail is queued
    first, so an unreachable beanstalkd (raised to the caller) does not cost it too.
    """
    if mailer:
        mailer.send_failure(job, outcome)
    Listener._put_body(queue, ERRORS_TUBE, error_report(outcome, queue.max_job_size))


class _Heartbeat:
    """Keeps a running job's reservation: touches it every third of its TTR, and
    in between notices at once (locally, sending nothing) when beanstalkd closed
    the connection, which took the reservation with it.

    The reservation is only sure until one TTR after the last answered touch, so
    a touch waits for its reply no longer than that: behind a cut network link the
    job is stopped before beanstalkd can give it to another listener."""

    def __init__(self, queue: Queue, job_id: int, ttr: int):
        self._queue, self._job_id, self._ttr = queue, job_id, ttr
        self._every = max(HEARTBEAT_CHECK, ttr / 3)
        now = time.monotonic()
        self._next = now + self._every
        self._held_until = now + ttr

    def __call__(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return self._queue.is_open() and now < self._held_until - TOUCH_MARGIN
        self._next = now + self._every
        try:
            touched = self._queue.touch(
                self._job_id, timeout=max(0.05, self._held_until - now - TOUCH_MARGIN))
        except GlowlabError:
            return False  # the reservation died with the connection, or is about to
        if touched:
            self._held_until = time.monotonic() + self._ttr
        return touched


class _Watchlist:
    """The tubes to watch, worked out at most once per rhythm for all slots together.

    With default options that is one ``list-tubes`` a second; dependencies add
    one ``stats-tube`` per tube depended on.
    """

    def __init__(self, options: ListenerOptions, deps: Dependencies):
        self._options = options
        self._deps = deps
        self._lock = threading.Lock()
        self._tubes: list[str] = []
        self._expires = 0.0

    def tubes(self, queue: Queue) -> list[str]:
        """The tubes to watch; the very same list object until they change, so a slot
        sees at once that it has nothing to do (see :meth:`Queue.watch_only`)."""
        with self._lock:
            if time.monotonic() >= self._expires:
                tubes = self._compute(queue)
                if tubes != self._tubes:
                    self._tubes = tubes
                self._expires = time.monotonic() + RHYTHM
            return self._tubes

    @property
    def has_dependencies(self) -> bool:
        return self._deps.any

    def must_wait(self, queue: Queue, tube: str, after: tuple[str, ...]) -> bool:
        """Just before a job starts: does its tube (or its ``after``) wait for work elsewhere?"""
        with self._lock:
            self._deps.learn(tube, after)
            if not self._deps.blocked(tube, queue.stats_tube, after):
                return False
            self._expires = 0.0  # stop watching the tube now, not a rhythm later
            return True

    def _compute(self, queue: Queue) -> list[str]:
        tubes = [t for t in self._options.tubes or queue.tubes() if self._runnable(t)]
        self._deps.refresh()
        if self._deps.any:
            stats = _memo(queue.stats_tube)
            self._deps.forget_finished(stats)
            blocked = self._deps.blocked_tubes(tubes, stats)
            tubes = [t for t in tubes if t not in blocked]
        return sorted(tubes)

    def _runnable(self, tube: str) -> bool:
        return (tube not in self._options.exclude and tube != ERRORS_TUBE
                and not tube.startswith(INTERNAL_PREFIX))


def _memo(func: Callable[[str], object]) -> Callable[[str], object]:
    seen: dict[str, object] = {}

    def call(key: str) -> object:
        if key not in seen:
            seen[key] = func(key)
        return seen[key]
    return call


class _Link:
    """Says once when beanstalkd becomes unreachable, and once when it is back."""

    def __init__(self, address: str):
        self._address = address
        self._down = False
        self._lock = threading.Lock()

    def down(self, exc: Exception) -> None:
        with self._lock:
            if not self._down:
                self._down = True
                log.warning("%s; trying again every %g s at most, running jobs are stopped "
                            "(beanstalkd gives them to the next listener)", exc, RECONNECT_CAP)

    def up(self) -> None:
        if self._down:
            with self._lock:
                if self._down:
                    self._down = False
                    log.warning("beanstalkd at %s is reachable again", self._address)


def reopen_log(handler: logging.Handler) -> None:
    """Reopen the log file if it was moved away (logrotate); SIGHUP asks for it."""
    reopen = getattr(handler, "reopenIfNeeded", None)
    if reopen is not None:
        with handler.lock:  # a slot may be writing a line right now
            reopen()


def install_signals(listener: Listener, reopen: Callable[[], None] | None = None) -> None:
    """SIGINT: finish running jobs then exit (twice: like SIGTERM); SIGTERM: stop
    running jobs and hand them back; SIGHUP: reopen the log file."""

    def on_int(signum, frame):
        if listener.draining.is_set():
            log.warning("second interrupt: stopping running jobs and handing them back")
            listener.stop(graceful=False)
        else:
            log.warning("interrupt: finishing running jobs, then exiting (again to stop now)")
            listener.stop(graceful=True)

    def on_term(signum, frame):
        log.warning("terminated: stopping running jobs and handing them back")
        listener.stop(graceful=False)

    if reopen is not None:
        listener.reopen_log = reopen
    signal.signal(signal.SIGINT, on_int)
    signal.signal(signal.SIGTERM, on_term)
    # Python runs handlers in the main thread, between its own steps: the main
    # thread only waits for the slots, and a slot writing a line holds the lock
    # reopen_log takes, so the file is never swapped under a write
    signal.signal(signal.SIGHUP, lambda signum, frame: listener.reopen_log())
