"""A private beanstalkd and listeners on this machine: everything works with no set-up."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Sequence

from .errors import BeanstalkdMissingError, QueueUnreachableError
from .guardian import Guardian
from .queue import Queue, unreachable
from .settings import parse_address

INSTALL_HINT = ("install it with 'sudo apt-get install beanstalkd' (Debian, Ubuntu) "
                "or 'brew install beanstalkd' (macOS)")


def beanstalkd_binary() -> str:
    """The path of ``beanstalkd``, or an error that says how to install it."""
    path = shutil.which("beanstalkd")
    if path is None:
        raise BeanstalkdMissingError(f"beanstalkd is not installed; {INSTALL_HINT}")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_reachable(address: str, timeout: float = 10.0) -> None:
    """Poll until something accepts connections at ``address``."""
    host, port = parse_address(address)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise unreachable(address, exc.strerror or exc) from None
            time.sleep(0.01)


def stop_processes(procs: Sequence[subprocess.Popen], timeout: float = 20.0) -> None:
    """TERM every process (listeners hand their jobs back), then KILL what outlives ``timeout``."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Beanstalkd:
    """A beanstalkd process on a free loopback port, with its binlog in a folder."""

    def __init__(self, *, binlog_dir: str | None = None, port: int | None = None,
                 max_job_size: int | None = None, host: str = "127.0.0.1",
                 log: str | None = None):
        self.host = host
        self.log = log
        """A file for beanstalkd's own messages (it complains of every reset connection); default: ours."""
        self.port = port or free_port(host)
        self.binlog_dir = binlog_dir
        self.max_job_size = max_job_size
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "Beanstalkd":
        argv = [beanstalkd_binary(), "-l", self.host, "-p", str(self.port)]
        if self.binlog_dir:
            argv += ["-b", self.binlog_dir]
        if self.max_job_size:
            argv += ["-z", str(self.max_job_size)]
        with open(self.log, "ab") if self.log else contextlib.nullcontext() as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=log,
                                         start_new_session=True)
        try:
            wait_reachable(self.address)
            self._check_ours()
        except QueueUnreachableError:
            self.stop()
            raise
        return self

    def _check_ours(self) -> None:
        """Make sure what answers on the port is our process, not another server."""
        with Queue(self.address) as queue:
            pid = int(queue.stats()["pid"])
        if pid != self.proc.pid:
            raise unreachable(self.address, f"port {self.port} is taken by another beanstalkd (pid {pid})")

    def stop(self, sig_kill: bool = False) -> None:
        if self.proc is None:
            return
        self.proc.kill() if sig_kill else self.proc.terminate()
        self.proc.wait()
        self.proc = None


class LocalCluster:
    """A private beanstalkd and ``listeners`` listener processes, for a laptop.

    Use as a context manager (or call :meth:`close`); ``address`` is what to put
    in ``GLOW_QUEUE`` for other processes, ``queue`` a connection to it.
    """

    def __init__(self, listeners: int = 2, *, jobs: int = 1, verbose: bool = False,
                 listen_args: Sequence[str] = (), show_logs: bool = False):
        self._dir = tempfile.mkdtemp(prefix="glowlab-cluster-")
        self._guardian = Guardian()
        self._listeners: list[subprocess.Popen] = []
        self._queue: Queue | None = None
        self._show_logs = show_logs
        try:
            self.server = Beanstalkd(binlog_dir=self._dir).start()
            self._guardian.add(self.server.proc.pid)
            self._guardian.flush()  # written at once: unlike jobs, these carry no mark to be found by
            # A private loopback cluster runs the jobs of the user who started it: running
            # them as that user is no escalation, even when it is root.
            trust = ["--allow-root"] if os.geteuid() == 0 else []
            argv = [sys.executable, "-m", "glowlab", "listen", "--queue", self.address,
                    "--jobs", str(jobs), *trust, *(["-v"] if verbose else []), *listen_args]
            for _ in range(listeners):
                self._spawn(argv)
        except BaseException:
            self.close()
            raise

    def _spawn(self, argv: list[str]) -> None:
        # Listener logs go to a file, not into the notebook or terminal that started us.
        with open(self.log_path, "ab") as log:
            out = None if self._show_logs else log
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True)
        self._guardian.add(proc.pid)
        self._guardian.flush()
        self._listeners.append(proc)

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def log_path(self) -> str:
        """The listeners' shared log (and their /dev/stdout), kept until :meth:`close`."""
        return os.path.join(self._dir, "listeners.log")

    @property
    def queue(self) -> Queue:
        if self._queue is None:
            self._queue = Queue(self.address)
        return self._queue

    @property
    def listener_pids(self) -> list[int]:
        return [p.pid for p in self._listeners if p.poll() is None]

    def close(self, timeout: float = 15.0) -> None:
        """Stop listeners (running jobs are released), then the server; remove the folder."""
        if self._queue is not None:
            self._queue.close()
        stop_processes(self._listeners, timeout)
        self._listeners.clear()
        if getattr(self, "server", None) is not None:
            self.server.stop()
        self._guardian.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LocalCluster(address={self.address!r}, listeners={len(self.listener_pids)})"
