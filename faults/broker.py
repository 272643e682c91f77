"""beanstalkd killed with ``kill -9`` mid-sweep, then started again on the same port and binlog.

A submitter puts jobs one at a time while listeners run them, so the kill lands
on jobs queued, running and being submitted. A put beanstalkd answered
INSERTED is acknowledged: the binlog must bring it back. Counted: acknowledged
jobs that never finished, listeners that gave up, and the time from the
restart until jobs finish again.
"""

from __future__ import annotations

import threading
import time

from glowlab.errors import QueueUnreachableError
from glowlab.job import Job
from glowlab.queue import Queue

from .context import Context
from .report import Figure, at_most, exactly, info
from .world import World, extra_runs, finished, until

SCENARIO = "kill -9 beanstalkd"
LISTENERS = 3
RESUME_LIMIT = 10.0
"""Seconds from the restart to the first finished job: the listeners' reconnect
pause is capped at 5 s, then a job takes well under a second."""


class Submitter(threading.Thread):
    """Puts jobs one at a time, paced; while beanstalkd is away it waits and tries again."""

    def __init__(self, address: str, jobs: list[Job], pace: float, deadline: float):
        super().__init__(daemon=True)
        self.address, self.jobs, self.pace, self.deadline = address, jobs, pace, deadline
        self.acked: list[str] = []
        self.resent = 0
        """Jobs put more than once: a put cut short by the kill may have been inserted anyway."""

    def run(self) -> None:
        with Queue(self.address, timeout=2) as queue:
            for job in self.jobs:
                tries = 0
                while time.monotonic() < self.deadline:
                    tries += 1
                    try:
                        queue.submit(job)
                    except QueueUnreachableError:
                        time.sleep(0.1)
                        continue
                    self.acked.append(job.id)
                    break
                self.resent += tries > 1
                time.sleep(self.pace)


def run(ctx: Context) -> list[Figure]:
    s = ctx.sizes
    with ctx.world("broker") as world:
        tube = world.tube("broker")
        for _ in range(LISTENERS):
            world.listen("--tubes", tube)
        jobs = [_job(world, tube, round(ctx.rng.uniform(0.02, 0.2), 3)) for _ in range(s.broker_jobs)]
        deadline = time.monotonic() + 60 + 0.5 * s.broker_jobs
        submitter = Submitter(world.address, jobs, pace=0.03, deadline=deadline)
        submitter.start()
        restarts = []
        for k in range(s.broker_restarts):
            mark = s.broker_jobs * (k + 1) / (s.broker_restarts + 1)
            if until(lambda: len(submitter.acked) >= mark or world.check(), deadline - time.monotonic()):
                restarts.append(_restart(world, tube, s.broker_downtime))
        submitter.join(max(0.0, deadline - time.monotonic()))
        settled = until(lambda: world.settled(tube), deadline - time.monotonic(), interval=0.1)
        exited = len(world.exited())
        left = world.close()
    by_job = world.runs.by_job()
    lost = len(set(submitter.acked) - finished(by_job))
    resume = [r["resume"] for r in restarts]
    bound = len(restarts) * LISTENERS + submitter.resent
    return [
        exactly(SCENARIO, "acked_lost", "acknowledged jobs lost", lost, 0,
                note="" if settled else "the jobs had not all finished by the deadline"),
        exactly(SCENARIO, "listeners_exited", "listeners that exited", exited, 0),
        at_most(SCENARIO, "resume", "time from the restart to the next finished job (longest)",
                max(resume) if None not in resume and resume else None, RESUME_LIMIT, unit="s",
                note="; ".join(_describe(i, r) for i, r in enumerate(restarts))),
        at_most(SCENARIO, "extra_runs", "extra runs (at most one per listener per restart, "
                                        "plus puts sent again)", extra_runs(by_job), bound),
        exactly(SCENARIO, "orphans", "processes left running", len(left), 0, note="; ".join(left)),
        info(SCENARIO, "restarts", "restarts (jobs acknowledged / sent again)",
             f"{len(restarts)} ({len(submitter.acked)} / {submitter.resent})"),
        info(SCENARIO, "reconnect", "time until every listener reserves again (longest)",
             max((r["all_back"] or 0.0) for r in restarts) if restarts else None, unit="s"),
    ]


def _describe(index: int, restart: dict) -> str:
    return (f"restart {index + 1}: {restart['recovered']} jobs back from the binlog, the next one "
            f"finished after {restart['resume']} s, every listener reserving again after "
            f"{restart['all_back']} s")


def _job(world: World, tube: str, seconds: float) -> Job:
    argv = world.runs.argv(seconds)
    return Job(cmd=argv[0], args=tuple(argv[1:]), tube=tube, ttr=10)


def _restart(world: World, tube: str, downtime: float) -> dict:
    """Kill beanstalkd, leave it dead for ``downtime`` s, start it on the same port and binlog;
    how long until a job finishes, and until every listener reserves again."""
    world.broker.stop(sig_kill=True)
    time.sleep(downtime)  # the outage itself, not a wait for some state
    world.broker.start()
    up = time.monotonic()
    back = _counts_when_back(world, tube)
    recovered = sum(back.get(k, 0) for k in ("ready", "reserved", "delayed", "buried"))
    resumed = until(lambda: (world.counts(tube) or {}).get("deleted", 0) > 0, 30, interval=0.01)
    resume = time.monotonic() - up if resumed else None
    all_back = until(lambda: int(world.safely(world.queue.stats, {}).get("current-workers", 0)) >= LISTENERS,
                     30, interval=0.01)
    return {"resume": None if resume is None else round(resume, 2), "recovered": recovered,
            "all_back": round(time.monotonic() - up, 2) if all_back else None}


def _counts_when_back(world: World, tube: str, timeout: float = 10.0) -> dict:
    """The tube's counts once beanstalkd answers (the first call after a restart only reconnects)."""
    deadline = time.monotonic() + timeout
    while (counts := world.counts(tube)) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return counts or {}
