"""Operator commands (stats, drain, pause, resume, kick, peek, errors, run) as real
subprocesses against a real beanstalkd and real listeners."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from glowlab import cli, ops
from glowlab.cluster import Beanstalkd, free_port
from glowlab.job import Job, decode
from glowlab.queue import Queue

from conftest import glowlab, glowlab_env, tube_counts, wait_for

OPERATOR_COMMANDS = ("stats", "drain", "pause", "resume", "kick", "peek", "errors", "run")


@pytest.fixture
def server(own_server: Beanstalkd) -> Beanstalkd:
    """A beanstalkd per test: GLOW_ERRORS and every-tube listeners see this test's jobs only."""
    return own_server


def put(queue: Queue, job: Job) -> int:
    return queue.put_bodies([(job.tube, job.pri, job.delay, job.ttr)], [job.encode()])[0]


def bury(queue: Queue, tube: str, job_id: int, pri: int) -> None:
    """Reserve exactly ``job_id`` and bury it with ``pri``."""
    assert queue.reserve_job(job_id) is not None
    assert queue.bury(job_id, pri)


def one_line_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    stderr = result.stderr.decode()
    assert result.returncode == code, stderr
    assert stderr.startswith("glowlab: error: ") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in stderr, stderr
    return stderr


class Lines:
    """Collects the lines a process writes to a pipe, from a thread."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(l.decode() for l in stream), daemon=True).start()

    def text(self) -> str:
        return "".join(self.lines)


# -- help ----------------------------------------------------------------------------
@pytest.mark.parametrize("command", OPERATOR_COMMANDS)
def test_every_operator_command_has_help_with_examples(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert f"glowlab {command}" in out.split("examples:")[1]
    assert "exit codes:" in out and "--queue" in out


def test_an_unreachable_queue_is_one_line_and_exit_4(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    for args in (["stats"], ["drain", "x"], ["pause", "x", "--seconds", "5"], ["kick", "x"],
                 ["peek", "x"], ["errors"]):
        one_line_error(glowlab(*args, address=address), 4, "cannot reach beanstalkd at " + address)


# -- stats ---------------------------------------------------------------------------
def test_stats_counts_each_state_and_the_pause(address: str, queue: Queue, tube: str) -> None:
    ids = [put(queue, Job(cmd="true", tube=tube)) for _ in range(4)]
    put(queue, Job(cmd="true", tube=tube, delay=300))
    bury(queue, tube, ids[0], 0)
    holder = Queue(address)
    assert holder.reserve_job(ids[1]) is not None  # a running job, reserved elsewhere
    queue.pause_tube(tube, 100)

    result = glowlab("stats", "--json", tube, address=address)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {tube, "_server"}
    pause = report[tube].pop("pause")
    assert 90 <= pause <= 100
    assert report[tube] == {"jobs-ready": 2, "jobs-reserved": 1, "jobs-delayed": 1, "jobs-buried": 1}
    server = report["_server"]
    assert server["address"] == address and server["jobs-ready"] == 2 and server["jobs-buried"] == 1
    assert {"listener-slots", "listener-slots-idle", "connections", "version"} <= set(server)

    table = glowlab("stats", tube, address=address).stdout.decode().splitlines()
    assert table[0].split() == ["TUBE", "READY", "RESERVED", "DELAYED", "BURIED", "PAUSED"]
    row = table[1].split()
    assert row[:5] == [tube, "2", "1", "1", "1"] and row[5].endswith("s")
    holder.close()


def test_stats_shows_connected_listener_slots_and_hides_internal_tubes(
        start_listener, address: str, queue: Queue, tube: str) -> None:
    queue.put("glowlab.results-x", b"{}")
    queue.put(tube, Job(cmd="true", tube=tube, delay=300).encode(), delay=300)
    start_listener("--tubes", f"{tube}-other", "--jobs", "2")

    def report() -> dict:
        return json.loads(glowlab("stats", "--json", address=address).stdout)

    seen = wait_for(lambda: (r := report())["_server"]["listener-slots"] >= 2 and r, timeout=30,
                    message="two listener slots in stats")
    assert tube in seen and "glowlab.results-x" not in seen
    assert "glowlab.results-x" in json.loads(glowlab("stats", "--json", "--all", address=address).stdout)


# -- drain ---------------------------------------------------------------------------
def test_drain_prints_jobs_that_submit_requeues_exactly(address: str, queue: Queue, tube: str) -> None:
    first = Job(cmd="sh", args=("-c", "echo a b"), tube=tube, pri=5, out="/tmp/x.log",
                mailto=("me@example.org",), env={"A": "1"}, ttr=120, retries=2)
    later = Job(cmd="echo", args=("later",), tube=tube, delay=300)
    failed = Job(cmd="false", tube=tube, pri=3)
    put(queue, first)
    put(queue, later)
    failed_id = put(queue, failed)
    bury(queue, tube, failed_id, 7)  # beanstalkd's priority now differs from the record's
    raw_id = queue.put(tube, b"not a glowlab job", pri=9)
    bury(queue, tube, raw_id, 9)
    running = Job(cmd="sleep", args=("1",), tube=tube)
    holder = Queue(address)
    assert holder.reserve_job(put(queue, running)) is not None

    result = glowlab("drain", tube, address=address)
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr  # a body was kept
    records = json.loads(result.stdout)
    assert [r["id"] for r in records] == [first.id, later.id, failed.id]  # ready, delayed, buried
    assert records[0] == {**first.to_dict(), "pri": 5, "delay": 0, "ttr": 120}
    assert 290 <= records[1].pop("delay") <= 300
    expected = {**later.to_dict(), "pri": 0, "ttr": 60}
    del expected["delay"]
    assert records[1] == expected
    assert records[2] == {**failed.to_dict(), "pri": 7, "delay": 0, "ttr": 60}
    assert f"kept job {raw_id} on {tube}" in stderr
    assert f"{tube}: 1 reserved job(s) left to their listeners" in stderr
    assert f"drained 3 job(s) from {tube}" in stderr
    # the foreign body stays as it was; the running job was not taken
    assert tube_counts(queue, tube) == {"ready": 0, "reserved": 1, "delayed": 0, "buried": 1}
    assert queue.stats_job(raw_id)["pri"] == 9 and queue.peek_body(raw_id) == b"not a glowlab job"
    holder.close()

    again = glowlab("submit", address=address, input=result.stdout)
    assert again.returncode == 0, again.stderr
    queue.delete(raw_id)
    requeued = {}
    for state in ("ready", "delayed"):
        while (peeked := getattr(queue, f"peek_{state}")(tube)) is not None:
            requeued[decode(peeked.body).id] = (decode(peeked.body), queue.stats_job(peeked.id))
            assert queue.reserve_job(peeked.id) and queue.delete(peeked.id)
    assert set(requeued) == {first.id, later.id, failed.id, running.id}
    assert requeued[first.id][0] == first and requeued[first.id][1]["ttr"] == 120
    assert requeued[failed.id][1]["pri"] == 7 and requeued[failed.id][1]["state"] == "ready"
    assert requeued[later.id][1]["state"] == "delayed" and 280 <= requeued[later.id][1]["time-left"] <= 300


def test_drain_deletes_nothing_it_could_not_write(address: str, queue: Queue, tube: str) -> None:
    put(queue, Job(cmd="true", tube=tube))
    put(queue, Job(cmd="true", tube=tube, delay=300))
    bury(queue, tube, put(queue, Job(cmd="true", tube=tube)), 4)
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write to stdout fails
    try:
        proc = subprocess.run([sys.executable, "-m", "glowlab", "drain", tube], stdout=write_end,
                              stderr=subprocess.PIPE, env=glowlab_env(address), timeout=60)
    finally:
        os.close(write_end)
    assert proc.returncode == 1
    assert proc.stderr.decode().startswith("glowlab: error: stdout was closed")
    assert tube_counts(queue, tube) == {"ready": 1, "reserved": 0, "delayed": 1, "buried": 1}


def test_drain_several_tubes_and_an_empty_one(address: str, queue: Queue, tube: str) -> None:
    a, b, empty = f"{tube}-a", f"{tube}-b", f"{tube}-empty"
    put(queue, Job(cmd="echo", tube=a))
    put(queue, Job(cmd="echo", tube=b))
    result = glowlab("drain", f"{a},{b}", address=address)
    assert result.returncode == 0, result.stderr
    assert sorted(r["tube"] for r in json.loads(result.stdout)) == [a, b]
    assert tube_counts(queue, a)["ready"] == tube_counts(queue, b)["ready"] == 0
    nothing = glowlab("drain", empty, address=address)
    assert (nothing.returncode, nothing.stdout) == (0, b"[]\n")
    one_line_error(glowlab("drain", "bad name!", address=address), 3, "not a valid tube name")


def test_drain_with_a_secret_keeps_unsigned_bodies_and_prints_no_signature(
        address: str, queue: Queue, tube: str) -> None:
    env = glowlab_env(address, GLOW_SECRET="s3cret")
    signed = glowlab("submit", "--tube", tube, "--json", "--", "echo", "signed", address=address, env=env)
    assert signed.returncode == 0, signed.stderr
    unsigned_id = put(queue, Job(cmd="echo", args=("forged",), tube=tube))

    result = glowlab("drain", tube, address=address, env=env)
    assert result.returncode == 1, result.stderr
    [record] = json.loads(result.stdout)
    assert record["args"] == ["signed"] and "sig" not in record
    assert f"kept job {unsigned_id} on {tube}" in result.stderr.decode()
    assert "unsigned job" in result.stderr.decode()
    assert queue.peek_ready(tube).id == unsigned_id

    again = glowlab("submit", address=address, env=env, input=result.stdout)
    assert again.returncode == 0, again.stderr
    assert queue.stats_job(unsigned_id)["state"] == "ready"
    bodies = []
    while (peeked := queue.peek_ready(tube)) is not None:
        bodies.append(json.loads(peeked.body))
        queue.delete(peeked.id)
    assert [b["args"] for b in bodies] == [["forged"], ["signed"]] and "sig" in bodies[1]


# -- pause and resume -------------------------------------------------------------------
def test_pause_holds_jobs_from_listeners_until_resume(start_listener, address: str, queue: Queue,
                                                      tube: str, tmp_path: Path) -> None:
    out = tmp_path / "ran"
    put(queue, Job(cmd="touch", args=(str(out),), tube=tube))
    put(queue, Job(cmd="true", tube=f"{tube}-2", delay=900))
    one_line_error(glowlab("pause", f"{tube},{tube}-none", "--seconds", "600", address=address), 1,
                   f"cannot pause {tube}-none: beanstalkd has no such tube now")
    assert queue.stats_tube(tube)["pause"] == 0  # all or nothing
    result = glowlab("pause", f"{tube},{tube}-2", "--seconds", "600", address=address)
    assert result.returncode == 0, result.stderr
    assert 590 <= queue.stats_tube(tube)["pause-time-left"] <= 600
    assert queue.stats_tube(f"{tube}-2")["pause"] == 600
    start_listener("--tubes", tube)
    wait_for(lambda: queue.stats_tube(tube)["current-waiting"] >= 1, timeout=30,
             message="the listener waiting on the paused tube")
    assert tube_counts(queue, tube)["ready"] == 1 and not out.exists()

    result = glowlab("resume", tube, address=address)
    assert result.returncode == 0, result.stderr
    assert queue.stats_tube(tube)["pause"] == 0
    wait_for(out.exists, timeout=30, message="the job to run after resume")


def test_pause_needs_positive_seconds(address: str, tube: str) -> None:
    for seconds in (["--seconds", "0"], ["--seconds", "x"], []):
        result = glowlab("pause", tube, *seconds, address=address)
        assert result.returncode == 2 and b"--seconds" in result.stderr


# -- kick and peek --------------------------------------------------------------------
def test_kick_buried_then_delayed_jobs(address: str, queue: Queue, tube: str) -> None:
    buried = [put(queue, Job(cmd="true", tube=tube)) for _ in range(4)]
    for job_id in buried:
        bury(queue, tube, job_id, 0)
    put(queue, Job(cmd="true", tube=tube, delay=300))

    assert glowlab("kick", tube, address=address).stdout == f"kicked 1 buried job(s) of {tube}\n".encode()
    assert tube_counts(queue, tube)["buried"] == 3
    result = glowlab("kick", "--job", str(buried[3]), address=address)
    assert result.returncode == 0 and queue.stats_job(buried[3])["state"] == "ready"
    assert glowlab("kick", tube, "5", address=address).stdout.startswith(b"kicked 2 buried")
    assert glowlab("kick", tube, "--all", address=address).stdout.startswith(b"kicked 1 delayed")
    assert tube_counts(queue, tube) == {"ready": 5, "reserved": 0, "delayed": 0, "buried": 0}
    assert glowlab("kick", tube, address=address).stdout.startswith(b"nothing to kick")

    one_line_error(glowlab("kick", "--job", str(buried[0]), address=address), 1, "not buried or delayed")
    one_line_error(glowlab("kick", address=address), 1, "give a tube")
    one_line_error(glowlab("kick", tube, "0", address=address), 1, "1 or more")


def test_peek_shows_the_next_job_of_a_state_with_its_stats(address: str, queue: Queue, tube: str) -> None:
    job = Job(cmd="echo", args=("x y",), tube=tube)
    job_id = put(queue, job)
    bury(queue, tube, job_id, 12)

    text = glowlab("peek", tube, "--buried", address=address).stdout.decode()
    assert text.startswith(f"job {job_id} (buried) on tube {tube}\n")
    assert "  pri: 12\n" in text and "  buries: 1\n" in text and "command: echo 'x y'" in text

    found = json.loads(glowlab("peek", tube, "--json", address=address).stdout)
    assert found["ready"] is None and found["delayed"] is None
    assert found["buried"]["id"] == job_id and found["buried"]["job"]["id"] == job.id
    assert found["buried"]["stats"]["pri"] == 12
    assert glowlab("peek", tube, "--ready", address=address).stdout == f"no ready job on {tube}\n".encode()
    assert glowlab("peek", tube, "--ready", "--buried", address=address).returncode == 2


# -- errors ------------------------------------------------------------------------------
def test_errors_lists_reports_without_consuming_them(start_listener, address: str, queue: Queue,
                                                     tube: str) -> None:
    put(queue, Job(cmd="sh", args=("-c", "echo oops >&2; exit 3"), tube=tube))
    start_listener("--tubes", tube)
    wait_for(lambda: tube_counts(queue, "GLOW_ERRORS")["ready"] == 1, timeout=30,
             message="the failure report")

    for _ in range(2):  # reading twice shows the same: nothing was consumed
        result = glowlab("errors", address=address)
        assert result.returncode == 0, result.stderr
        text = result.stdout.decode()
        assert f"{tube}  exit status 3" in text and "$ sh -c 'echo oops >&2; exit 3'" in text
        assert "    | oops" in text
        assert tube_counts(queue, "GLOW_ERRORS")["ready"] == 1
    [report] = json.loads(glowlab("errors", "--json", address=address).stdout)
    assert report["tube"] == tube and report["exit_code"] == 3 and isinstance(report["id"], int)

    result = glowlab("errors", "--delete", address=address)
    assert result.returncode == 0 and b"exit status 3" in result.stdout
    assert tube_counts(queue, "GLOW_ERRORS")["ready"] == 0


def test_errors_follow_prints_new_reports_as_they_come(address: str, queue: Queue, tube: str) -> None:
    queue.put("GLOW_ERRORS", b"an old report, not JSON")
    proc = subprocess.Popen([sys.executable, "-m", "glowlab", "errors", "--follow", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=glowlab_env(address))
    try:
        out = Lines(proc.stdout)
        wait_for(lambda: len(out.lines) == 1, timeout=30, message="the old report")
        assert json.loads(out.lines[0])["raw"] == "an old report, not JSON"
        result = glowlab("run", "--tube", tube, "--", "sh", "-c", "exit 4", address=address)
        assert result.returncode == 4
        wait_for(lambda: len(out.lines) == 2, timeout=30, message=f"the new report; got {out.lines}")
        new = json.loads(out.lines[1])
        assert new["tube"] == tube and new["error"] == "exit status 4"
        assert tube_counts(queue, "GLOW_ERRORS")["ready"] == 2
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0


# -- run -----------------------------------------------------------------------------------
def test_run_exits_with_the_jobs_status_and_reports_final_failures(address: str, queue: Queue,
                                                                   tube: str, tmp_path: Path) -> None:
    ok = glowlab("run", "--", "sh", "-c", "echo out; echo err >&2", address=address)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, b"out\n", b"err\n")

    log = tmp_path / "run.log"
    failed = glowlab("run", "--tube", tube, "--out", str(log), "--retries", "1", "--",
                     "sh", "-c", "echo try; exit 3", address=address)
    assert failed.returncode == 3
    assert log.read_text() == "try\ntry\n"  # retried once, at once
    assert "glowlab: job failed: exit status 3" in failed.stderr.decode()
    assert glowlab("run", "--", "no-such-command-here", address=address).returncode == 127
    assert glowlab("run", "--timeout", "0.5", "--", "sleep", "30", address=address).returncode == 124

    reports = [record for _, record in ops.read_errors(queue)]
    assert [r["tube"] for r in reports] == [tube, "local", "local"]
    assert reports[0]["attempt"] == 2 and reports[0]["log"] == "try\n"


def test_run_warns_when_the_queue_is_unreachable_and_mails_the_failure(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    class Inbox:
        messages: list = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append(envelope)
            return "250 OK"

    smtp_port = free_port()
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        address = f"127.0.0.1:{free_port()}"
        result = glowlab("run", "--mailto", "ops@example.org", "--smtp-server", f"127.0.0.1:{smtp_port}",
                         "--", "sh", "-c", "exit 5", address=address)
    finally:
        controller.stop()
    stderr = result.stderr.decode()
    assert result.returncode == 5, stderr
    assert "the failure was not reported to GLOW_ERRORS: cannot reach beanstalkd" in stderr
    [mail] = inbox.messages
    assert mail.rcpt_tos == ["ops@example.org"] and b"FAILED: sh -c 'exit 5'" in mail.content


def test_run_stops_the_job_on_interrupt_without_reporting(address: str, queue: Queue,
                                                         tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    proc = subprocess.Popen([sys.executable, "-m", "glowlab", "run", "--",
                             "sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"],
                            env=glowlab_env(address), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=30, message="the job")
    job_pid = int(pid_file.read_text())
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130
    with pytest.raises(ProcessLookupError):
        os.kill(job_pid, 0)
    assert tube_counts(queue, "GLOW_ERRORS")["ready"] == 0
