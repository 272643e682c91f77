"""A tiny companion process that kills a listener's jobs when the listener dies.

The listener writes ``+PGID`` and ``-PGID`` lines to the guardian's stdin.
When that pipe closes without a final ``.`` (the listener was killed, even with
``kill -9``), the guardian kills every process group still registered, so no
orphan keeps running while its job is re-run elsewhere.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading


class Guardian:
    """The listener's side: start the companion, register and forget groups."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "glowlab.guardian"], stdin=subprocess.PIPE,
            start_new_session=True, close_fds=True,
        )
        self._lock = threading.Lock()

    def _say(self, line: str) -> None:
        with self._lock:
            try:
                self._proc.stdin.write(line.encode() + b"\n")
                self._proc.stdin.flush()
            except (OSError, ValueError):
                pass

    def add(self, pgid: int) -> None:
        self._say(f"+{pgid}")

    def remove(self, pgid: int) -> None:
        self._say(f"-{pgid}")

    def close(self) -> None:
        """A clean exit: the guardian leaves the remaining groups alone."""
        self._say(".")
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        self._proc.wait()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin:
        line = line.strip()
        if line == ".":
            return
        if line[:1] == "+":
            groups.add(int(line[1:]))
        elif line[:1] == "-":
            groups.discard(int(line[1:]))
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass


if __name__ == "__main__":
    main()
