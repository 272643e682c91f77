"""Signals to a running listener: INT finishes, a second INT or TERM hands jobs back, HUP
reopens the log. Real listener processes and jobs, a beanstalkd of each test's own."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from glowlab.cluster import Beanstalkd
from glowlab.job import Job
from glowlab.queue import Queue

from conftest import tube_counts, tube_empty, wait_for
from listening import Start, alive, log_of, pids_in, sh, wait_exit, wait_job, wait_log, waiting


@pytest.fixture
def server(own_server: Beanstalkd) -> Beanstalkd:
    return own_server


def gated(tube: str, folder: Path, **fields) -> Job:
    """A job that records its pid, then waits for the test to create ``go``."""
    return sh(f"echo $$ > {folder}/pid; while [ ! -e {folder}/go ]; do sleep 0.05; done; "
              f"touch {folder}/done", tube, **fields)


def test_sigint_finishes_the_running_job_deletes_it_and_exits_0(
        start_listener: Start, queue: Queue, tube: str, tmp_path: Path) -> None:
    listener = start_listener()
    queue.submit(gated(tube, tmp_path))
    pids_in(tmp_path / "pid", 1)
    queue.submit(Job(cmd="touch", args=(str(tmp_path / "next"),), tube=tube))
    listener.send_signal(signal.SIGINT)
    wait_log(listener, "interrupt: finishing running jobs")
    (tmp_path / "go").touch()
    assert wait_exit(listener) == 0, log_of(listener)
    assert (tmp_path / "done").exists()
    assert tube_counts(queue, tube) == {"ready": 1, "reserved": 0, "delayed": 0, "buried": 0}
    assert not (tmp_path / "next").exists(), "a job was started after the interrupt"
    assert "COMPLETE" in log_of(listener)


def test_a_second_sigint_stops_the_job_and_hands_it_back(
        start_listener: Start, queue: Queue, tube: str, tmp_path: Path) -> None:
    listener = start_listener()
    queue.submit(gated(tube, tmp_path, retries=0))
    (pid,) = pids_in(tmp_path / "pid", 1)
    listener.send_signal(signal.SIGINT)
    wait_log(listener, "interrupt: finishing running jobs")
    listener.send_signal(signal.SIGINT)
    assert wait_exit(listener) == 0, log_of(listener)
    assert not alive(pid)
    assert tube_counts(queue, tube)["ready"] == 1
    handed_back = queue.peek_ready(tube)
    assert queue.stats_job(handed_back.id)["releases"] == 0, "a hand-back must not count as a failed attempt"


def test_sigterm_kills_the_job_and_another_listener_runs_it_at_once(
        start_listener: Start, queue: Queue, tube: str, tmp_path: Path) -> None:
    first, done = tmp_path / "first", tmp_path / "done"
    # ignores TERM, so only the KILL after the grace period stops it; the TTR is the default 60 s
    job = sh(f"if [ -e {first} ]; then touch {done}; exit 0; fi; touch {first}; "
             f"trap '' TERM; sleep 60 & echo $! > {tmp_path}/pid; wait", tube)
    stopping = start_listener("--kill-grace", "0.5")
    queue.submit(job)
    (pid,) = pids_in(tmp_path / "pid", 1)
    other = start_listener()
    wait_for(lambda: waiting(queue), timeout=30, message="the second listener to wait for jobs")
    signalled = time.monotonic()
    stopping.terminate()
    assert wait_exit(stopping) == 0, log_of(stopping)
    assert not alive(pid)
    wait_job(done.exists, other, "the job on the other listener", timeout=15)
    assert time.monotonic() - signalled < 10, "the job came back late: was it released?"
    wait_for(lambda: tube_empty(queue, tube), timeout=10, message="the job to be deleted")
    assert "RELEASED" in log_of(stopping)


def test_sighup_reopens_the_log_file(start_listener: Start, queue: Queue, tube: str,
                                     tmp_path: Path) -> None:
    log, rotated = tmp_path / "glowlab.log", tmp_path / "glowlab.log.1"
    listener = start_listener("--log", str(log))
    wait_for(lambda: log.exists() and "listening on" in log.read_text(), timeout=20,
             message="the first log line")
    log.rename(rotated)
    listener.send_signal(signal.SIGHUP)
    wait_for(log.exists, timeout=10, message="the log file to be reopened")
    queue.submit(Job(cmd="true", tube=tube))
    wait_for(lambda: "COMPLETE" in log.read_text(), timeout=20, message="a job logged in the new file")
    assert "COMPLETE" not in rotated.read_text()
    assert listener.poll() is None
