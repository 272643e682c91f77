"""What every benchmark needs: a private beanstalkd, timing, a raw client, counters.

Nothing here knows about a particular figure. Timings alternate between the
contenders of a figure round by round, so a burst of load from elsewhere on
the machine lands on all of them alike, and medians are reported.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from glowlab.cluster import Beanstalkd, stop_processes

ROOT = Path(__file__).resolve().parent.parent
_SCRIPT = Path(sys.executable).with_name("glowlab")
GLOWLAB = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "glowlab"]
"""The ``glowlab`` command as users run it: the console script of this environment."""


@dataclass
class Figure:
    """One measured figure, its baseline and whether it meets its target."""

    key: str
    what: str
    value: float | None
    unit: str
    target: str = ""
    met: bool | None = None
    baseline: str = ""
    baseline_value: float | None = None
    ratio: float | None = None
    limits: str = ""
    samples: list[float] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Sizes:
    """How big each benchmark is: ``full`` for the figures, ``quick`` for a smoke run."""

    quick: bool
    rounds: int
    dispatch_rounds: int
    submit_jobs: int
    dispatch_jobs: int
    sleep_jobs: int
    latency_samples: int
    latency_gap: float
    idle_window: float
    collect_records: int
    submit_one_runs: int
    tubes: int
    listeners: int

    @classmethod
    def full(cls) -> "Sizes":
        return cls(quick=False, rounds=5, dispatch_rounds=5, submit_jobs=100_000, dispatch_jobs=2_000,
                   sleep_jobs=2_000,
                   latency_samples=40, latency_gap=1.0, idle_window=20.0, collect_records=100_000,
                   submit_one_runs=41, tubes=1_000, listeners=8)

    @classmethod
    def smoke(cls) -> "Sizes":
        return cls(quick=True, rounds=1, dispatch_rounds=1, submit_jobs=2_000, dispatch_jobs=60, sleep_jobs=20,
                   latency_samples=4, latency_gap=0.1, idle_window=1.5, collect_records=2_000,
                   submit_one_runs=3, tubes=50, listeners=3)


# -- processes -----------------------------------------------------------------
class Workspace:
    """A temporary folder, and the environment glowlab processes of the bench get.

    Byte-code caches are kept (under the folder): an installed package has them,
    and without them every process would compile glowlab again.
    """

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="glowlab-bench-"))
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("PYTHONDONTWRITEBYTECODE", "GLOW_SECRET", "GLOW_SECRET_FILE",
                                 "GLOW_SMTP_SERVER")}
        self.env.update(PYTHONPYCACHEPREFIX=str(self.dir / "pycache"),
                        GLOWLAB_HOME=str(self.dir / "home"),
                        GLOWLAB_ALLOW_ROOT="1")  # a bench in a container often runs as root
        os.environ["GLOWLAB_HOME"] = self.env["GLOWLAB_HOME"]  # sweeps of this process too
        subprocess.run([*GLOWLAB, "--version"], env=self.env, check=True, capture_output=True)

    def path(self, name: str) -> Path:
        return self.dir / name

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def beanstalkd(ws: Workspace, *, binlog: bool = False) -> Iterator[Beanstalkd]:
    """A fresh beanstalkd on a free port; with ``binlog``, as ``glowlab up`` runs it.

    Without a binlog the server is at its fastest, which makes every ratio to a
    baseline the hardest it can be.
    """
    folder = Path(tempfile.mkdtemp(dir=ws.dir, prefix="binlog-")) if binlog else None
    server = Beanstalkd(binlog_dir=str(folder) if folder else None).start()
    try:
        yield server
    finally:
        server.stop()
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


def stop(procs: Sequence[subprocess.Popen]) -> None:
    stop_processes(procs)


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid`` so far, in ns-resolution seconds (schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            pass  # a thread that ended meanwhile
    return total / 1e9


def cpu_ticks_seconds(pid: int) -> float:
    """utime + stime of ``pid`` from /proc/PID/stat (clock-tick resolution)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- timing --------------------------------------------------------------------
def alternate(rounds: int, contenders: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Run each contender once per round, rotating who goes first; seconds per run."""
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            times[name].append(contenders[name]())
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def paired_ratio(base: Sequence[float], other: Sequence[float]) -> float:
    """Median over rounds of ``base/other`` times: other's speed relative to base's."""
    return statistics.median(b / o for b, o in zip(base, other))


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.005,
               what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench: timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# -- a raw client: the baseline's few lines of socket code -----------------------
class Raw:
    """A bare beanstalkd connection: pipelined puts and cheap counters, no library."""

    def __init__(self, address: str):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def put_all(self, tube: str, bodies: Sequence[bytes], window: int = 512, delay: int = 0) -> None:
        """Put every body in windows of ``window`` commands, two windows in flight."""
        self.sock.sendall(b"use %b\r\n" % tube.encode())
        self.reader.readline()
        in_flight: list[int] = []
        for start in range(0, len(bodies), window):
            chunk = bodies[start:start + window]
            self.sock.sendall(b"".join(b"put 0 %d 60 %d\r\n%b\r\n" % (delay, len(b), b) for b in chunk))
            in_flight.append(len(chunk))
            if len(in_flight) == 2:
                self._inserted(in_flight.pop(0))
        for count in in_flight:
            self._inserted(count)

    def _inserted(self, count: int) -> None:
        for _ in range(count):
            if not self.reader.readline().startswith(b"INSERTED"):
                raise RuntimeError("bench: a raw put was refused")

    def stats(self, tube: str | None = None) -> dict[str, str]:
        self.sock.sendall(b"stats-tube %b\r\n" % tube.encode() if tube else b"stats\r\n")
        head = self.reader.readline()
        if not head.startswith(b"OK"):
            return {}
        text = self.reader.read(int(head.split()[1]) + 2).decode()
        return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)

    def count(self, key: str, tube: str | None = None) -> int:
        return int(self.stats(tube).get(key, 0))


# -- the machine -----------------------------------------------------------------
def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    version = subprocess.run(["beanstalkd", "-v"], capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}", "beanstalkd": version,
            "load_before": os.getloadavg()[0]}
