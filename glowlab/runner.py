"""Run one job as a process and describe what happened as an :class:`Outcome`.

The process gets its own process group and session, no shell, and pipes for
stdout and stderr: the runner copies them to the job's files and keeps the
last 16 KiB of each for the outcome, so a report never re-reads a file.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import BinaryIO, Callable

from .job import Job
from .outcome import Outcome, Status

log = logging.getLogger("glowlab")

TAIL_BYTES = 16 * 1024
KILL_GRACE = 5.0
"""Seconds between TERM and KILL when a job must stop."""

HOST = socket.gethostname()


@dataclass
class Control:
    """How a listener steers a running job.

    ``tick`` is called every ``tick_every`` seconds (the heartbeat) and returns
    False when the job must stop; ``stop`` asks the job to stop now.
    """

    tick: Callable[[], bool] = lambda: True
    tick_every: float = 20.0
    stop: threading.Event | None = None
    kill_grace: float = KILL_GRACE
    on_start: Callable[[int], None] = lambda pid: None
    on_exit: Callable[[int], None] = lambda pid: None


class _StartError(Exception):
    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def run(job: Job, *, attempt: int = 1, listener: str = "", control: Control | None = None,
        result_path: str | None = None) -> Outcome:
    """Run ``job`` once, to the end, and return its outcome."""
    control = control or Control()
    started = time.time()
    record = dict(job_id=job.id, tube=job.tube, command=job.command_line, host=HOST,
                  listener=listener, attempt=attempt, started=started)
    try:
        with _Outputs(job) as outputs:
            proc = _start(job, outputs, result_path)
            control.on_start(proc.pid)
            try:
                status = _Watch(proc, outputs, job.timeout, control).run()
            finally:
                control.on_exit(proc.pid)
    except _StartError as exc:
        return Outcome(**record, status=Status.FAILED, error=str(exc), permanent=exc.permanent,
                       finished=time.time())
    code = proc.returncode
    return Outcome(
        **record,
        status=status if status is not Status.DONE or code == 0 else Status.FAILED,
        exit_code=code if code >= 0 else None,
        signal=-code if code < 0 else None,
        finished=time.time(),
        stdout=outputs.tail("stdout"),
        stderr=outputs.tail("stderr"),
        metrics=_metrics(result_path),
    )


def _start(job: Job, outputs: "_Outputs", result_path: str | None) -> subprocess.Popen:
    if not os.path.isdir(job.workdir):
        raise _StartError(f"workdir {job.workdir} does not exist or is not a folder")
    env = {**os.environ, **job.env, "GLOWLAB_JOB_ID": job.id}
    if result_path:
        env["GLOWLAB_RESULT"] = result_path
    try:
        return subprocess.Popen(
            job.argv, cwd=job.workdir, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise _StartError(f"cannot run {job.cmd!r}: executable not found ({exc.strerror})",
                          permanent=True) from None
    except OSError as exc:
        raise _StartError(f"cannot run {job.cmd!r}: {exc.strerror or exc}") from None


def _metrics(path: str | None) -> dict:
    if not path or not os.path.exists(path):
        return {}
    try:
        with open(path, "rb") as fh:
            data = json.load(fh)
        os.unlink(path)
    except (OSError, ValueError) as exc:
        log.warning("ignoring GLOWLAB_RESULT file %s: %s", path, exc)
        return {}
    if not isinstance(data, dict):
        log.warning("ignoring GLOWLAB_RESULT file %s: not a JSON object", path)
        return {}
    return data


class _Outputs:
    """The job's output files (opened for append) and the in-memory tails."""

    _SPECIAL = {"/dev/stdout": lambda: sys.stdout.buffer, "/dev/stderr": lambda: sys.stderr.buffer}

    def __init__(self, job: Job):
        self._job = job
        self._opened: dict[str, BinaryIO] = {}
        self._tails = {"stdout": bytearray(), "stderr": bytearray()}
        self.sinks: dict[str, BinaryIO | None] = {}

    def __enter__(self) -> "_Outputs":
        try:
            for stream in ("stdout", "stderr"):
                self.sinks[stream] = self._open(getattr(self._job, stream) or self._job.out)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self, path: str) -> BinaryIO | None:
        if path == "/dev/null":
            return None
        if path in self._SPECIAL:
            return self._SPECIAL[path]()
        path = os.path.join(self._job.workdir, path)
        if path not in self._opened:
            try:
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                self._opened[path] = open(path, "ab", buffering=0)
            except OSError as exc:
                raise _StartError(f"cannot open output file {path}: {exc.strerror or exc}") from None
        return self._opened[path]

    def write(self, stream: str, data: bytes) -> None:
        tail = self._tails[stream]
        tail += data
        if len(tail) > TAIL_BYTES:
            del tail[: len(tail) - TAIL_BYTES]
        sink = self.sinks[stream]
        if sink is not None:
            try:
                sink.write(data)
                sink.flush()
            except OSError as exc:
                log.warning("job %s: cannot write %s: %s", self._job.id, stream, exc)
                self.sinks[stream] = None

    def tail(self, stream: str) -> str:
        return self._tails[stream].decode("utf-8", errors="replace")

    def close(self) -> None:
        for fh in self._opened.values():
            fh.close()
        self._opened.clear()


class _Watch:
    """Pump a running process's output while minding its timeout, heartbeat and stop."""

    def __init__(self, proc: subprocess.Popen, outputs: _Outputs, timeout: float | None,
                 control: Control):
        self.proc, self.outputs, self.control = proc, outputs, control
        now = time.monotonic()
        self.deadline = now + timeout if timeout else None
        self.next_tick = now + control.tick_every
        self.kill_at: float | None = None
        self.status = Status.DONE

    def run(self) -> Status:
        streams = {self.proc.stdout: "stdout", self.proc.stderr: "stderr"}
        with selectors.DefaultSelector() as sel:
            for pipe, name in streams.items():
                sel.register(pipe, selectors.EVENT_READ, name)
            while sel.get_map():
                events = sel.select(self._wait())
                for key, _ in events:
                    data = os.read(key.fd, 65536)
                    if data:
                        self.outputs.write(key.data, data)
                    else:
                        sel.unregister(key.fileobj)
                self._mind(time.monotonic())
                if not events and self.proc.poll() is not None:
                    break  # exited; a daemonised grandchild may hold the pipes open
        for pipe in streams:
            pipe.close()
        self._reap()
        return self.status

    def _wait(self) -> float:
        times = [self.next_tick, self.deadline, self.kill_at]
        soonest = min(t for t in times if t is not None)
        return max(0.0, min(soonest - time.monotonic(), 0.25))

    def _mind(self, now: float) -> None:
        if self.kill_at is not None:
            if now >= self.kill_at:
                self._signal(signal.SIGKILL)
                self.kill_at = now + 3600
            return
        if self.deadline is not None and now >= self.deadline:
            self._terminate(Status.TIMEOUT)
        elif self.control.stop is not None and self.control.stop.is_set():
            self._terminate(Status.INTERRUPTED)
        elif now >= self.next_tick:
            self.next_tick = now + self.control.tick_every
            if not self.control.tick():
                self._terminate(Status.INTERRUPTED)

    def _terminate(self, status: Status) -> None:
        self.status = status
        self._signal(signal.SIGTERM)
        self.kill_at = time.monotonic() + self.control.kill_grace

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def _reap(self) -> None:
        while True:
            try:
                self.proc.wait(timeout=self._wait())
                return
            except subprocess.TimeoutExpired:
                self._mind(time.monotonic())
