"""SMTP servers that refuse, say nothing, or crawl, while listeners mail failures.

Three listeners each mail through one misbehaving server: a closed port (the
connection is refused), a server that accepts and never answers, and one that
takes seconds over every message. Each runs failing jobs (every failure sends
mail) between succeeding ones. Mail goes out from a background thread, so
every job must settle as usual and no listener may pause between two jobs for
anything like the SMTP timeout; at shutdown a listener waits for its mail at
most that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time
from typing import Iterator

from aiosmtpd.controller import Controller

from glowlab.cluster import free_port
from glowlab.job import Job
from glowlab.listener import ERRORS_TUBE, RHYTHM
from glowlab.mail import SMTP_TIMEOUT

from .context import Context
from .report import Figure, at_most, exactly, info
from .world import World, until

SCENARIO = "SMTP trouble"
EXIT_LIMIT = SMTP_TIMEOUT + RHYTHM + 2
"""Seconds from TERM to exit: the mail still waiting gets one SMTP timeout, an idle slot
notices the stop within its reserve rhythm."""


class SilentServer:
    """Accepts connections and never says a word: an SMTP server hung after ``accept``."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self._held.append(self.sock.accept()[0])

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in [*self._held, self.sock]:
            conn.close()


class SlowHandler:
    """An aiosmtpd handler that takes ``delay`` seconds over each message, then accepts it."""

    def __init__(self, delay: float):
        self.delay = delay
        self.received = 0

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        await asyncio.sleep(self.delay)
        self.received += 1
        return "250 OK"


@contextlib.contextmanager
def servers(delay: float) -> Iterator[tuple[dict[str, str], SlowHandler]]:
    """The three servers' addresses by kind, and the slow one's handler."""
    silent, slow = SilentServer(), SlowHandler(delay)
    controller = Controller(slow, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield ({"refusing": f"127.0.0.1:{free_port()}", "silent": silent.address,
                "slow": f"127.0.0.1:{controller.port}"}, slow)
    finally:
        controller.stop()
        silent.close()


def run(ctx: Context) -> list[Figure]:
    s = ctx.sizes
    with ctx.world("smtp") as world, servers(s.smtp_delay) as (addresses, slow):
        listeners, jobs = {}, {}
        for kind, address in addresses.items():
            tube = world.tube(f"smtp-{kind}")
            listeners[kind] = world.listen("--tubes", tube, "--smtp-server", address)
            jobs[kind] = _jobs(world, tube, s.smtp_jobs)
        bids = {kind: world.submit(batch) for kind, batch in jobs.items()}
        tubes = [batch[0].tube for batch in jobs.values()]
        settled = until(lambda: all(world.settled(t) for t in tubes) or world.check(), 60 + 2 * s.smtp_jobs,
                        interval=0.1)
        states = {kind: [world.state(b) for b in bids[kind]] for kind in jobs}
        reported = _reports(world, {j.id for batch in jobs.values() for j in batch if j.mailto})
        exits = _stop_all(world, listeners)
        left = world.close()
    by_job = world.runs.by_job()
    figures = []
    for kind in addresses:
        affected = _affected(jobs[kind], states[kind], reported, by_job)
        figures += [
            exactly(SCENARIO, f"{kind}.affected", f"{kind} server: jobs affected", affected, 0,
                    note="" if settled else "the jobs had not all settled by the deadline"),
            at_most(SCENARIO, f"{kind}.stall", f"{kind} server: longest pause between jobs",
                    _longest_pause(jobs[kind], by_job), SMTP_TIMEOUT, unit="s"),
            at_most(SCENARIO, f"{kind}.exit", f"{kind} server: listener exit after TERM", exits[kind],
                    EXIT_LIMIT, unit="s"),
        ]
    figures += [
        exactly(SCENARIO, "orphans", "processes left running", len(left), 0, note="; ".join(left)),
        info(SCENARIO, "delivered", "mails the slow server accepted", f"{slow.received} of {s.smtp_jobs}"),
    ]
    return figures


def _jobs(world: World, tube: str, failing: int) -> list[Job]:
    """``failing`` jobs that fail (and mail) between as many that succeed, in that order."""
    jobs = []
    for i in range(2 * failing):
        code = 3 if i % 2 else 0
        argv = world.runs.argv(0.05, code)
        jobs.append(Job(cmd=argv[0], args=tuple(argv[1:]), tube=tube, pri=i, retries=0,
                        mailto=("ops@example.org",) if code else ()))
    return jobs


def _reports(world: World, failing: set[str]) -> set[str]:
    """Job ids of the GLOW_ERRORS reports (each is put just after its job is buried)."""
    reported: set[str] = set()

    def complete() -> bool:
        reported.update(r.get("job_id") for r in world.drain(ERRORS_TUBE))
        return failing <= reported

    until(complete, 10, interval=0.1)
    return reported


def _affected(jobs: list[Job], states: list[str], reported: set, by_job: dict) -> int:
    """Jobs not run exactly once, or not settled as their exit code says."""
    wrong = 0
    for job, state in zip(jobs, states):
        fails = job.args[-1] != "0"
        expected = "buried" if fails else "gone"
        runs = len(by_job.get(job.id, []))
        wrong += runs != 1 or state != expected or (fails and job.id not in reported)
    return wrong


def _longest_pause(jobs: list[Job], by_job: dict) -> float | None:
    """Longest time between one job's end and the next job's start on the listener."""
    runs = sorted((r for job in jobs for r in by_job.get(job.id, [])), key=lambda r: r.start)
    gaps = [b.start - a.end for a, b in zip(runs, runs[1:]) if a.end is not None]
    return max(gaps) if gaps else None


def _stop_all(world: World, listeners: dict) -> dict[str, float | None]:
    """TERM every listener at once; seconds until each exited (None: not within a minute)."""
    started = time.monotonic()
    for proc in listeners.values():
        world.kill(proc, signal.SIGTERM)
    exits: dict[str, float | None] = {}
    until(lambda: all(_exited(exits, kind, proc, started) for kind, proc in listeners.items()), 60)
    return {kind: exits.get(kind) for kind in listeners}


def _exited(exits: dict, kind: str, proc, started: float) -> bool:
    if kind not in exits and proc.poll() is not None:
        exits[kind] = time.monotonic() - started
    return kind in exits
