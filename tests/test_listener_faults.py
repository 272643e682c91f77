"""The listener under faults: failing, hanging and malformed jobs, dead listeners, a restarted
beanstalkd. Real listener processes, real jobs, a real beanstalkd of each test's own."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import greenstalk
import pytest

from glowlab.cluster import Beanstalkd
from glowlab.errors import QueueUnreachableError
from glowlab.job import Job
from glowlab.queue import Queue

from conftest import tube_counts, tube_empty, wait_for
from listening import (Start, alive, collect, errors, log_of, pids_in, results_tube, sh,
                       wait_job, waiting)


@pytest.fixture
def server(own_server: Beanstalkd) -> Beanstalkd:
    """A beanstalkd per test: listeners watch every tube and GLOW_ERRORS must be this test's."""
    return own_server


def buried(queue: Queue, tube: str, count: int, proc) -> None:
    wait_job(lambda: tube_counts(queue, tube)["buried"] == count, proc, f"{count} buried jobs")


# -- failing jobs -----------------------------------------------------------------------
def test_a_failing_job_is_retried_with_backoff_then_buried_and_reported(
        start_listener: Start, queue: Queue, tube: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    job = sh(f"date +%s.%N >> {runs}; echo out-$$; echo boom >&2; exit 3", tube, retries=2)
    listener = start_listener("--retry-base", "1")
    queue.submit(job)
    buried(queue, tube, 1, listener)
    times = [float(t) for t in runs.read_text().split()]
    assert len(times) == 3, log_of(listener)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(gap > 0.9 for gap in gaps), f"retries came back without a backoff: {gaps}"

    (report,) = errors(queue, 1)
    assert report["cmd"] == job.command_line
    assert report["error"] == "exit status 3"
    assert report["log"] == "boom\n"
    assert (report["job_id"], report["tube"], report["exit_code"], report["attempt"]) == (job.id, tube, 3, 3)
    assert report["stdout"].startswith("out-") and report["stderr"] == "boom\n"
    assert report["host"] and report["listener"] and report["signal"] is None
    assert 0 <= report["seconds"] == pytest.approx(report["finished"] - report["started"], abs=1e-3)

    # a buried job stays visible and can be kicked: it gets one more try (its retries are spent)
    host, port = queue.address.rsplit(":", 1)
    with greenstalk.Client((host, int(port)), use=tube) as client:
        client.kick_job(client.peek_buried())
    (again,) = errors(queue, 1)
    assert again["attempt"] == 3 and len(runs.read_text().split()) == 4


def test_timeout_stops_the_process_group_with_term_then_kill(
        start_listener: Start, queue: Queue, tube: str, tmp_path: Path) -> None:
    results, pids = results_tube(), tmp_path / "pids"
    polite = sh(f"sleep 30 & echo $! >> {pids}; wait", tube, timeout=0.5, results=results)
    stubborn = sh(f"trap '' TERM; sleep 30 & echo $! >> {pids}; wait", tube, timeout=0.5,
                  results=results, pri=1)
    listener = start_listener("--kill-grace", "0.5")
    queue.submit_many([polite, stubborn])
    outcomes = {o["job_id"]: o for o in collect(queue, results, 2, proc=listener)}
    assert outcomes[polite.id]["status"] == outcomes[stubborn.id]["status"] == "timeout"
    assert outcomes[polite.id]["signal"] == 15, "TERM reaches the job first"
    assert outcomes[stubborn.id]["signal"] == 9, "KILL follows when TERM is ignored"
    assert outcomes[stubborn.id]["seconds"] >= 0.9
    assert all(not alive(pid) for pid in pids_in(pids, 2)), "a grandchild survived the timeout"
    buried(queue, tube, 2, listener)
    assert {r["error"][:13] for r in errors(queue, 2)} == {"timed out aft"}


def test_a_finished_job_leaves_nothing_running(start_listener: Start, queue: Queue, tube: str,
                                               tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    listener = start_listener()
    queue.submit(sh(f"sleep 60 > /dev/null 2>&1 & echo $! > {pids}", tube))
    wait_job(lambda: tube_empty(queue, tube), listener, "the job")
    (pid,) = pids_in(pids, 1)
    wait_for(lambda: not alive(pid), timeout=5, message="the job's background process to be killed")


def test_outcomes_keep_the_last_16_kib_of_each_pipe(start_listener: Start, queue: Queue, tube: str,
                                                    tmp_path: Path) -> None:
    results = results_tube()
    # 40 KiB on stdout, kept in a file; stderr goes nowhere but the outcome still has its tail
    script = ("i=0; while [ $i -lt 1024 ]; do printf '%039d\\n' $i; i=$((i+1)); done; "
              "echo last-words >&2")
    job = sh(script, tube, stdout=str(tmp_path / "out.txt"), stderr="/dev/null", results=results)
    listener = start_listener()
    queue.submit(job)
    (outcome,) = collect(queue, results, 1, proc=listener)
    assert outcome["status"] == "done" and outcome["exit_code"] == 0 and outcome["attempt"] == 1
    assert len(outcome["stdout"]) == 16 * 1024
    assert outcome["stdout"].endswith(f"{1023:039d}\n")
    assert (tmp_path / "out.txt").stat().st_size == 40 * 1024
    assert outcome["stderr"] == "last-words\n"
    assert outcome["host"] == socket.gethostname() and outcome["listener"].endswith(f":{listener.pid}")
    assert outcome["started"] <= outcome["finished"] and outcome["seconds"] >= 0


# -- jobs that cannot run -------------------------------------------------------------------
def test_malformed_bodies_are_never_run_but_buried_and_reported(
        start_listener: Start, queue: Queue, tube: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    bodies = [
        b"not json at all",
        b"[1, 2, 3]",
        json.dumps({"tube": tube}).encode(),                                     # no cmd
        json.dumps({"cmd": 5, "tube": tube}).encode(),                            # wrong type
        json.dumps({"cmd": "touch", "args": [str(marker)], "tube": tube, "pri": "high"}).encode(),
        json.dumps({"cmd": "touch", "args": {"a": str(marker)}, "tube": tube}).encode(),
        b"\xff\xfe binary",
    ]
    for pri, body in enumerate(bodies):
        queue.put(tube, body, pri=pri)
    listener = start_listener()
    queue.submit(Job(cmd="touch", args=(str(tmp_path / "sentinel"),), tube=tube, pri=100))
    wait_job((tmp_path / "sentinel").exists, listener, "the valid job after the malformed ones")
    reports = errors(queue, len(bodies))
    assert not marker.exists(), "a malformed job was executed"
    assert tube_counts(queue, tube)["buried"] == len(bodies)
    assert all(r["error"].startswith("malformed job: ") and r["tube"] == tube for r in reports)
    assert {r["log"] for r in reports} == {b.decode(errors="replace") for b in bodies}
    assert any("pri must be a whole number" in r["error"] for r in reports)
    assert listener.poll() is None


def test_a_missing_executable_is_buried_at_once(start_listener: Start, queue: Queue, tube: str) -> None:
    job = Job(cmd="glowlab-no-such-program", tube=tube, retries=3)
    listener = start_listener()
    queue.submit(job)
    (report,) = errors(queue, 1, proc=listener)
    assert report["attempt"] == 1 and report["permanent"] is True
    assert "executable not found (No such file or directory)" in report["error"]
    assert tube_counts(queue, tube)["buried"] == 1


def test_start_failures_say_the_os_reason(start_listener: Start, queue: Queue, tube: str,
                                          tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    (tmp_path / "a-file").write_text("")
    missing = tmp_path / "missing"
    jobs = {
        "Permission denied (is it executable?)": Job(cmd=str(script), tube=tube),
        f"cannot use workdir {missing}: No such file or directory": Job(cmd="true", tube=tube,
                                                                        workdir=str(missing)),
        "out.log: Not a directory": Job(cmd="true", tube=tube, out=str(tmp_path / "a-file" / "out.log")),
    }
    listener = start_listener()
    queue.submit_many(jobs.values())
    by_id = {r["job_id"]: r for r in errors(queue, len(jobs), proc=listener)}
    for reason, job in jobs.items():
        assert reason in by_id[job.id]["error"], by_id[job.id]
        assert by_id[job.id]["exit_code"] is None and by_id[job.id]["permanent"] is False
    assert not missing.exists(), "a missing workdir must not be created"


# -- concurrency ------------------------------------------------------------------------------
def test_jobs_4_runs_four_at_once_each_with_its_own_reservation(
        start_listener: Start, queue: Queue, tube: str, tmp_path: Path) -> None:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    # each job arrives at the barrier and waits (up to ~15 s) until all four have arrived
    script = (f"touch {barrier}/$GLOWLAB_JOB_ID; i=0; "
              f"while [ $(ls {barrier} | wc -l) -lt 4 ]; do i=$((i+1)); "
              f"[ $i -gt 300 ] && exit 1; sleep 0.05; done; sleep 0.3")
    listener = start_listener("--jobs", "4")
    queue.submit_many([sh(script, tube) for _ in range(4)])
    wait_job(lambda: tube_counts(queue, tube)["reserved"] == 4, listener, "four reservations at once")
    wait_for(lambda: tube_empty(queue, tube), timeout=30, message="the four jobs")
    assert tube_counts(queue, tube)["buried"] == 0, log_of(listener)


def test_with_two_slots_the_smallest_priorities_run_first(start_listener: Start, queue: Queue,
                                                          tube: str, tmp_path: Path) -> None:
    gate, starts = tmp_path / "go", tmp_path / "starts"
    queue.submit_many([sh(f"echo {pri} >> {starts}; while [ ! -e {gate} ]; do sleep 0.05; done",
                          tube, pri=pri) for pri in (5, 4, 3, 2, 1, 0)])
    listener = start_listener("--jobs", "2")
    wait_job(lambda: len(starts.read_text().split()) == 2 if starts.exists() else False, listener,
             "two jobs running")
    assert sorted(starts.read_text().split()) == ["0", "1"]
    gate.touch()
    wait_job(lambda: tube_empty(queue, tube), listener, "every job")
    assert sorted(starts.read_text().split()) == ["0", "1", "2", "3", "4", "5"]


# -- dead listeners and heartbeats --------------------------------------------------------------
def test_a_job_whose_listener_was_killed_runs_elsewhere_within_a_ttr_and_leaves_no_orphan(
        start_listener: Start, queue: Queue, tube: str, tmp_path: Path) -> None:
    first, pids, done = tmp_path / "first", tmp_path / "pids", tmp_path / "done"
    job = sh(f"if [ -e {first} ]; then touch {done}; exit 0; fi; touch {first}; "
             f"sleep 60 & echo $! >> {pids}; echo $$ >> {pids}; wait", tube, ttr=2)
    doomed = start_listener()
    queue.submit(job)
    orphans = pids_in(pids, 2)  # the job's shell and its grandchild, in the job's process group
    start_listener()
    wait_for(lambda: waiting(queue), timeout=30, message="the second listener to wait for jobs")
    killed_at = time.monotonic()
    doomed.kill()
    wait_for(lambda: not any(alive(p) for p in orphans), timeout=5,
             message="the guardian to kill the dead listener's job")
    wait_for(done.exists, timeout=20, message="the job to run on the other listener")
    assert time.monotonic() - killed_at < 2 + 2.5, "the job came back later than about one TTR"
    wait_for(lambda: tube_empty(queue, tube), timeout=10, message="the job to be deleted")


def test_a_job_that_cleared_its_environment_is_still_killed_with_its_listener(
        start_listener: Start, queue: Queue, tube: str, tmp_path: Path) -> None:
    """Without the listener's mark only the group the listener registered leads to it."""
    from glowlab.guardian import FLUSH_EVERY

    pids = tmp_path / "pids"
    doomed = start_listener()
    queue.submit(Job(cmd="env", args=("-i", "sh", "-c", f"echo $$ > {pids}; exec sleep 60"), tube=tube))
    (pid,) = pids_in(pids, 1)
    assert b"GLOWLAB" not in Path(f"/proc/{pid}/environ").read_bytes()
    time.sleep(3 * FLUSH_EVERY)  # the registration is written within FLUSH_EVERY of the start
    doomed.kill()
    wait_for(lambda: not alive(pid), timeout=5, message="the guardian to kill the registered group")


def test_the_guardian_comes_back_if_it_dies(tmp_path: Path) -> None:
    """A listener whose guardian was killed gets a new one, which still knows every job."""
    script = f"""
import os, signal, subprocess, time
from glowlab.guardian import Guardian
jobs = [subprocess.Popen(["sleep", "60"], start_new_session=True) for _ in range(2)]
guardian = Guardian()
guardian.add(jobs[0].pid)
guardian.flush()  # written now, not at the next gathering
first = guardian.pid
os.kill(first, signal.SIGKILL)
while open(f"/proc/{{first}}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
    time.sleep(0.01)  # dead but not reaped: its end of the pipe is closed
guardian.add(jobs[1].pid)
guardian.flush()
assert guardian.pid != first
open({str(tmp_path / "pids")!r}, "w").write(f"{{jobs[0].pid}} {{jobs[1].pid}}")
os._exit(0)  # dies like a killed listener: no goodbye to the guardian
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30, stderr=subprocess.DEVNULL)
    first_job, second_job = (int(p) for p in (tmp_path / "pids").read_text().split()[:2])
    wait_for(lambda: not alive(first_job) and not alive(second_job), timeout=10,
             message="the new guardian to kill both jobs")


def test_a_job_lasting_three_ttrs_runs_exactly_once(start_listener: Start, queue: Queue, tube: str,
                                                    tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    start_listener()
    start_listener()  # a second listener would pick the job up if the first lost it
    queue.submit(sh(f"echo run >> {runs}; sleep 6.2", tube, ttr=2))
    wait_for(lambda: tube_empty(queue, tube), timeout=30, message="the job")
    assert runs.read_text() == "run\n"
    assert queue.stats_tube(tube)["cmd-delete"] == 1


# -- beanstalkd going away ---------------------------------------------------------------------
def test_a_restarted_beanstalkd_loses_no_job_and_the_listener_carries_on(
        start_listener: Start, own_server: Beanstalkd, queue: Queue, tube: str, tmp_path: Path) -> None:
    first = tmp_path / "first"
    long = sh(f"if [ -e {first} ]; then touch {tmp_path}/long-done; else touch {first}; sleep 60; fi", tube)
    listener = start_listener()
    queue.submit(long)
    wait_for(first.exists, timeout=30, message="the long job to start")
    queue.submit(Job(cmd="touch", args=(str(tmp_path / "queued-done"),), tube=tube))
    queue.close()
    own_server.stop()
    own_server.start()  # same port, same binlog
    restarted = time.monotonic()
    wait_job(lambda: (tmp_path / "queued-done").exists() and (tmp_path / "long-done").exists(),
             listener, "both jobs from before the restart")
    assert time.monotonic() - restarted < 10, "the running job noticed the restart late (TTR is 60)"
    queue.submit(Job(cmd="touch", args=(str(tmp_path / "later-done"),), tube=tube))
    wait_for((tmp_path / "later-done").exists, timeout=30, message="a job submitted after the restart")
    assert listener.poll() is None


def test_a_silent_server_cannot_hang_a_reserve() -> None:
    """A half-open connection (nothing ever answers) ends in an error, not a hang."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        queue = Queue(f"127.0.0.1:{silent.getsockname()[1]}", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(QueueUnreachableError):
            queue.reserve(1)
        assert time.monotonic() - started < 3
        queue.close()


def test_a_listener_waits_for_a_beanstalkd_that_is_not_there_yet(
        start_listener: Start, tmp_path: Path) -> None:
    late = Beanstalkd(binlog_dir=None)
    listener = start_listener(queue_address=late.address)
    wait_for(lambda: "cannot reach beanstalkd" in log_of(listener), timeout=20, message="a warning")
    late.start()
    try:
        with Queue(late.address) as queue:
            queue.submit(Job(cmd="touch", args=(str(tmp_path / "done"),), tube="t"))
            wait_job((tmp_path / "done").exists, listener, "the job once beanstalkd is up")
        assert listener.poll() is None
        assert log_of(listener).count("cannot reach beanstalkd") == 1, "an outage is logged once"
    finally:
        late.stop()
