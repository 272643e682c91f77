"""The notebook side killed mid-collection, then reopened with ``Batch.open``.

A collector process (a notebook kernel, in effect) reopens the batch and runs
``Batch.collect`` in a loop while listeners run the sweep. It is killed with
``kill -9`` again and again, each time inside ``collect``: from outside, as soon
as it holds results it has taken, or by itself (the same SIGKILL, at an exact
point) just after the take, just after the journal write, or halfway through
the deletes. A last collector then runs to the end. ``collect`` writes to the
journal before it deletes, and the journal keys outcomes by (job, attempt):
nothing may be lost, nothing counted twice.

Run as ``python -m faults.collector BATCH ADDRESS SECONDS POINT``, this module
is that collector.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from glowlab.batch import Batch
from glowlab.journal import Journal
from glowlab.sweep import sweep

from .context import Context
from .report import Figure, exactly, info
from .world import World, until

SCENARIO = "collector killed"
ROOT = Path(__file__).resolve().parent.parent
POINTS = ("outside", "taken", "journaled", "deleting")
"""Where in ``collect`` each collector dies, in turn (``outside``: ``kill -9`` from here)."""
LISTENERS = 2


def run(ctx: Context) -> list[Figure]:
    s = ctx.sizes
    with ctx.world("collector") as world:
        tube = world.tube("collect")
        for _ in range(LISTENERS):
            world.listen("--tubes", tube)
        seconds = [round(ctx.rng.uniform(0.05, 0.15), 3) for _ in range(s.collector_jobs)]
        batch = sweep(pd.DataFrame({"seconds": seconds}), world.runs.template("seconds"), tube=tube,
                      queue=world.queue, ttr=10, name=world.tag)
        share = 2 * s.collector_jobs // (s.collector_kills + 1)  # a start and an outcome per job
        kills = [_kill_one(world, batch, tube, share, POINTS[k % len(POINTS)])
                 for k in range(s.collector_kills)]
        last = _collector(world, batch, 60 + 0.2 * s.collector_jobs, "none")
        try:
            finished = last.wait(90 + 0.2 * s.collector_jobs) == 0
        except subprocess.TimeoutExpired:
            world.kill(last)
            finished = False
        last.stdout.close()
        waiting = world.counts(batch.record.results_tube) or {}
        reopened = Batch.open(batch.id, world.address)  # as a restarted kernel would: from the journal
        frame = reopened.results()
        reopened.journal.close()
        left = world.close()
    lost = int((frame["status"] != "done").sum())
    duplicates = len(frame) - len(frame.index.unique()) + _extra_outcomes(batch.id)
    return [
        exactly(SCENARIO, "lost", "results lost", lost, 0,
                note="" if finished else "the last collector did not finish"),
        exactly(SCENARIO, "duplicates", "duplicates in results", duplicates, 0),
        exactly(SCENARIO, "left", "messages left on the results tube",
                waiting.get("ready", 0) + waiting.get("reserved", 0), 0),
        exactly(SCENARIO, "orphans", "processes left running", len(left), 0, note="; ".join(left)),
        info(SCENARIO, "kills", "collectors killed (while holding taken results)",
             f"{len(kills)} ({sum(kills)})"),
        info(SCENARIO, "rows", "rows in the reopened batch's results", len(frame)),
    ]


def _collector(world: World, batch: Batch, limit: float, point: str) -> subprocess.Popen:
    with open(world.dir / "collector.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "faults.collector", batch.id, world.address,
                                 str(limit), point], env=world.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=log, cwd=ROOT)


def _kill_one(world: World, batch: Batch, tube: str, share: int, point: str) -> bool:
    """Once ``share`` results wait, start a collector that dies at ``point`` of its first
    collect, or (``outside``) kill it as soon as it holds taken results; whether it held
    results it had taken when it died."""
    results = batch.record.results_tube
    until(lambda: (world.counts(results) or {}).get("ready", 0) >= share or world.settled(tube), 10)
    proc = _collector(world, batch, 60, point)
    if proc.stdout.readline() != b"ready\n":  # the batch is open
        raise RuntimeError(f"a collector failed to start; see {world.dir / 'collector.log'}")
    if point == "outside":
        holding = until(lambda: (world.counts(results) or {}).get("reserved", 0) > 0, 3, interval=0.002)
        world.kill(proc)
    else:
        holding = proc.wait(30) == -signal.SIGKILL
    proc.stdout.close()
    return holding


def _extra_outcomes(batch_id: str) -> int:
    """Outcomes stored beyond one per job (each job of this sweep runs, and succeeds, once)."""
    journal = Journal()
    try:
        (count, jobs), = journal.db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT o.job_id) FROM outcomes o JOIN rows r ON r.job_id = o.job_id "
            "WHERE r.batch_id = ?", (batch_id,)).fetchall()
    finally:
        journal.close()
    return count - jobs


def _die_at(batch: Batch, point: str) -> None:
    """Make this process SIGKILL itself at ``point`` of the first collect that takes something.

    The points are calls of Queue's that collect makes around its journal write, so they stay
    where they are whatever the journal does inside.
    """
    queue = batch.queue
    take, delete_many = queue.take, queue.delete_many

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def take_then_die(*args, **kwargs):
        taken = take(*args, **kwargs)
        if taken:
            die()
        return taken

    def delete_half_then_die(ids):
        delete_many(ids[:len(ids) // 2])
        die()

    if point == "taken":
        queue.take = take_then_die  # type: ignore[method-assign]
    elif point == "journaled":  # in the journal, not yet deleted from beanstalkd
        queue.delete_many = lambda ids: die()  # type: ignore[method-assign]
    elif point == "deleting":
        queue.delete_many = delete_half_then_die  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    """The collector: reopen the batch, collect until it is done or ``SECONDS`` have passed."""
    batch_id, address, seconds, point = argv
    batch = Batch.open(batch_id, address)
    _die_at(batch, point)
    print("ready", flush=True)
    deadline = time.monotonic() + float(seconds)
    while not batch.done:
        if time.monotonic() > deadline:
            return 1
        batch.collect(wait=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
