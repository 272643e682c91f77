"""The listener: reserve jobs from beanstalkd tubes, run them, settle them.

Each slot (``--jobs N``) is a thread with its own connection, so each running
job holds its own reservation and is touched on that connection. An idle slot
blocks in ``reserve-with-timeout``; the timeout is only the rhythm at which it
notices new tubes, dependency changes and shutdown.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field

from . import runner
from .deps import Dependencies
from .errors import InvalidJobError, QueueUnreachableError
from .guardian import Guardian
from .job import Job, decode
from .mail import Mailer
from .outcome import Outcome, Status
from .queue import Queue, Reserved

log = logging.getLogger("glowlab")

ERRORS_TUBE = "GLOW_ERRORS"
INTERNAL_PREFIX = "glowlab."
"""Tubes under this prefix carry results back to submitters; listeners never run them."""

RHYTHM = 1
"""Seconds an idle slot blocks in reserve before it looks at tubes and shutdown again."""


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
    backoff_base: float = 2.0
    backoff_cap: float = 600.0


def backoff(attempt: int, base: float, cap: float) -> int:
    """Seconds before retry ``attempt``: exponential, capped, with full jitter in its upper half."""
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return max(1, round(random.uniform(ceiling / 2, ceiling)))


class Listener:
    """Runs jobs from a queue until told to stop (see :meth:`stop`)."""

    def __init__(self, options: ListenerOptions):
        self.options = options
        self.slots = options.jobs or os.cpu_count() or 1
        self.deps = Dependencies(options.deps_file)
        self.mailer = Mailer(options.smtp_server, options.mail_from) if options.smtp_server else None
        self.draining = threading.Event()   # stop reserving, finish running jobs
        self.killing = threading.Event()    # stop running jobs and hand them back
        self._results_dir = tempfile.mkdtemp(prefix="glowlab-results-")
        self._guardian: Guardian | None = None

    def stop(self, *, graceful: bool = True) -> None:
        self.draining.set()
        if not graceful:
            self.killing.set()

    def run(self) -> None:
        """Run the slots until stopped; returns when every slot has finished."""
        self._guardian = Guardian()
        threads = [threading.Thread(target=self._slot, name=f"slot-{i}", daemon=True)
                   for i in range(self.slots)]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.5)
        finally:
            self._guardian.close()
            shutil.rmtree(self._results_dir, ignore_errors=True)

    # -- one slot -------------------------------------------------------------
    def _slot(self) -> None:
        queue = Queue(self.options.address)
        pause = 0.0
        while not self.draining.is_set():
            try:
                reserved = self._reserve(queue)
                pause = 0.0
                if reserved is not None:
                    self._handle(queue, reserved)
            except QueueUnreachableError as exc:
                pause = min(5.0, pause * 2 or 0.1)
                log.warning("%s; retrying in %.1f s", exc, pause)
                self.draining.wait(pause)
        queue.close()

    def _reserve(self, queue: Queue) -> Reserved | None:
        queue.watch_only(self._tubes(queue))
        reserved = queue.reserve(RHYTHM)
        if reserved is not None and self.draining.is_set():
            queue.release(reserved.id, 0)  # reserved as we were told to stop: hand it back
            return None
        return reserved

    def _tubes(self, queue: Queue) -> list[str]:
        """The tubes to watch now: chosen, not excluded, not internal, not waiting."""
        tubes = self.options.tubes or queue.tubes()
        tubes = [t for t in tubes if t not in self.options.exclude and t != ERRORS_TUBE
                 and not t.startswith(INTERNAL_PREFIX)]
        self.deps.refresh()
        if self.deps.any:
            tubes = [t for t in tubes if not self.deps.blocked(t, queue.stats_tube)]
        return tubes

    # -- one job --------------------------------------------------------------
    def _handle(self, queue: Queue, reserved: Reserved) -> None:
        try:
            job = decode(reserved.body)
        except InvalidJobError as exc:
            self._reject(queue, reserved, str(exc))
            return
        self.deps.learn(job.tube, job.after)
        if job.after and self.deps.blocked(job.tube, queue.stats_tube):
            queue.release(reserved.id, job.pri)  # the tube is unwatched from now on
            return
        stats = queue.stats_job(reserved.id) or {}
        attempt = int(stats.get("reserves", 1))
        self._event("RUNNING", job)
        outcome = runner.run(job, attempt=attempt, listener=self.options.name,
                             control=self._control(queue, reserved, job),
                             result_path=os.path.join(self._results_dir, f"{job.id}.json"))
        self._settle(queue, reserved, job, outcome)

    def _control(self, queue: Queue, reserved: Reserved, job: Job) -> runner.Control:
        def touch() -> bool:
            try:
                return queue.touch(reserved.id)
            except QueueUnreachableError:
                return False  # the reservation died with the connection
        return runner.Control(
            tick=touch, tick_every=max(0.3, job.ttr / 3), stop=self.killing,
            on_start=self._guardian.add, on_exit=self._guardian.remove,
        )

    def _settle(self, queue: Queue, reserved: Reserved, job: Job, outcome: Outcome) -> None:
        if outcome.status is Status.INTERRUPTED:
            if self.killing.is_set():
                queue.release(reserved.id, job.pri)
                self._event("RELEASED", job)
            else:
                self._event("LOST", job)  # could not touch: the queue has given it away
            return
        if not outcome.ok and not outcome.permanent and outcome.attempt <= job.retries:
            delay = backoff(outcome.attempt, self.options.backoff_base, self.options.backoff_cap)
            queue.release(reserved.id, job.pri, delay)
            self._event("RETRY", job, outcome)
            return
        if job.results:
            queue.put(job.results, outcome.encode())
        if outcome.ok:
            queue.delete(reserved.id)
            self._event("COMPLETE", job, outcome)
        else:
            queue.bury(reserved.id, job.pri)
            self._report_failure(queue, job, outcome)

    def _reject(self, queue: Queue, reserved: Reserved, reason: str) -> None:
        """A malformed body is never run: bury it and say why."""
        queue.bury(reserved.id, 0)
        text = reserved.body[:200].decode("utf-8", errors="replace")
        log.error("burying malformed job %s: %s", reserved.id, reason)
        queue.put(ERRORS_TUBE, json.dumps({
            "cmd": "", "error": f"malformed job: {reason}", "log": text,
            "beanstalkd_id": reserved.id, "host": runner.HOST, "listener": self.options.name,
        }).encode())

    def _report_failure(self, queue: Queue, job: Job, outcome: Outcome) -> None:
        self._event("FAILED", job, outcome)
        message = {"cmd": outcome.command, "error": outcome.describe(),
                   "log": outcome.stderr or outcome.stdout, **outcome.to_dict()}
        queue.put(ERRORS_TUBE, json.dumps(message).encode())
        if self.mailer:
            self.mailer.send_failure(job, outcome)

    def _event(self, what: str, job: Job, outcome: Outcome | None = None) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        record = job.to_dict()
        if outcome is not None:
            record["outcome"] = {"status": outcome.status.value, "exit_code": outcome.exit_code,
                                 "seconds": round(outcome.seconds, 3), "attempt": outcome.attempt,
                                 "error": outcome.describe() if not outcome.ok else None}
        log.info("%s %s", what, json.dumps(record))


def install_signals(listener: Listener, reopen_log=lambda: None) -> None:
    """SIGINT: finish running jobs then exit (twice: like SIGTERM); SIGTERM: stop
    running jobs and release them; SIGHUP: reopen the log file."""

    def on_int(signum, frame):
        if listener.draining.is_set():
            log.warning("second interrupt: stopping running jobs and releasing them")
            listener.stop(graceful=False)
        else:
            log.warning("interrupt: finishing running jobs, then exiting (again to stop now)")
            listener.stop(graceful=True)

    def on_term(signum, frame):
        listener.stop(graceful=False)

    signal.signal(signal.SIGINT, on_int)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, lambda s, f: reopen_log())
