"""Run one job as a process and describe what happened as an :class:`Outcome`.

The process gets its own process group and session, no shell, and pipes for
stdout and stderr: the runner copies them to the job's files and keeps the
last 16 KiB of each for the outcome, so a report never re-reads a file.
When the process ends, anything it left behind in its process group is
killed, so a finished job leaves nothing running.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import math
import os
import select
import shutil
import signal
import stat
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import BinaryIO, Callable

from .guardian import LISTENER_MARK
from .job import Job
from .outcome import Outcome, Status

log = logging.getLogger("glowlab")

TAIL_BYTES = 16 * 1024
KILL_GRACE = 5.0
"""Seconds between TERM and KILL when a job must stop."""
DRAIN_GRACE = 1.0
"""Seconds to keep reading after the process ended (a process outside its group may hold the pipes)."""
_STEP = 0.25
"""Longest pause between looks at the timeout, the heartbeat and the stop request."""

HOST = socket.gethostname()


@dataclass
class Control:
    """How a listener steers a running job.

    ``tick`` is called every ``tick_every`` seconds (the heartbeat) and returns
    False when the job must stop; ``stop`` asks the job to stop now. The
    process group is TERMed, then KILLed ``kill_grace`` seconds later.
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
    record = dict(job_id=job.id, tube=job.tube, command=job.command_line, host=HOST,
                  listener=listener, attempt=attempt, started=time.time())
    try:
        _check_workdir(job.workdir)
        with _Outputs(job) as outputs:
            proc = _start(job, result_path)
            control.on_start(proc.pid)
            try:
                status = _Watch(proc, outputs, job.timeout, control).run()
            finally:
                control.on_exit(proc.pid)
    except _StartError as exc:
        return Outcome(**record, status=Status.FAILED, error=str(exc), permanent=exc.permanent,
                       finished=time.time())
    code = proc.returncode
    failed = code != 0 or outputs.error is not None  # output lost to a full disk is a failure too
    return Outcome(
        **record,
        status=Status.FAILED if status is Status.DONE and failed else status,
        error=outputs.error,
        exit_code=code if code >= 0 else None,
        signal=-code if code < 0 else None,
        finished=time.time(),
        stdout=outputs.tail("stdout"),
        stderr=outputs.tail("stderr"),
        metrics=_metrics(result_path),
    )


def _check_workdir(workdir: str) -> None:
    """Fail, with the OS's reason, on a missing folder, a file, or one we may not enter."""
    try:
        mode = os.stat(workdir).st_mode
    except OSError as exc:
        raise _StartError(f"cannot use workdir {workdir}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(mode):
        raise _StartError(f"cannot use workdir {workdir}: {os.strerror(errno.ENOTDIR)}")
    if not os.access(workdir, os.X_OK):
        raise _StartError(f"cannot use workdir {workdir}: {os.strerror(errno.EACCES)}")


@functools.cache
def _listener_environment() -> dict[bytes, bytes]:
    # copied and encoded once: it is the same for every job, and Popen would
    # otherwise encode each of its variables again for every job
    return {os.fsencode(k): os.fsencode(v) for k, v in os.environ.items()}


def _environment(job: Job, result_path: str | None) -> dict[bytes, bytes]:
    """The listener's environment plus the job's own variables."""
    env = {**_listener_environment(), b"GLOWLAB_JOB_ID": job.id.encode(),
           LISTENER_MARK.encode(): b"%d" % os.getpid()}
    for name, value in job.env.items():
        env[os.fsencode(name)] = os.fsencode(value)
    if result_path:
        env[b"GLOWLAB_RESULT"] = os.fsencode(result_path)
    return env


_FOUND: dict[tuple[str, bytes | None], tuple[float, str | None]] = {}
FOUND_FOR = 1.0
"""Seconds a command's place on PATH is remembered (a new install is seen after that)."""


def _executable(argv0: str, env: dict[bytes, bytes]) -> str | None:
    """Where ``argv0`` is on the job's PATH, looked up at most once a second.

    Found here, the process is started with one ``execve``; left to Popen, each
    job would try every PATH folder before the right one.
    """
    if "/" in argv0:
        return None
    path = env.get(b"PATH")
    key = (argv0, path)
    now = time.monotonic()
    found = _FOUND.get(key)
    if found is None or now >= found[0]:
        if len(_FOUND) > 1000:  # a listener runs for months: forget commands of the past
            _FOUND.clear()
        folders = os.fsdecode(path if path is not None else os.defpath)
        # a relative folder means one inside the job's workdir: Popen resolves those there
        where = shutil.which(argv0, path=folders) if _all_absolute(folders) else None
        found = _FOUND[key] = (now + FOUND_FOR, where)
    return found[1]


def _all_absolute(folders: str) -> bool:
    return all(os.path.isabs(folder) for folder in folders.split(os.pathsep))


def _start(job: Job, result_path: str | None) -> subprocess.Popen:
    env = _environment(job, result_path)
    argv = job.argv
    executable = _executable(argv[0], env)
    try:
        try:
            return _popen(argv, executable, job.workdir, env)
        except FileNotFoundError as exc:
            if executable is None or exc.filename != executable:
                raise
            _FOUND.clear()  # removed since it was looked up: look again, the way Popen does
            return _popen(argv, None, job.workdir, env)
    except OSError as exc:
        raise _start_error(job, exc) from None


def _popen(argv: list[str], executable: str | None, cwd: str, env: dict[bytes, bytes]) -> subprocess.Popen:
    return subprocess.Popen(argv, executable=executable, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _start_error(job: Job, exc: OSError) -> _StartError:
    """Say why the process did not start; a missing executable is permanent."""
    reason = exc.strerror or str(exc)
    if exc.filename == job.workdir and exc.filename != job.argv[0]:
        return _StartError(f"cannot use workdir {job.workdir}: {reason}")
    if isinstance(exc, FileNotFoundError):
        return _StartError(f"cannot run {job.cmd!r}: executable not found ({reason})", permanent=True)
    if isinstance(exc, PermissionError):
        return _StartError(f"cannot run {job.cmd!r}: {reason} (is it executable?)")
    return _StartError(f"cannot run {job.cmd!r}: {reason}")


def _metrics(path: str | None) -> dict:
    if not path or not os.path.exists(path):
        return {}
    try:
        with open(path, "rb") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        log.warning("ignoring GLOWLAB_RESULT file %s: %s", path, exc)
        return {}
    finally:
        _unlink(path)  # a listener runs for months: leave nothing behind
    if not isinstance(data, dict):
        log.warning("ignoring GLOWLAB_RESULT file %s: not a JSON object", path)
        return {}
    return data


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class _Outputs:
    """The job's output files (opened for append) and the in-memory tails."""

    _SPECIAL = {"/dev/stdout": lambda: sys.stdout.buffer, "/dev/stderr": lambda: sys.stderr.buffer}

    def __init__(self, job: Job):
        self._job = job
        self._opened: dict[str, BinaryIO] = {}
        self._tails = {"stdout": bytearray(), "stderr": bytearray()}
        self.sinks: dict[str, BinaryIO | None] = {}
        self.error: str | None = None
        """Why output could not be written (the first such error), if it could not."""

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
                self._opened[path] = _append(path)
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
            except OSError as exc:  # e.g. a full disk: the job runs on, its outcome says why it failed
                problem = f"cannot write output file {sink.name}: {exc.strerror or exc}"
                log.warning("job %s: %s", self._job.id, problem)
                if sink in self._opened.values():  # the listener's own stdout is not the job's fault
                    self.error = self.error or problem
                self.sinks[stream] = None

    def tail(self, stream: str) -> str:
        return self._tails[stream].decode("utf-8", errors="replace")

    def close(self) -> None:
        for fh in self._opened.values():
            fh.close()
        self._opened.clear()


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits (Linux 5.3+), else None.

    Without one, a process that closed its pipes is waited for by polling,
    which costs each short job up to a few milliseconds.
    """
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _append(path: str) -> BinaryIO:
    """Open ``path`` for appending, creating missing folders (a kindness glow did not do)."""
    try:
        return open(path, "ab", buffering=0)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return open(path, "ab", buffering=0)


class _Watch:
    """Pump a running process's output while minding its timeout, heartbeat and stop."""

    def __init__(self, proc: subprocess.Popen, outputs: _Outputs, timeout: float | None,
                 control: Control):
        self.proc, self.outputs, self.control = proc, outputs, control
        now = time.monotonic()
        self.deadline = now + timeout if timeout else None
        self.next_tick = now + control.tick_every
        self.kill_at: float | None = None
        self.exited_at: float | None = None
        self.status = Status.DONE
        self.open = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
        """The pipes not yet at end of file: descriptor -> stream name."""

    def run(self) -> Status:
        pipes = (self.proc.stdout, self.proc.stderr)
        # select.poll, not a selectors object: the short-job path runs this for
        # every job, and the selector's bookkeeping was most of the pump's own cost
        poller = select.poll()
        for fd in self.open:
            poller.register(fd, select.POLLIN)
        exit_fd = _pidfd(self.proc.pid)
        if exit_fd is not None:  # readable once the process has exited: no polling for it
            poller.register(exit_fd, select.POLLIN)
        try:
            self._pump(poller, exit_fd)
        finally:
            for pipe in pipes:
                pipe.close()
            if exit_fd is not None:
                os.close(exit_fd)
        return self.status

    def _pump(self, poller: select.poll, exit_fd: int | None) -> None:
        waiting_for_exit = exit_fd is not None
        while not self._finished():
            if self.open or waiting_for_exit:
                for fd, _ in poller.poll(math.ceil(self._wait() * 1000)):
                    if fd == exit_fd:
                        poller.unregister(fd)
                        waiting_for_exit = False
                    else:
                        self._read(poller, fd)
            else:
                self._pause()  # the process closed its pipes but runs on
            self._mind(time.monotonic())

    def _finished(self) -> bool:
        if self.exited_at is None:
            return False
        return not self.open or time.monotonic() > self.exited_at + DRAIN_GRACE

    def _read(self, poller: select.poll, fd: int) -> None:
        data = os.read(fd, 65536)
        if data:
            self.outputs.write(self.open[fd], data)
        else:  # end of file (a hang-up reads as one too)
            poller.unregister(fd)
            del self.open[fd]

    def _pause(self) -> None:
        try:
            self.proc.wait(self._wait())
        except subprocess.TimeoutExpired:
            pass

    def _wait(self) -> float:
        if self.exited_at is not None:
            return 0.05
        times = [t for t in (self.next_tick, self.deadline, self.kill_at) if t is not None]
        return max(0.0, min(min(times) - time.monotonic(), _STEP))

    def _mind(self, now: float) -> None:
        if self.exited_at is not None:
            return
        if self.proc.poll() is not None:
            self.exited_at = now
            self._signal(signal.SIGKILL)  # whatever it left running in its group
            return
        if now >= self.next_tick:
            # keep the heartbeat during a kill's grace too: the job is ours until it is dead
            self.next_tick = now + self.control.tick_every
            if not self.control.tick() and self.kill_at is None:
                self._terminate(Status.INTERRUPTED)
        if self.kill_at is not None:
            if now >= self.kill_at:
                self._signal(signal.SIGKILL)
                self.kill_at = now + 3600
        elif self.deadline is not None and now >= self.deadline:
            self._terminate(Status.TIMEOUT)
        elif self.control.stop is not None and self.control.stop.is_set():
            self._terminate(Status.INTERRUPTED)

    def _terminate(self, status: Status) -> None:
        self.status = status
        self._signal(signal.SIGTERM)
        self.kill_at = time.monotonic() + self.control.kill_grace

    def _signal(self, sig: int) -> None:
        # the group outlives its leader while members remain, and its id is not reused meanwhile
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
