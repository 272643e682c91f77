"""Hostile and broken input: nothing runs that should not, nothing is half-queued, and the
listener carries on. Real beanstalkd, real listener processes."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import glowlab, tube_counts
from glowlab.cluster import Beanstalkd
from glowlab.errors import InvalidJobError
from glowlab.job import Job
from glowlab.queue import Queue
from listening import Start, collect, errors, results_tube, sh, wait_job

ROOT = os.geteuid() == 0


@pytest.fixture
def server(own_server: Beanstalkd) -> Beanstalkd:
    return own_server


def proves_listener_alive(queue: Queue, tube: str, tmp_path: Path, proc) -> None:
    """A good job after the bad ones still runs."""
    marker = tmp_path / "alive"
    queue.submit(sh(f"touch {marker}", tube))
    wait_job(marker.exists, proc, "a good job after the bad ones")


@pytest.mark.parametrize("body", [
    b"not json at all",
    b'{"cmd": "touch", "args": ["PWNED"], "tube": ',            # truncated
    b'{"cmd": 42, "tube": "t"}',                                 # wrong type
    b'{"cmd": "touch\\u0000x", "args": ["PWNED"], "tube": "t"}',  # NUL byte
    b'{"args": ["PWNED"], "tube": "t"}',                         # no cmd
    b"[1, 2, 3]",
    pickle.dumps({"cmd": "touch", "args": ["PWNED"]}),
], ids=["text", "truncated", "wrong-type", "nul", "missing-cmd", "list", "pickle"])
def test_malformed_bodies_are_buried_never_run(body, queue, tube, start_listener: Start,
                                               tmp_path: Path):
    listener = start_listener()
    queue.put(tube, body)
    wait_job(lambda: tube_counts(queue, tube)["buried"] == 1, listener, "the bad body buried")
    (report,) = errors(queue, 1)
    assert "malformed" in report["error"] or "not" in report["error"]
    assert not (Path("/tmp") / "PWNED").exists() and not (tmp_path / "PWNED").exists()
    proves_listener_alive(queue, tube, tmp_path, listener)


def test_unknown_fields_warn_and_the_job_runs(queue, tube, start_listener: Start, tmp_path: Path):
    listener = start_listener()
    marker = tmp_path / "ran"
    queue.put(tube, json.dumps({"cmd": "touch", "args": [str(marker)], "tube": tube,
                                "colour": "blue"}).encode())
    wait_job(marker.exists, listener, "the job with an unknown field")


def test_bodies_at_and_over_max_job_size(tmp_path: Path, tube):
    limit = 4096
    server = Beanstalkd(binlog_dir=str(tmp_path), max_job_size=limit).start()
    try:
        queue = Queue(server.address)
        base = len(Job(cmd="x", tube=tube, id="i").encode())
        at = Job(cmd="x" * (1 + limit - base), tube=tube, id="i")
        assert len(at.encode()) == limit
        queue.submit(at)
        for extra in (1, 10 * limit):
            over = Job(cmd="x" * (1 + limit - base + extra), tube=tube, id="i")
            with pytest.raises(InvalidJobError, match=f"max-job-size of {limit}"):
                queue.submit_many([Job(cmd="ok", tube=tube), over])
        assert tube_counts(queue, tube)["ready"] == 1, "nothing of a refused batch was queued"
        queue.close()
    finally:
        server.stop()


@pytest.mark.parametrize("tube_name", ["with space", "caf\u00e9", "-lead", "x" * 201, ""])
def test_bad_tube_names_are_refused_before_anything_is_queued(address, tube_name):
    proc = glowlab("submit", f"--tube={tube_name}", "--", "true", address=address)
    assert proc.returncode == 3 and b"not a valid tube name" in proc.stderr
    assert b"Traceback" not in proc.stderr


@pytest.mark.parametrize("option,value,message", [
    ("--pri", "-1", b"pri must be between"), ("--pri", str(2**32), b"pri must be between"),
    ("--pri", "1.5", b"pri must be a whole number"), ("--pri", "high", b"pri must be a whole number"),
    ("--delay", "-5", b"delay must be between"), ("--ttr", "0", b"ttr must be between"),
])
def test_bad_numbers_are_refused(address, tube, option, value, message):
    proc = glowlab("submit", "--tube", tube, option, value, "--", "true", address=address)
    assert proc.returncode == 3 and message in proc.stderr, proc.stderr


def test_shell_characters_and_non_utf8_bytes_pass_byte_for_byte(address, queue, tube,
                                                                start_listener: Start,
                                                                tmp_path: Path):
    out = tmp_path / "args.bin"
    script = "import sys, os; open(sys.argv[1], 'wb').write(b'\\0'.join(os.fsencode(a) for a in sys.argv[2:]))"
    hostile = [";", "$(touch PWNED)", "`touch PWNED`", "'\"", "a\nb", os.fsdecode(b"caf\xe9\xff")]
    listener = start_listener()
    proc = subprocess.run(
        [sys.executable, "-m", "glowlab", "submit", "--tube", tube, "--workdir", str(tmp_path), "--",
         sys.executable, "-c", script, str(out), *hostile],
        capture_output=True, env={**os.environ, "GLOW_QUEUE": address}, timeout=30)
    assert proc.returncode == 0, proc.stderr
    wait_job(out.exists, listener, "the job with hostile arguments")
    assert out.read_bytes().split(b"\0") == [os.fsencode(a) for a in hostile]
    assert not (tmp_path / "PWNED").exists()


def test_output_that_is_not_utf8_is_kept_raw_in_files_and_replaced_in_reports(
        queue, tube, start_listener: Start, tmp_path: Path):
    out, results = tmp_path / "raw.out", results_tube()
    job = Job(cmd=sys.executable, args=("-c", "import sys; sys.stdout.buffer.write(b'ok\\xff\\xfe\\n')"),
              tube=tube, out=str(out), results=results)
    listener = start_listener()
    queue.submit(job)
    (outcome,) = collect(queue, results, 1, proc=listener)
    assert outcome["status"] == "done" and outcome["stdout"] == "ok\ufffd\ufffd\n"
    assert out.read_bytes() == b"ok\xff\xfe\n"


@contextlib.contextmanager
def read_only_folder(path: Path):
    path.mkdir()
    if ROOT:  # root ignores permission bits: a read-only mount is what really refuses
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)], check=True)
    else:
        path.chmod(0o555)
    try:
        yield path
    finally:
        if ROOT:
            subprocess.run(["umount", str(path)], check=True)
        else:
            path.chmod(0o755)


@contextlib.contextmanager
def full_folder(path: Path):
    """A folder on a 64 KiB tmpfs (as root), where writing soon fails with ENOSPC."""
    assert ROOT, "the full-disk test mounts a tmpfs and must run as root (CI does)"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_start_failures_are_reported_with_the_os_reason(queue, tube, start_listener: Start,
                                                         tmp_path: Path):
    not_exec = tmp_path / "script.sh"
    not_exec.write_text("#!/bin/sh\necho hi\n")
    results = results_tube()
    with read_only_folder(tmp_path / "ro") as ro:
        jobs = [Job(cmd="no-such-program-xyz", tube=tube, results=results),
                Job(cmd=str(not_exec), tube=tube, results=results),
                Job(cmd="true", tube=tube, workdir=str(tmp_path / "missing"), results=results),
                Job(cmd="true", tube=tube, out=str(ro / "sub" / "x.log"), results=results)]
        listener = start_listener()
        queue.submit_many(jobs)
        outcomes = {o["job_id"]: o for o in collect(queue, results, 4, proc=listener)}
    errors_by_job = [outcomes[j.id]["error"] for j in jobs]
    assert "not found" in errors_by_job[0]
    assert "Permission denied" in errors_by_job[1]
    assert "workdir" in errors_by_job[2] and "No such file or directory" in errors_by_job[2]
    assert "Read-only file system" in errors_by_job[3] or "Permission denied" in errors_by_job[3]
    assert all(outcomes[j.id]["status"] == "failed" for j in jobs)
    proves_listener_alive(queue, tube, tmp_path, listener)


def test_a_full_disk_fails_the_job_clearly_and_the_listener_carries_on(
        queue, tube, start_listener: Start, tmp_path: Path):
    results = results_tube()
    with full_folder(tmp_path / "full") as full:
        job = Job(cmd=sys.executable, args=("-c", "print('x' * 1_000_000)"), tube=tube,
                  out=str(full / "big.log"), results=results)
        listener = start_listener()
        queue.submit(job)
        (outcome,) = collect(queue, results, 1, proc=listener)
    assert outcome["status"] == "failed"
    assert "No space left on device" in outcome["error"]
    proves_listener_alive(queue, tube, tmp_path, listener)
