"""A tiny companion process that kills a listener's jobs when the listener dies.

The listener writes ``+PGID`` and ``-PGID`` lines to the guardian's stdin.
When that pipe closes without a final ``.`` (the listener was killed, even with
``kill -9``), the guardian KILLs every process group still registered, and the
group of every process whose environment carries the listener's mark, so no
orphan keeps running while its job is re-run elsewhere. A process that left
its job's group (``setsid``) and cleared its environment is beyond reach.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

log = logging.getLogger("glowlab")


FLUSH_EVERY = 0.2
"""Seconds the listener gathers messages before writing them to the guardian."""

LISTENER_MARK = "GLOWLAB_LISTENER_PID"
"""Set in every job's environment to the pid of the listener that started it."""


class Guardian:
    """The listener's side: start the companion, register and forget groups.

    Messages are gathered for up to :data:`FLUSH_EVERY` seconds and written
    together: one write per job, waking the companion each time, would cost
    short jobs an eighth of their throughput. A job killed with its listener
    before its group was written is still found by its mark.

    If the companion dies, the next write starts a new one and registers
    every group again, so a long-running listener never goes unguarded.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._groups: set[int] = set()
        self._pending: list[str] = []
        self._closed = False
        self._proc = self._spawn()
        threading.Thread(target=self._flush_loop, name="guardian", daemon=True).start()

    @staticmethod
    def _spawn() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "glowlab.guardian"], stdin=subprocess.PIPE,
            start_new_session=True, close_fds=True,
        )

    def _say(self, line: str) -> None:
        # with the lock held
        self._pending.append(line)
        self._lock.notify()

    def _flush_loop(self) -> None:
        while True:
            with self._lock:  # idle: sleep until there is something to say
                self._lock.wait_for(lambda: self._pending or self._closed)
                if self._closed:
                    return
            time.sleep(FLUSH_EVERY)  # gather what the next moments bring into one write
            self.flush()

    def flush(self) -> None:
        """Write the gathered messages now."""
        with self._lock:
            if not self._pending or self._closed:
                return
            text = "".join(self._pending)
            self._pending.clear()
            if not self._write(text):
                log.warning("the guardian process ended (exit %s); starting a new one",
                            self._proc.poll())
                self._proc = self._spawn()
                self._write("".join(f"+{g}\n" for g in self._groups))

    def _write(self, text: str) -> bool:
        try:
            data = memoryview(text.encode())
            while data:  # unbuffered, so a write the guardian is slow to take is finished here
                data = data[os.write(self._proc.stdin.fileno(), data):]
            return True
        except (OSError, ValueError):
            return False

    @property
    def pid(self) -> int:
        return self._proc.pid

    def add(self, pgid: int) -> None:
        with self._lock:
            self._groups.add(pgid)
            self._say(f"+{pgid}\n")

    def remove(self, pgid: int) -> None:
        with self._lock:
            self._groups.discard(pgid)
            self._say(f"-{pgid}\n")

    def close(self) -> None:
        """A clean exit: the guardian leaves the remaining groups alone."""
        with self._lock:
            self._closed = True
            self._lock.notify()
            self._write(".\n")
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def main() -> None:
    # Only the end of stdin may end the guardian: signals meant for the listener
    # (Ctrl-C, systemd's TERM to the whole unit) must not remove the safety net first.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    listener = os.getppid()
    groups: set[int] = set()
    for line in sys.stdin:
        line = line.strip()
        if line == ".":
            return
        if line[:1] == "+":
            groups.add(int(line[1:]))
        elif line[:1] == "-":
            groups.discard(int(line[1:]))
    for pgid in groups | set(_started_by(listener)):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass


def _started_by(listener: int) -> list[int]:
    """Process groups of jobs that carry the listener's mark, registered or not: a kill
    in the instant between a job's start and its ``+PGID`` line must not leave it running."""
    mark = f"{LISTENER_MARK}={listener}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if mark in fh.read().split(b"\0"):
                    found.append(os.getpgid(int(entry)))
        except OSError:
            continue  # gone already, or not ours to read
    return found


if __name__ == "__main__":
    main()
