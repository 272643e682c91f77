"""Running jobs: throughput against xargs, GNU parallel and a minimal listener;
pickup latency; throughput with many tubes and many listeners."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from glowlab.job import Job

from .common import (GLOWLAB, Figure, Raw, Sizes, Workspace, alternate, beanstalkd, median,
                     paired_ratio, percentile, stop, wait_until)

MINIMAL = Path(__file__).with_name("minimal_listener.py")
TUBE = "work"


def bodies(n: int, argv: list[str], tube: str = TUBE, **fields) -> list[bytes]:
    return [Job(cmd=argv[0], args=argv[1:], tube=tube, **fields).encode() for _ in range(n)]


@contextmanager
def listeners(ws: Workspace, address: str, *, processes: int = 1, slots: int = 1,
              minimal: bool = False, only: str | None = None) -> Iterator[list[subprocess.Popen]]:
    """Listener processes on ``address``, yielded once every slot waits in reserve.

    ``only`` names the one tube glowlab listeners watch (by default: every tube)."""
    log = open(ws.path("listeners.log"), "ab")
    if minimal:
        argv = [sys.executable, str(MINIMAL), address, TUBE]
    else:
        argv = [*GLOWLAB, "listen", "--queue", address, "--jobs", str(slots)]
        if only:
            argv += ["--tubes", only]
    procs = [subprocess.Popen(argv, env=ws.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
             for _ in range(processes)]
    raw = Raw(address)
    try:
        wait_until(lambda: raw.count("current-waiting") >= processes * slots, 30, 0.02,
                   "listeners to wait in reserve")
        yield procs
    finally:
        raw.close()
        stop(procs)
        log.close()


def warm_up(raw: Raw, tube: str = TUBE) -> int:
    """Run one job on ``tube`` so every listener knows the tube; returns the delete count.

    A listener notices a new tube at its next look (once a second): that wait is
    measured on its own, by :func:`pickup`, not in every throughput figure.
    """
    raw.put_all(tube, bodies(1, ["true"], tube))
    wait_until(lambda: raw.count("cmd-delete", tube) >= 1, 30, 0.005, "the warm-up job")
    return 1


def run_live(address: str, work: list[bytes], tube: str = TUBE) -> float:
    """Seconds from the first put of ``work`` until every job of it has been deleted."""
    raw = Raw(address)
    before = warm_up(raw, tube)
    start = time.perf_counter()
    raw.put_all(tube, work)
    wait_until(lambda: raw.count("cmd-delete", tube) >= before + len(work), 600, 0.005,
               "the jobs to finish")
    elapsed = time.perf_counter() - start
    raw.close()
    return elapsed


def _glowlab(ws: Workspace, work: list[bytes], *, processes: int = 1, slots: int = 2,
             other_tubes: int = 0, only: str | None = None) -> Callable[[], float]:
    def run() -> float:
        with beanstalkd(ws) as server:
            raw = Raw(server.address)
            for i in range(other_tubes):  # tubes that exist, with nothing ready (watched unless `only`)
                raw.put_all(f"other-{i}", [b"{}"], delay=3600)
            with listeners(ws, server.address, processes=processes, slots=slots, only=only):
                if other_tubes and not only:  # every listener has seen and watched them all
                    wait_until(lambda: raw.count("cmd-watch") >= processes * slots * other_tubes,
                               60, 0.05, "listeners to watch every tube")
                return run_live(server.address, work)
    return run


def _minimal(ws: Workspace, work: list[bytes]) -> Callable[[], float]:
    def run() -> float:
        with beanstalkd(ws) as server, listeners(ws, server.address, processes=2, minimal=True):
            return run_live(server.address, work)
    return run


def _tool(argv: list[str], lines: str) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        subprocess.run(argv, input=lines, text=True, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start
    return run


def throughput(ws: Workspace, sizes: Sizes) -> list[Figure]:
    """Target 3: ``true`` and ``sleep 0.01`` jobs on 2 slots, against ``xargs -P2``."""
    figures = []
    for label, argv, n, target in (("true", ["true"], sizes.dispatch_jobs, 0.8),
                                   ("sleep", ["sleep", "0.01"], sizes.sleep_jobs, 0.97)):
        work = bodies(n, argv)
        cmd, arg = (argv[0], argv[1] if len(argv) > 1 else "x")
        contenders = {"xargs": _tool(["xargs", "-P2", "-n1", cmd], f"{arg}\n" * n),
                      "minimal": _minimal(ws, work), "glowlab": _glowlab(ws, work)}
        if shutil.which("parallel"):
            contenders["parallel"] = _tool(["parallel", "--will-cite", "-j2", cmd], f"{arg}\n" * n)
        times = alternate(sizes.dispatch_rounds, contenders)
        rates = {k: n / median(v) for k, v in times.items()}
        ratio = paired_ratio(times["xargs"], times["glowlab"])
        figures.append(Figure(
            key=f"dispatch.{label}", what=f"{n:,} '{' '.join(argv)}' jobs on 2 slots, live",
            value=rates["glowlab"], unit="jobs/s", target=f">= {target}x xargs -P2",
            met=ratio >= target, baseline="xargs -P2", baseline_value=rates["xargs"], ratio=ratio,
            samples=times["glowlab"],
            limits="per job: one round trip (the last job's delete goes with the next "
                   "reserve), decoding, starting the process with pipes (fork/exec from Python, "
                   "which holds the lock the other slot's thread needs), the output pump; the "
                   "guardian hears of jobs in one write every 0.2 s.",
            extra={"rates": rates, "times": times,
                   "ratio_minimal": paired_ratio(times["xargs"], times["minimal"]),
                   "ratio_parallel": (paired_ratio(times["xargs"], times["parallel"])
                                      if "parallel" in times else None)}))
    return figures


def scale(ws: Workspace, sizes: Sizes) -> list[Figure]:
    """Target 8: throughput with many tubes present, and with many listeners, vs one tube."""
    n = sizes.dispatch_jobs
    work = bodies(n, ["true"])
    times = alternate(sizes.dispatch_rounds, {
        "one": _glowlab(ws, work),
        "tubes": _glowlab(ws, work, other_tubes=sizes.tubes - 1),
        "tubes_named": _glowlab(ws, work, other_tubes=sizes.tubes - 1, only=TUBE),
        "listeners": _glowlab(ws, work, processes=sizes.listeners, slots=1),
    })
    one = n / median(times["one"])
    tubes = paired_ratio(times["one"], times["tubes"])
    crowd = paired_ratio(times["one"], times["listeners"])
    return [
        Figure(key="scale.tubes", what=f"'true' jobs with {sizes.tubes:,} tubes present",
               value=n / median(times["tubes"]), unit="jobs/s", target=">= 0.9x one tube",
               met=tubes >= 0.9, baseline="one tube", baseline_value=one, ratio=tubes,
               samples=times["tubes"],
               limits="beanstalkd: each reserve visits every tube the connection watches, "
                      "and each turn of its event loop every tube there is; the listener "
                      "watches every tube (glow's default), one watch per new tube.",
               extra={"ratio_named": paired_ratio(times["one"], times["tubes_named"]),
                      "named_rate": n / median(times["tubes_named"]), "one_samples": times["one"]}),
        Figure(key="scale.listeners", what=f"'true' jobs on {sizes.listeners} listeners x 1 slot",
               value=n / median(times["listeners"]), unit="jobs/s", target=">= 0.75x 1 listener x 2",
               met=crowd >= 0.75, baseline="1 listener x 2 slots", baseline_value=one, ratio=crowd,
               samples=times["listeners"],
               limits=f"{sizes.listeners} processes share {sizes.listeners and 2} cores; each "
                      "idle one still reserves and lists tubes once a second."),
    ]


def pickup(ws: Workspace, sizes: Sizes) -> list[Figure]:
    """Target 4: submit time to the time the job itself writes, on an idle listener."""
    found: dict[str, list[float]] = {"glowlab": [], "minimal": [], "new_tube": []}
    with beanstalkd(ws) as mine, beanstalkd(ws) as theirs, \
            listeners(ws, mine.address), listeners(ws, theirs.address, minimal=True):
        servers = {"glowlab": Raw(mine.address), "minimal": Raw(theirs.address)}
        for raw in servers.values():
            warm_up(raw)
        for i in range(sizes.latency_samples):
            for name, raw in servers.items():
                found[name].append(_pickup_once(ws, raw, sizes.latency_gap, TUBE))
            if i < 5:  # a tube the listener has not seen yet: it looks once a second
                found["new_tube"].append(_pickup_once(ws, servers["glowlab"], 0, f"new-{i}"))
        for raw in servers.values():
            raw.close()
    ms = found["glowlab"]
    p50, p90 = median(ms), percentile(ms, 0.9)
    return [Figure(
        key="pickup", what="pickup latency on an idle listener (median)", value=p50,
        unit="ms", target="median <= 10 ms, p90 <= 25 ms", met=p50 <= 10 and p90 <= 25,
        baseline="minimal listener", baseline_value=median(found["minimal"]), samples=ms,
        limits="reserve wakes at once; then decoding, fork/exec of the job and the job's own "
               "start (date).",
        extra={"p90": p90, "minimal_p90": percentile(found["minimal"], 0.9),
               "minimal_samples": found["minimal"], "new_tube_samples": found["new_tube"]})]


def _pickup_once(ws: Workspace, raw: Raw, gap: float, tube: str) -> float:
    """Milliseconds from a put to the time its job wrote; returns once the listener is idle."""
    out = ws.path(f"pickup-{time.monotonic_ns()}.txt")
    body = Job(cmd="date", args=("+%s.%N",), tube=tube, out=str(out)).encode()
    done = raw.count("cmd-delete", tube)
    time.sleep(random.uniform(0, gap))  # land anywhere in the listener's idle rhythm
    submitted = time.time()
    raw.put_all(tube, [body])
    wait_until(lambda: out.exists() and out.read_text().endswith("\n"), 30, 0.0005, "the job's timestamp")
    started = float(out.read_text())
    wait_until(lambda: raw.count("cmd-delete", tube) > done and raw.count("current-waiting") >= 1,
               30, 0.002, "the listener to be idle again")
    return 1000 * (started - submitted)
