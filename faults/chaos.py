"""A mixed chaos run: everything at once, for minutes, then a settling.

Waves of sweeps come in (jobs that succeed, take seconds, fail, or hang past
their timeout; one retry each) while listeners are killed with ``kill -9`` or
stopped with TERM and replaced, beanstalkd is killed and restarted, and the
link of the listener in the network namespace is cut for longer than the TTR.
When the chaos stops every job must end either done or buried with a reason
(a GLOW_ERRORS report or a failed outcome), none left reserved, and nothing
may be left running.
"""

from __future__ import annotations

import math
import signal
import subprocess
import time
from dataclasses import dataclass, field

import pandas as pd

from glowlab import queue as glowlab_queue
from glowlab.batch import Batch
from glowlab.listener import ERRORS_TUBE, RHYTHM
from glowlab.outcome import Status
from glowlab.sweep import sweep

from .context import Context
from .netns import NetCut
from .report import Figure, exactly, info
from .world import World, until

SCENARIO = "chaos"
HOST_LISTENERS = 3
TTR = 5
TERM_LIMIT = glowlab_queue.IO_TIMEOUT + RHYTHM + 4
"""Seconds a TERMed listener may take to exit: a reply it waits for (its link may be cut)
may take the I/O timeout, then its job gets the kill grace (1 s)."""
KINDS = (("ok", 0.70), ("long", 0.10), ("fail", 0.10), ("hang", 0.10))


def row(rng, kind: str) -> dict:
    """One sweep row: how long the job works, its exit code, its timeout."""
    if kind == "ok":
        return {"kind": kind, "seconds": round(rng.uniform(0.1, 1.0), 2), "code": 0, "timeout": math.nan}
    if kind == "long":
        return {"kind": kind, "seconds": round(rng.uniform(3, 6), 2), "code": 0, "timeout": math.nan}
    if kind == "fail":
        return {"kind": kind, "seconds": 0.1, "code": 3, "timeout": math.nan}
    return {"kind": kind, "seconds": 30, "code": 0, "timeout": 1.5}


@dataclass
class Crew:
    """The listeners: three on this host and one behind the link that gets cut."""

    world: World
    net: NetCut
    options: tuple[str, ...]
    members: list[tuple[subprocess.Popen, bool]] = field(default_factory=list)
    termed: list[tuple[subprocess.Popen, float]] = field(default_factory=list)

    def start(self) -> None:
        for remote in [False] * HOST_LISTENERS + [True]:
            self.members.append((self._listen(remote), remote))

    def _listen(self, remote: bool) -> subprocess.Popen:
        return self.world.listen(*self.options, prefix=self.net.prefix if remote else ())

    def replace(self, rng, sig: int) -> None:
        """Send ``sig`` to a listener picked at random and start another in its place."""
        i = rng.randrange(len(self.members))
        proc, remote = self.members[i]
        self.world.kill(proc, sig)
        if sig == signal.SIGTERM:
            self.termed.append((proc, time.monotonic()))
        self.members[i] = (self._listen(remote), remote)

    def slow_to_exit(self) -> int:
        """TERMed listeners that took longer than TERM_LIMIT to exit."""
        slow = 0
        for proc, at in self.termed:
            try:
                proc.wait(max(0.0, at + TERM_LIMIT - time.monotonic()))
            except subprocess.TimeoutExpired:
                slow += 1
        return slow


@dataclass
class Tally:
    kills: int = 0
    terms: int = 0
    restarts: int = 0
    cuts: int = 0


def run(ctx: Context) -> list[Figure]:
    s = ctx.sizes
    with NetCut(ctx.rng) as net, ctx.world("chaos", host=net.host_ip) as world:
        tube = world.tube("chaos")
        crew = Crew(world, net, ("--tubes", tube, "--retry-base", "1", "--retry-cap", "2"))
        crew.start()
        batches: list[Batch] = []
        tally = _chaos(ctx, world, net, crew, tube, batches)
        settled = until(lambda: world.settled(tube), 60 + s.chaos_seconds, interval=0.2)
        reported = {r.get("job_id") for r in world.drain(ERRORS_TUBE)}
        rows = [(row, status, outcome) for batch in batches for row, status, outcome in batch.statuses()]
        ends = [_end(world, row, status, outcome, reported) for row, status, outcome in rows]
        counts = world.counts(tube) or {}
        slow = crew.slow_to_exit()
        exited = len(world.exited())
        left = world.close()
    jobs = len(ends)
    return [
        exactly(SCENARIO, "lost", "jobs neither done nor buried", sum(e == "lost" for e in ends), 0,
                note="" if settled else f"the tube had not settled: {counts}"),
        exactly(SCENARIO, "reserved", "jobs left reserved", counts.get("reserved"), 0),
        exactly(SCENARIO, "no_reason", "jobs buried without a reason", sum(e == "buried?" for e in ends), 0),
        exactly(SCENARIO, "wrong", "jobs in the wrong end state", sum(e == "wrong" for e in ends), 0),
        exactly(SCENARIO, "exited", "listeners that exited unbidden", exited, 0),
        exactly(SCENARIO, "slow_exit", f"TERMed listeners slower than {TERM_LIMIT:g} s to exit", slow, 0),
        exactly(SCENARIO, "orphans", "processes left running", len(left), 0, note="; ".join(left)),
        info(SCENARIO, "jobs", "jobs (done / buried with a reason)",
             f"{jobs} ({sum(e == 'done' for e in ends)} / {sum(e == 'buried' for e in ends)})"),
        info(SCENARIO, "faults", "kill -9 / TERM / broker restarts / cuts",
             f"{tally.kills} / {tally.terms} / {tally.restarts} / {tally.cuts}"),
        info(SCENARIO, "extra_runs", "extra runs (beyond the failing jobs' retries)",
             _extra(rows, world.runs.by_job())),
    ]


def _chaos(ctx: Context, world: World, net: NetCut, crew: Crew, tube: str, batches: list[Batch]) -> Tally:
    """Submit waves and cause faults until ``chaos_seconds`` have passed."""
    s, rng, tally = ctx.sizes, ctx.rng, Tally()
    span = s.chaos_seconds
    restarts = [(span * (k + 1) / (s.chaos_restarts + 1), "restart") for k in range(s.chaos_restarts)]
    cuts = [(span * (k + 0.5) / (s.chaos_cuts + 1), "cut") for k in range(s.chaos_cuts)]
    plan = sorted(restarts + cuts)
    start = time.monotonic()
    next_wave, next_fault, restore_at = 0.0, rng.uniform(2, 5), None
    while (now := time.monotonic() - start) < s.chaos_seconds:
        if now >= next_wave:
            batches.append(_wave(ctx, world, tube, len(batches)))
            next_wave += s.chaos_wave_every
        if plan and plan[0][0] <= now:
            _, what = plan.pop(0)
            if what == "restart":
                world.broker.stop(sig_kill=True)
                time.sleep(1.0)  # the outage itself
                world.broker.start()
                tally.restarts += 1
            elif not net.is_cut:
                net.cut()
                restore_at = now + TTR + glowlab_queue.IO_TIMEOUT
                tally.cuts += 1
        if restore_at is not None and now >= restore_at:
            net.restore()
            restore_at = None
        if now >= next_fault:
            sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
            crew.replace(rng, sig)
            tally.kills += sig == signal.SIGKILL
            tally.terms += sig == signal.SIGTERM
            next_fault = now + rng.uniform(2, 5)
        for batch in batches:
            world.safely(batch.collect, 0)
        time.sleep(0.1)
    if net.is_cut:
        net.restore()
    return tally


def _wave(ctx: Context, world: World, tube: str, number: int) -> Batch:
    rng = ctx.rng
    kinds = rng.choices([k for k, _ in KINDS], weights=[w for _, w in KINDS], k=ctx.sizes.chaos_wave)
    frame = pd.DataFrame([row(rng, kind) for kind in kinds])
    return sweep(frame, world.runs.template("seconds", "code"), tube=tube, queue=world.queue,
                 timeout="timeout", retries=1, ttr=TTR, name=f"{world.tag}-{number}")


def _extra(rows: list, by_job: dict) -> int:
    """Runs beyond one per job, and beyond two for jobs made to fail (their one retry)."""
    planned = sum(2 if row.params["kind"] in ("fail", "hang") else 1 for row, _, _ in rows)
    return sum(len(by_job.get(row.job_id, [])) for row, _, _ in rows) - planned


def _end(world: World, row, status: Status, outcome, reported: set) -> str:
    """How a job ended: done, buried (with a reason), buried? (without one), wrong, or lost."""
    state = world.state(row.beanstalkd_id) if row.beanstalkd_id else "never queued"
    should_fail = row.params["kind"] in ("fail", "hang")
    if state == "gone" and status is Status.DONE:
        return "wrong" if should_fail else "done"
    if state == "buried":
        if row.job_id not in reported and (outcome is None or outcome.ok):
            return "buried?"
        return "buried" if should_fail else "wrong"
    return "lost"
