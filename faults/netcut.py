"""A listener host cut off from beanstalkd for longer than the TTR.

The listener runs in a network namespace joined to beanstalkd by a veth pair
(see netns.py). The moment it starts a long job, before its first touch, the
link goes down: from then on its touches go nowhere. The job's TTR runs out
TTR seconds after it was reserved: by then the cut listener must have stopped
its copy (it cannot touch, so the job is no longer its own), and beanstalkd
should give the job to a listener on its own host. When the link comes back
the cut listener must reconnect and work again. Counted: runs of the job (2),
the job lost (0), and the times of each step, measured from the cut.

A listener on beanstalkd's host is kept busy by a blocker job until the cut,
so the job cannot go anywhere but the namespace first.
"""

from __future__ import annotations

import os
import time

from glowlab import listener as glowlab_listener
from glowlab import queue as glowlab_queue
from glowlab.job import Job

from .context import Context
from .netns import NetCut
from .report import Figure, at_most, exactly, info
from .world import Run, World, finished, runs_job, until

SCENARIO = "network cut"
LINK_BACK = 5.0
"""Seconds after the link's return by which the cut listener's closed connection (its FIN,
sent again by TCP) must have reached beanstalkd, which then gives its job away."""
FIRST_RUN = 600
"""Seconds the job's first run would last: only the cut may end it."""


def longest_stop(ttr: int) -> float:
    """Seconds from a cut until the cut listener must have stopped its copy, however it goes
    about it: the first touch is due a third of the TTR after the start, its reply may take
    the queue's I/O timeout, then TERM and the kill grace (1 s)."""
    return max(glowlab_listener.HEARTBEAT_CHECK, ttr / 3) + glowlab_queue.IO_TIMEOUT + 2


def reconnect_limit() -> float:
    """Seconds from the link's return until the listener runs a job again, at most: a connect
    under way may wait out its timeout, then the listener's pause between attempts."""
    return glowlab_queue.IO_TIMEOUT + glowlab_listener.RECONNECT_CAP + 2


def run(ctx: Context) -> list[Figure]:
    return [figure for ttr in ctx.sizes.cut_ttrs for figure in _one(ctx, ttr)]


def _one(ctx: Context, ttr: int) -> list[Figure]:
    with NetCut(ctx.rng) as net, ctx.world(f"netcut-{ttr}", host=net.host_ip) as world:
        tube, probe_tube = world.tube("cut"), world.tube("after")
        gate = world.dir / "gate"
        world.listen("--tubes", tube)  # on beanstalkd's host: where the job should go next
        world.submit([Job(cmd="sh", args=("-c", f"while [ ! -e '{gate}' ]; do sleep 0.05; done"),
                          tube=tube, pri=0, ttr=60)])
        until(lambda: (world.counts(tube) or {}).get("reserved") == 1 or world.check(), 30)
        world.listen("--tubes", f"{tube},{probe_tube}", prefix=net.prefix)
        job = _job(world, tube, ttr, FIRST_RUN, rerun=1)
        (bid,) = world.submit([job])
        first = _first_run(world, job.id)
        timeline = _cut(world, net, job, bid, first, gate)
        probe = _job(world, probe_tube, ttr, 0)
        world.submit([probe])
        ran = until(lambda: probe.id in world.runs.by_job(), reconnect_limit() + 30, interval=0.05)
        timeline["reconnect"] = (world.runs.by_job()[probe.id][0].start - timeline["restored_at"]
                                 if ran else None)
        settled = until(lambda: world.settled(tube) and world.settled(probe_tube), 30, interval=0.1)
        left = world.close()
    return _figures(ttr, world, job, timeline, settled, left)


def _job(world: World, tube: str, ttr: int, seconds: float, rerun: float | None = None) -> Job:
    argv = world.runs.argv(seconds, 0, *([rerun] if rerun is not None else []))
    return Job(cmd=argv[0], args=tuple(argv[1:]), tube=tube, ttr=ttr, pri=1)


def _first_run(world: World, job_id: str) -> Run:
    if not until(lambda: job_id in world.runs.by_job() or world.check(), 30, interval=0.01):
        raise RuntimeError("the job did not start on the listener in the namespace")
    run = world.runs.by_job()[job_id][0]
    if run.netns == os.readlink("/proc/self/ns/net"):
        raise RuntimeError("the job's first run was not in the namespace")
    return run


class _Watch:
    """What became of the cut job, in seconds after the cut (None: not yet).

    It looks at /proc and the runs file only, never asking beanstalkd while the TTR runs:
    commands coming in quick succession make beanstalkd 1.12 miss TTRs more often.
    """

    def __init__(self, world: World, job: Job, bid: int, first: Run):
        self.world, self.job, self.bid, self.first = world, job, bid, first
        self.cut_at = time.time()
        self.stopped: float | None = None
        self.rerun: float | None = None
        self.overdue: int | None = None
        """Seconds beanstalkd showed the job still reserved past its TTR, when it was asked once."""

    def look(self) -> bool:
        """Update what is known; True once the copy has stopped and the job ran again."""
        now = time.time() - self.cut_at
        if self.stopped is None and not runs_job(self.first.pid, self.job.id):
            self.stopped = now
        if self.rerun is None:
            runs = self.world.runs.by_job().get(self.job.id, [])
            self.rerun = runs[1].start - self.cut_at if len(runs) > 1 else None
        return self.stopped is not None and self.rerun is not None

    def ask_once(self) -> None:
        """Past the TTR with no second run yet: is the job still reserved, and overdue?"""
        if self.overdue is None and self.rerun is None:
            stats = self.world.safely(lambda: self.world.queue.stats_job(self.bid), None) or {}
            late = -int(stats.get("time-left", 0))
            self.overdue = late if stats.get("state") == "reserved" and late > 0 else 0


def _cut(world: World, net: NetCut, job: Job, bid: int, first: Run, gate) -> dict:
    """Cut the link; free the host's listener; watch the copy stop and the job go elsewhere;
    restore the link once the TTR has passed and the copy has stopped (or long after)."""
    net.cut()
    watch = _Watch(world, job, bid, first)
    gate.touch()
    floor, ceiling = job.ttr + 2, longest_stop(job.ttr) + 10
    while (elapsed := time.time() - watch.cut_at) < ceiling and (elapsed < floor or watch.stopped is None):
        watch.look()
        if elapsed > job.ttr + 1.5:
            watch.ask_once()
        time.sleep(0.02)
    net.restore()
    restored = time.time() - watch.cut_at
    until(watch.look, 60)
    # the job was reserved just before it started, so its TTR ran out by first.start + TTR
    expiry = first.start + job.ttr - watch.cut_at
    return {"stopped": watch.stopped, "rerun": watch.rerun, "cut_for": restored, "overdue": watch.overdue,
            "restored_at": watch.cut_at + restored, "expiry": expiry,
            "past_ttr": None if watch.stopped is None else max(0.0, watch.stopped - expiry),
            "overlap": max(0.0, watch.stopped - watch.rerun) if watch.rerun and watch.stopped else None}


def _figures(ttr: int, world: World, job: Job, t: dict, settled: bool, left: list[str]) -> list[Figure]:
    runs = world.runs.by_job().get(job.id, [])
    lost = int(job.id not in finished(world.runs.by_job()))
    key, at = f"ttr{ttr}.", f"TTR {ttr} s: "
    return [
        exactly(SCENARIO, key + "runs", at + "runs of the cut job", len(runs), 2),
        exactly(SCENARIO, key + "lost", at + "jobs lost", lost, 0,
                note="" if settled else "tubes not settled"),
        at_most(SCENARIO, key + "past_ttr", at + "cut listener's copy ran on past the TTR", t["past_ttr"], 0,
                unit="s", note=_past_ttr_note(ttr, t)),
        _rerun(key, at, ttr, t),
        at_most(SCENARIO, key + "reconnect", at + "cut listener ran a job again, after the link came back",
                t.get("reconnect"), round(reconnect_limit(), 1), unit="s"),
        exactly(SCENARIO, key + "orphans", at + "processes left running", len(left), 0, note="; ".join(left)),
        info(SCENARIO, key + "stopped", at + "cut listener stopped its copy, after the cut", t["stopped"],
             unit="s"),
        info(SCENARIO, key + "kept_ttr", at + "beanstalkd gave the job away at its TTR",
             f"no: reserved {t['overdue']} s past it" if t["overdue"] else "yes"),
        info(SCENARIO, key + "overlap", at + "both copies running at once", t["overlap"], unit="s"),
        info(SCENARIO, key + "cut_for", at + "link down for", t["cut_for"], unit="s"),
    ]


def _rerun(key: str, at: str, ttr: int, t: dict) -> Figure:
    """The job ran elsewhere within the TTR (+ 2 s); when beanstalkd missed the TTR (it does,
    see docs/reliability.md), within 5 s of the link's return, when the cut listener's closed
    connection reaches it."""
    missed = bool(t["overdue"])
    limit = t["cut_for"] + LINK_BACK if missed else ttr + 2
    rerun = t["rerun"]
    return Figure(SCENARIO, key + "rerun", at + "job ran elsewhere, after the cut", rerun, "s",
                  f"<= {ttr + 2} s, or link back + {LINK_BACK:g} s", rerun is not None and rerun <= limit,
                  _late_note(t))


def _past_ttr_note(ttr: int, t: dict) -> str:
    if not t["past_ttr"]:
        return ""
    return (f"the TTR ran out {t['expiry']:.1f} s after the cut, the cut listener stopped its copy after "
            f"{t['stopped']:.1f} s: its touch waits up to the queue's I/O timeout "
            f"({glowlab_queue.IO_TIMEOUT:g} s) for a reply, longer than the {ttr - ttr / 3:.1f} s the TTR "
            "leaves after a touch is due")


def _late_note(t: dict) -> str:
    if not t["overdue"]:
        return ""
    return (f"beanstalkd still held the job reserved {t['overdue']} s past its TTR (time-left < 0): it "
            "missed the TTR, and gave the job away only when the cut listener's connection closed, "
            f"once the link was back {t['cut_for']:.1f} s after the cut")
