"""Helpers shared by the listener tests: jobs as shell scripts, reports, logs, processes."""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any, Callable

from glowlab.job import Job
from glowlab.queue import Queue

from conftest import wait_for

Start = Callable[..., subprocess.Popen]


def sh(script: str, tube: str, **fields: Any) -> Job:
    """A job running ``script`` with /bin/sh (no listener shell is involved otherwise)."""
    return Job(cmd="sh", args=("-c", script), tube=tube, **fields)


def results_tube() -> str:
    return f"glowlab.test-{uuid.uuid4().hex[:10]}"


def log_of(proc: subprocess.Popen) -> str:
    return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]


def drain(queue: Queue, tube: str) -> list[dict]:
    """Every message now ready on ``tube``, decoded and deleted."""
    messages = []
    queue.watch_only([tube])
    while (reserved := queue.reserve(0)) is not None:
        messages.append(json.loads(reserved.body))
        queue.delete(reserved.id)
    return messages


def collect(queue: Queue, tube: str, count: int, *, timeout: float = 30,
            keep: Callable[[dict], bool] = lambda m: m.get("event") != "start",
            proc: subprocess.Popen | None = None) -> list[dict]:
    """Wait for ``count`` messages on ``tube`` that ``keep`` accepts (outcomes by default)."""
    found: list[dict] = []

    def enough() -> bool:
        found.extend(m for m in drain(queue, tube) if keep(m))
        return len(found) >= count

    wait_for(enough, timeout=timeout, interval=0.05,
             message=f"{count} messages on {tube}" + (f"; log:\n{log_of(proc)}" if proc else ""))
    return found


def errors(queue: Queue, count: int, **kwargs: Any) -> list[dict]:
    """Wait for ``count`` GLOW_ERRORS reports."""
    return collect(queue, "GLOW_ERRORS", count, keep=lambda m: True, **kwargs)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for a reaper counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def pids_in(path: Path, count: int) -> list[int]:
    """Wait until ``path`` lists ``count`` pids (written by a job), and return them."""
    def read() -> list[int] | None:
        pids = path.read_text().split() if path.exists() else []
        return [int(p) for p in pids] if len(pids) >= count else None
    return wait_for(read, timeout=30, message=f"{count} pids in {path}")  # type: ignore[return-value]


def wait_job(predicate: Callable[[], object], proc: subprocess.Popen, what: str,
             timeout: float = 30) -> None:
    """``wait_for``, showing the listener's log (as it is then) if the wait fails."""
    try:
        wait_for(predicate, timeout=timeout, message=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; listener log:\n{log_of(proc)}") from None


def wait_log(proc: subprocess.Popen, text: str, timeout: float = 20) -> None:
    wait_for(lambda: text in log_of(proc), timeout=timeout,
             message=f"{text!r} in the listener log")


def wait_exit(proc: subprocess.Popen, timeout: float = 20) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        raise AssertionError(f"listener still running after {timeout} s; log:\n{log_of(proc)}")


def waiting(queue: Queue, count: int = 1) -> bool:
    """True when at least ``count`` connections block in reserve (idle listener slots)."""
    return int(queue.stats()["current-waiting"]) >= count
