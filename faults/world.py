"""A scenario's private world, and the means to count what a fault did.

Each scenario gets a folder, a beanstalkd of its own (binlog on, fresh port),
listeners started as users start them (``glowlab listen``), and a marker in the
environment that every process of the world inherits: listeners, their
guardians, jobs and the jobs' children. Whatever still carries the marker once
the world has shut down was left behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from glowlab.cluster import Beanstalkd
from glowlab.errors import GlowlabError
from glowlab.job import Job
from glowlab.queue import Queue

MARKER = "GLOWLAB_FAULTS"
JOB_SH = Path(__file__).resolve().with_name("job.sh")
T = TypeVar("T")


class World:
    """A folder, a beanstalkd with a binlog, and the listeners of one scenario."""

    def __init__(self, root: Path, name: str, *, host: str = "127.0.0.1"):
        self.name = name
        self.tag = f"{name}-{uuid.uuid4().hex[:8]}"
        self.dir = root / name
        for sub in ("binlog", "tmp"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.broker = Beanstalkd(binlog_dir=str(self.dir / "binlog"), host=host,
                                 log=str(self.dir / "beanstalkd.log"))
        # TMPDIR: a killed listener leaves its results folder behind; let it be ours
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("GLOW_")}
        self.env.update({MARKER: self.tag, "TMPDIR": str(self.dir / "tmp"), "PYTHONUNBUFFERED": "1"})
        self.runs = Runs(self.dir / "runs")
        self.listeners: list[subprocess.Popen] = []
        self._signalled: set[int] = set()
        self._queue: Queue | None = None

    def __enter__(self) -> "World":
        self.broker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def address(self) -> str:
        return self.broker.address

    @property
    def queue(self) -> Queue:
        """The campaign's own connection; it reconnects by itself after a broker restart."""
        if self._queue is None:
            self._queue = Queue(self.address)
        return self._queue

    def tube(self, what: str) -> str:
        return f"{what}-{uuid.uuid4().hex[:8]}"

    # -- listeners ------------------------------------------------------------------
    def listen(self, *args: str, prefix: Iterable[str] = ()) -> subprocess.Popen:
        """Start ``glowlab listen`` (``prefix``: e.g. ``ip netns exec NS``)."""
        # the network-cut scenarios need root; the listeners then run as root too, as CI's do
        trust = ["--allow-root"] if os.geteuid() == 0 else []
        argv = [*prefix, sys.executable, "-m", "glowlab", "listen", "--queue", self.address, "-v",
                "--kill-grace", "1", *trust, *args]
        log = self.dir / f"listener-{len(self.listeners)}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=out, start_new_session=True)
        proc.log_path = log  # type: ignore[attr-defined]
        self.listeners.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        """Signal a process of ours (``kill -9`` by default: then reap it)."""
        self._signalled.add(proc.pid)
        proc.send_signal(sig)
        if sig == signal.SIGKILL:
            proc.wait()

    def exited(self) -> list[subprocess.Popen]:
        """Listeners that ended without being told to."""
        return [p for p in self.listeners if p.pid not in self._signalled and p.poll() is not None]

    def check(self) -> None:
        """Raise, with its log, if a listener ended without being told to (a scenario
        would otherwise wait for its deadline)."""
        for proc in self.exited():
            log = proc.log_path.read_text(errors="replace")[-2000:]  # type: ignore[attr-defined]
            raise RuntimeError(f"listener {proc.pid} exited with status {proc.returncode}:\n{log}")

    def busy(self, proc: subprocess.Popen) -> bool:
        """True while the listener runs a job (a child other than its guardian)."""
        return any(not _comm(pid).startswith("python") for pid in children(proc.pid))

    def stop_listeners(self, timeout: float = 20) -> None:
        """TERM every listener still running (jobs are handed back), KILL what stays."""
        running = [p for p in self.listeners if p.poll() is None]
        for proc in running:
            self.kill(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(proc)

    # -- looking ------------------------------------------------------------------
    def safely(self, call: Callable[[], T], default: T) -> T:
        """``call()``, or ``default`` while beanstalkd is away (a restart under way)."""
        try:
            return call()
        except GlowlabError:
            return default

    def counts(self, tube: str) -> dict[str, int] | None:
        """The tube's ready/reserved/delayed/buried/deleted counts; None while unreachable."""
        stats = self.safely(lambda: self.queue.stats_tube(tube), None)
        if stats is None:
            return None
        states = ("ready", "reserved", "delayed", "buried")
        counts = {k: int(stats.get(f"current-jobs-{k}", 0)) for k in states}
        counts.update(deleted=int(stats.get("cmd-delete", 0)), total=int(stats.get("total-jobs", 0)))
        return counts

    def submit(self, jobs: list[Job]) -> list[int]:
        """Queue ``jobs``; their beanstalkd ids."""
        heads = [(j.tube, j.pri, j.delay, j.ttr) for j in jobs]
        return self.queue.put_bodies(heads, self.queue.encode_all(jobs))

    def drain(self, tube: str) -> list[dict]:
        """Every message waiting on ``tube`` (GLOW_ERRORS, say), decoded and deleted."""
        messages = []
        self.queue.watch_only([tube])
        while (reserved := self.queue.reserve(0)) is not None:
            messages.append(json.loads(reserved.body))
            self.queue.delete(reserved.id)
        return messages

    def state(self, bid: int) -> str:
        """beanstalkd's state of job ``bid``: ready, reserved, delayed, buried, or gone."""
        stats = self.queue.stats_job(bid)
        return stats["state"] if stats else "gone"

    def settled(self, tube: str) -> bool:
        """True when no job of ``tube`` is ready, reserved or delayed."""
        c = self.counts(tube)
        return c is not None and c["ready"] == c["reserved"] == c["delayed"] == 0

    def leftovers(self, wait: float = 5.0) -> list[str]:
        """Processes of this world still running (after ``wait`` s for stragglers to die)."""
        until(lambda: not marked(self.tag), wait)
        return [describe(pid) for pid in marked(self.tag)]

    def close(self) -> list[str]:
        """Shut the world down; returns (and then kills) the processes it left behind."""
        self.stop_listeners()
        left = self.leftovers()
        for pid in marked(self.tag):  # ours: they carry this world's marker
            _signal(pid, signal.SIGKILL)
        if self._queue is not None:
            self._queue.close()
        self.broker.stop()
        return left


# -- runs of jobs ----------------------------------------------------------------------
@dataclass
class Run:
    """One run of a job, as job.sh recorded it."""

    job: str
    pid: int
    start: float
    netns: str
    end: float | None = None


class Runs:
    """The runs file that every job of a world appends to (see job.sh)."""

    def __init__(self, path: Path):
        self.path = path

    def argv(self, *args: object) -> list[str]:
        """The command of a job: ``sh job.sh RUNS ARGS...``."""
        return ["sh", str(JOB_SH), str(self.path), *map(str, args)]

    def template(self, *fields: str) -> str:
        """A sweep command template for job.sh with ``fields`` as its columns."""
        import shlex

        return shlex.join(self.argv()) + "".join(f" {{{f}}}" for f in fields)

    def read(self) -> list[Run]:
        runs: dict[tuple[str, int], Run] = {}
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        for line in lines:
            parts = line.split()
            if len(parts) < 4:
                continue
            key = (parts[0], int(parts[1]))
            if parts[2] == "start":
                runs[key] = Run(parts[0], key[1], float(parts[3]), parts[4] if len(parts) > 4 else "")
            elif parts[2] == "end" and key in runs:
                runs[key].end = float(parts[3])
        return list(runs.values())

    def by_job(self) -> dict[str, list[Run]]:
        found: dict[str, list[Run]] = {}
        for run in sorted(self.read(), key=lambda r: r.start):
            found.setdefault(run.job, []).append(run)
        return found


def extra_runs(by_job: dict[str, list[Run]]) -> int:
    """Runs beyond the first of each job."""
    return sum(len(runs) - 1 for runs in by_job.values())


def finished(by_job: dict[str, list[Run]]) -> set[str]:
    """Jobs with a run that reached its end."""
    return {job for job, runs in by_job.items() if any(r.end is not None for r in runs)}


# -- processes -------------------------------------------------------------------------
def until(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` for up to ``timeout`` s; whether it came true (the campaign
    reports a missed wait as a figure, it does not raise)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def _proc_dirs() -> list[str]:
    return [name for name in os.listdir("/proc") if name.isdigit()]


def _stat(pid: int | str) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as dead)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def children(pid: int) -> list[int]:
    return [int(p) for p in _proc_dirs() if (s := _stat(p)) and s[1] == str(pid) and s[0] not in "ZX"]


def marked(tag: str) -> list[int]:
    """Live processes whose environment carries ``MARKER=tag``."""
    needle = f"\0{MARKER}={tag}\0".encode()
    found = []
    for name in _proc_dirs():
        try:
            environ = b"\0" + Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ and alive(int(name)):
            found.append(int(name))
    return found


def runs_job(pid: int, job_id: str) -> bool:
    """True while ``pid`` is alive and is (a process of) job ``job_id``: pids get reused."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"GLOWLAB_JOB_ID={job_id}\0".encode() in environ and alive(pid)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def describe(pid: int) -> str:
    """``PID COMMAND LINE``, and the job it belongs to if any."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return f"{pid} (gone)"
    job = next((v[15:].decode() for v in environ if v.startswith(b"GLOWLAB_JOB_ID=")), None)
    return f"{pid} {cmdline.strip()}" + (f" (job {job})" if job else "")


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass
