"""Submitting jobs: the ``glowlab submit`` command (as a subprocess) and the Python API,
against a real beanstalkd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Iterator

import greenstalk
import pytest

import glowlab
from glowlab.cluster import Beanstalkd, free_port
from glowlab.errors import InvalidJobError, QueueError
from glowlab.job import Job, decode
from glowlab.queue import Queue

from conftest import glowlab as run_glowlab, glowlab_env, tube_counts

SMALL_LIMIT = 1000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Beanstalkd]:
    """A beanstalkd of this module: jobs queued here must never reach other tests' listeners."""
    srv = Beanstalkd(binlog_dir=str(tmp_path_factory.mktemp("submit-binlog"))).start()
    yield srv
    srv.stop()


@pytest.fixture
def small_server() -> Iterator[Beanstalkd]:
    """A beanstalkd that refuses bodies over SMALL_LIMIT bytes."""
    srv = Beanstalkd(max_job_size=SMALL_LIMIT).start()
    yield srv
    srv.stop()


def submit(*args: str, address: str, input: str | bytes | None = None):
    return run_glowlab("submit", *args, address=address, input=input)


def peek(queue: Queue, tube: str) -> tuple[Job, dict]:
    """The first job of ``tube`` in any state, decoded, with beanstalkd's stats of it."""
    client = queue.client
    client.use(tube)
    for look in (client.peek_ready, client.peek_delayed, client.peek_buried):
        try:
            found = look()
        except greenstalk.NotFoundError:
            continue
        return decode(found.body), queue.stats_job(found.id)
    raise AssertionError(f"no job in tube {tube}")


def reserve_all(queue: Queue, tube: str) -> list[Job]:
    """Every ready job of ``tube``, in the order beanstalkd hands them out."""
    queue.watch_only([tube])
    jobs = []
    while (reserved := queue.reserve(0)) is not None:
        jobs.append(decode(reserved.body))
    return jobs


def assert_one_line_error(result, code: int, *needles: str) -> str:
    stderr = result.stderr.decode()
    assert result.returncode == code, stderr
    assert "Traceback" not in stderr
    assert stderr.startswith("glowlab: error: ") and stderr.count("\n") == 1, stderr
    for needle in needles:
        assert needle in stderr
    assert result.stdout == b""
    return stderr


# -- one command ------------------------------------------------------------------------
def test_submit_one_command(address: str, queue: Queue, tube: str) -> None:
    result = submit("--tube", tube, "--", "ls", "-l", "a b", address=address)
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.decode().strip()
    assert f"queued 1 job on {tube}" in result.stderr.decode()
    assert tube_counts(queue, tube) == {"ready": 1, "reserved": 0, "delayed": 0, "buried": 0}
    (job,) = reserve_all(queue, tube)
    assert job == Job(cmd="ls", tube=tube, args=("-l", "a b"), id=job_id)


def test_every_option_lands_in_the_body_and_in_beanstalkd(address: str, queue: Queue, tube: str) -> None:
    result = submit(
        "--tube", tube, "--out", "/o.log", "--stdout", "/s.log", "--stderr", "/e.log",
        "--workdir", "/w", "--pri", "7", "--delay", "300", "--mailto", "a@b.c,d@e.f",
        "--ttr", "90", "--timeout", "3600", "--retries", "2", "--after", "p1,p2",
        "--env", "A=1", "--env", "B=x=y", "--", "python", "-c", "print(1)", address=address)
    assert result.returncode == 0, result.stderr
    job, stats = peek(queue, tube)
    assert job == Job(
        cmd="python", tube=tube, args=("-c", "print(1)"), out="/o.log", stdout="/s.log",
        stderr="/e.log", workdir="/w", pri=7, delay=300, mailto=("a@b.c", "d@e.f"), ttr=90,
        timeout=3600.0, retries=2, after=("p1", "p2"), env={"A": "1", "B": "x=y"},
        id=result.stdout.decode().strip())
    assert (stats["tube"], stats["state"], stats["pri"], stats["delay"], stats["ttr"]) == (
        tube, "delayed", 7, 300, 90)


def test_json_output(address: str, queue: Queue, tube: str) -> None:
    result = submit("--json", "--tube", tube, "--", "true", address=address)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    (job,) = reserve_all(queue, tube)
    assert printed == {"queued": 1, "jobs": [{"id": job.id, "tube": tube}]}


# -- stdin -------------------------------------------------------------------------------
def test_stdin_seed_readme_json(address: str, queue: Queue, tube: str) -> None:
    text = ('[{"cmd":"ls","pri":"0","tube":"foo","delay":"0","mailto":"example@example.com",'
            '"out":"/tmp/glow.out","workdir":"/tmp/glow"},{"cmd":"ps","pri":"1","tube":"bar",'
            '"delay":"0","mailto":"example@example.com","out":"/tmp/glow.out","workdir":"/tmp/glow"}]')
    text = text.replace('"foo"', f'"{tube}-foo"').replace('"bar"', f'"{tube}-bar"')
    result = submit(address=address, input=text)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == 2
    for cmd, name, pri in (("ls", f"{tube}-foo", 0), ("ps", f"{tube}-bar", 1)):
        job, stats = peek(queue, name)
        assert (job.cmd, job.pri, job.workdir, job.out, job.mailto) == (
            cmd, pri, "/tmp/glow", "/tmp/glow.out", ("example@example.com",))
        assert (stats["pri"], stats["delay"], stats["state"]) == (pri, 0, "ready")


def test_unknown_keys_warn_once_and_the_jobs_are_queued(address: str, queue: Queue, tube: str) -> None:
    record = json.dumps({"cmd": "ls", "tube": tube, "colour": "red"})
    result = submit(address=address, input=f"[{record}, {record}, {record}]")
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().splitlines() == [
        "glowlab: WARNING: ignoring unknown job keys: colour", f"queued 3 jobs on {tube}"]
    assert tube_counts(queue, tube)["ready"] == 3


@pytest.mark.parametrize("trailing", ["", "\n"])
def test_stdin_json_lines_with_options_as_defaults(address: str, queue: Queue, tube: str,
                                                    trailing: str) -> None:
    lines = '{"cmd":"echo","args":"one"}\n{"cmd":"echo","args":["two"],"pri":"1"}' + trailing
    result = submit("--tube", tube, "--pri", "5", address=address, input=lines)
    assert result.returncode == 0, result.stderr
    jobs = reserve_all(queue, tube)
    assert [(j.args, j.pri, j.tube) for j in jobs] == [(("two",), 1, tube), (("one",), 5, tube)]
    assert [j.id for j in jobs][::-1] == result.stdout.decode().split()


def test_stdin_batch_of_10000_jobs(address: str, queue: Queue, tube: str) -> None:
    lines = "".join(json.dumps({"cmd": "true", "args": [str(i)]}) + "\n" for i in range(10_000))
    started = time.monotonic()
    result = submit("--tube", tube, address=address, input=lines)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    ids = result.stdout.decode().split()
    assert len(ids) == len(set(ids)) == 10_000
    assert tube_counts(queue, tube)["ready"] == 10_000
    first, _ = peek(queue, tube)
    assert (first.id, first.args) == (ids[0], ("0",))
    assert elapsed < 30, f"10,000 jobs took {elapsed:.1f} s"


def test_submit_many_10000_jobs_from_python(address: str, tube: str) -> None:
    jobs = [Job(cmd="true", tube=tube, args=(str(i),), pri=i % 3) for i in range(10_000)]
    with glowlab.connect(address) as queue:
        started = time.monotonic()
        assert queue.submit_many(jobs) == jobs
        elapsed = time.monotonic() - started
        assert tube_counts(queue, tube)["ready"] == 10_000
    assert elapsed < 15, f"10,000 jobs took {elapsed:.1f} s"


def test_a_bad_job_in_a_batch_queues_nothing(address: str, queue: Queue, tube: str) -> None:
    records = [{"cmd": "true", "tube": tube}] * 10
    records[5] = {"cmd": "true", "tube": tube, "pri": "high"}
    result = submit(address=address, input=json.dumps(records))
    assert_one_line_error(result, 3, "job 5:", "pri")
    assert queue.stats_tube(tube) is None


# -- errors ----------------------------------------------------------------------------
@pytest.mark.parametrize("args,stdin,needle", [
    (["--tube", "a b", "--", "ls"], None, "tube"),
    (["--tube=-x", "--", "ls"], None, "tube"),
    (["--tube", "T", "--pri", "high", "--", "ls"], None, "pri"),
    (["--tube", "T", "--pri", "-1", "--", "ls"], None, "pri"),
    (["--tube", "T", "--pri", "4294967296", "--", "ls"], None, "pri"),
    (["--tube", "T", "--delay", "-5", "--", "ls"], None, "delay"),
    (["--tube", "T", "--ttr", "0", "--", "ls"], None, "ttr"),
    (["--tube", "T", "--timeout", "never", "--", "ls"], None, "timeout"),
    (["--tube", "T", "--env", "NOEQUALS", "--", "ls"], None, "--env"),
    (["--tube", "T", "--mailto", "nobody", "--", "ls"], None, "mailto"),
    (["--tube", "T", "--after", "a b", "--", "ls"], None, "after"),
    (["--", "ls"], None, "--tube"),
    ([], '{"cmd":', "JSON"),
    ([], "[1]", "job 0"),
    ([], '[{"cmd":"ls","tube":null}]', "tube is required"),
    ([], '[{"cmd":"ls"}]', "tube is required"),
    ([], b'[{"cmd":"\xff"}]', "UTF-8"),
])
def test_invalid_input_is_one_line_with_exit_code_3(address: str, queue: Queue, tube: str,
                                                    args: list[str], stdin: object, needle: str) -> None:
    args = [tube if a == "T" else a for a in args]
    result = submit(*args, address=address, input=stdin if stdin is not None else b"")
    assert_one_line_error(result, 3, needle)
    assert queue.stats_tube(tube) is None


def test_no_command_and_stdin_a_terminal(address: str) -> None:
    controller, terminal = os.openpty()
    try:
        result = subprocess.run([sys.executable, "-m", "glowlab", "submit", "--tube", "t"],
                                stdin=terminal, capture_output=True, timeout=60,
                                env=glowlab_env(address))
    finally:
        os.close(controller)
        os.close(terminal)
    assert_one_line_error(result, 3, "stdin is a terminal")


def test_malformed_queue_address_is_a_configuration_error(address: str) -> None:
    result = run_glowlab("submit", "--tube", "t", "--", "ls", address=address,
                         env=glowlab_env("no-port-here"))
    assert_one_line_error(result, 2, "GLOW_QUEUE", "no-port-here")


@pytest.mark.parametrize("via", ["env", "option"])
def test_unreachable_queue_exits_4_naming_the_address(tube: str, via: str) -> None:
    dead = f"127.0.0.1:{free_port()}"
    if via == "env":
        result = submit("--tube", tube, "--", "ls", address=dead)
    else:
        result = submit("--queue", dead, "--tube", tube, "--", "ls", address="127.0.0.1:1")
    assert_one_line_error(result, 4, dead, "beanstalkd -l", "glowlab up")


# -- the server's size limit ---------------------------------------------------------------
def sized_job(tube: str, size: int) -> Job:
    """A job whose body is exactly ``size`` bytes."""
    base = len(Job(cmd="echo", tube=tube, args=("",), id="fixed").encode())
    job = Job(cmd="echo", tube=tube, args=("x" * (size - base),), id="fixed")
    assert len(job.encode()) == size
    return job


def test_body_size_limit_matches_the_server(small_server: Beanstalkd, tube: str) -> None:
    with glowlab.connect(small_server.address) as queue:
        assert queue.max_job_size == SMALL_LIMIT
        queue.submit(sized_job(tube, SMALL_LIMIT))
        with pytest.raises(InvalidJobError) as info:
            queue.submit(sized_job(tube, SMALL_LIMIT + 1))
        assert f"{SMALL_LIMIT + 1} bytes" in str(info.value)
        assert f"max-job-size of {SMALL_LIMIT}" in str(info.value)
        # the server agrees: one byte more is what it refuses
        with pytest.raises(QueueError, match="JOB_TOO_BIG"):
            queue.put(tube, b"x" * (SMALL_LIMIT + 1))
        assert tube_counts(queue, tube)["ready"] == 1


def test_oversized_job_in_a_python_batch_sends_nothing(small_server: Beanstalkd, tube: str) -> None:
    jobs = [sized_job(tube, 100), sized_job(tube, SMALL_LIMIT + 50), sized_job(tube, 100)]
    with glowlab.connect(small_server.address) as queue:
        with pytest.raises(InvalidJobError) as info:
            queue.submit_many(jobs)
        assert info.value.index == 1 and str(info.value).startswith("job 1: ")
        assert queue.stats_tube(tube) is None


def test_cli_rejects_an_oversized_body_before_sending(small_server: Beanstalkd, tube: str) -> None:
    result = submit("--tube", tube, "--", "echo", "x" * 2000, address=small_server.address)
    stderr = assert_one_line_error(result, 3, f"max-job-size of {SMALL_LIMIT}")
    size = len(Job(cmd="echo", tube=tube, args=("x" * 2000,), id="0" * 32).encode())
    assert f"body is {size} bytes" in stderr
    records = [{"cmd": "echo"}, {"cmd": "echo"}, {"cmd": "echo", "args": ["x" * 2000]}]
    result = submit("--tube", tube, address=small_server.address, input=json.dumps(records))
    assert_one_line_error(result, 3, "job 2:", f"max-job-size of {SMALL_LIMIT}")
    with Queue(small_server.address) as queue:
        assert queue.stats_tube(tube) is None


# -- Python API --------------------------------------------------------------------------
def test_connect_and_submit_from_python(address: str, queue: Queue, tube: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    job = Job(cmd="echo", tube=tube, args=("hi",), pri=3)
    with glowlab.connect(address) as conn:
        assert conn.submit(job) is job
    monkeypatch.setenv("GLOW_QUEUE", address)
    other = Job(cmd="echo", tube=tube, pri=4)
    with glowlab.connect() as conn:
        conn.submit(other)
    assert reserve_all(queue, tube) == [job, other]


def test_submit_to_a_closed_port_from_python(tube: str) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with pytest.raises(glowlab.QueueUnreachableError, match=dead):
        glowlab.connect(dead).submit(Job(cmd="ls", tube=tube))
