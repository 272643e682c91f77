"""Listeners killed with ``kill -9``, again and again, during a sweep.

A killed listener's connections close, so beanstalkd puts its job back to ready
at once, and its guardian kills the job's process group. Counted: jobs that
never finished (lost), runs beyond one per job (each kill may cost one: the job
it interrupted), and processes still running once everything has stopped.
"""

from __future__ import annotations

import subprocess
import time

import pandas as pd

from glowlab.sweep import sweep

from .context import Context
from .report import Figure, at_most, exactly, info
from .world import World, extra_runs, until

SCENARIO = "kill -9 listeners"


def run(ctx: Context) -> list[Figure]:
    s = ctx.sizes
    started = time.monotonic()
    with ctx.world("kills") as world:
        tube = world.tube("kills")
        options = ("--tubes", tube)
        listeners = [world.listen(*options) for _ in range(s.listeners)]
        seconds = [round(ctx.rng.uniform(0.02, 0.2), 3) for _ in range(s.kill_jobs)]
        batch = sweep(pd.DataFrame({"seconds": seconds}), world.runs.template("seconds"), tube=tube,
                      queue=world.queue, ttr=10, name=world.tag)
        deadline = time.monotonic() + 60 + 0.5 * s.kill_jobs
        kills, busy = _kill_during(ctx, world, tube, listeners, options, deadline)
        settled = until(lambda: world.settled(tube), deadline - time.monotonic(), interval=0.1)
        counts = batch.counts()
        left = world.close()
    by_job = world.runs.by_job()
    lost = s.kill_jobs - counts["done"]
    return [
        exactly(SCENARIO, "lost", "jobs lost", lost, 0,
                note="" if settled else f"the sweep had not finished by its deadline: {counts}"),
        at_most(SCENARIO, "extra_runs", "extra runs (at most one per kill)", extra_runs(by_job), kills),
        exactly(SCENARIO, "orphans", "processes left running", len(left), 0, note="; ".join(left)),
        info(SCENARIO, "kills", "listeners killed (while running a job)", f"{kills} ({busy})"),
        info(SCENARIO, "seconds", f"time for the {s.kill_jobs}-job sweep", time.monotonic() - started,
             unit="s"),
    ]


def _kill_during(ctx: Context, world: World, tube: str, listeners: list[subprocess.Popen],
                 options: tuple[str, ...], deadline: float) -> tuple[int, int]:
    """Kill a listener (a busy one if any) each time another share of the sweep is done,
    and start a new one in its place; returns (kills, kills of a busy listener)."""
    s = ctx.sizes
    marks = [s.kill_jobs * (k + 1) / (s.kills + 1) for k in range(s.kills)]
    kills = busy = 0
    while kills < s.kills and time.monotonic() < deadline:
        world.check()
        counts = world.counts(tube)
        if counts is None or counts["deleted"] < marks[kills]:
            time.sleep(0.02)
            continue
        running = [p for p in listeners if world.busy(p)]
        victim = ctx.rng.choice(running or listeners)
        busy += bool(running)
        world.kill(victim)
        listeners[listeners.index(victim)] = world.listen(*options)
        kills += 1
    return kills, busy
