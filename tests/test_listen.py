"""``glowlab listen`` as a real process running real jobs from a real beanstalkd."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from glowlab.cluster import Beanstalkd
from glowlab.job import Job
from glowlab.queue import Queue

from conftest import glowlab, glowlab_env, tube_counts, tube_empty, wait_for

Start = Callable[..., subprocess.Popen]


@pytest.fixture
def server(own_server: Beanstalkd) -> Beanstalkd:
    """A beanstalkd per test: a listener watches every tube, so it must see only this test's."""
    return own_server


def put(queue: Queue, *jobs: Job) -> None:
    queue.submit_many(jobs)


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def wait_text(path: Path, text: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    """Wait until ``path`` holds exactly ``text``; on timeout show the listener's log."""
    try:
        wait_for(lambda: read(path) == text, timeout=timeout, message=f"{path} to hold {text!r}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; it holds {read(path)!r}; listener log:\n{log_of(proc)}") from None


def log_of(proc: subprocess.Popen) -> str:
    return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]


def wait_idle(queue: Queue, proc: subprocess.Popen) -> None:
    """Wait until the listener blocks in reserve: it has looked at the tubes and found no job."""
    wait_for(lambda: int(queue.stats()["current-waiting"]) >= 1, timeout=30,
             message=f"the listener to wait for jobs; log:\n{log_of(proc)}")


def deleted(queue: Queue, tube: str) -> int:
    return int((queue.stats_tube(tube) or {}).get("cmd-delete", 0))


# -- running and settling -------------------------------------------------------------
def test_jobs_run_and_are_deleted(start_listener: Start, queue: Queue, tube: str, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    put(queue, *(Job(cmd="echo", tube=tube, args=(f"job {i}",), out=str(out), pri=i) for i in range(3)))
    listener = start_listener()
    wait_text(out, "job 0\njob 1\njob 2\n", listener)
    wait_for(lambda: deleted(queue, tube) == 3, message="three deletes")
    assert tube_empty(queue, tube) and tube_counts(queue, tube)["buried"] == 0
    assert listener.poll() is None, log_of(listener)


def test_smaller_pri_runs_first(start_listener: Start, queue: Queue, tube: str, tmp_path: Path) -> None:
    out = tmp_path / "order.txt"
    pris = [5, 1, 2**32 - 1, 3, 0, 4]
    put(queue, *(Job(cmd="echo", tube=tube, args=(str(p),), out=str(out), pri=p) for p in pris))
    listener = start_listener()
    wait_text(out, "".join(f"{p}\n" for p in sorted(pris)), listener)


def test_a_delayed_job_waits_for_its_delay(start_listener: Start, queue: Queue, tube: str,
                                           tmp_path: Path) -> None:
    out = tmp_path / "late.txt"
    listener = start_listener()
    wait_idle(queue, listener)
    started = time.monotonic()
    put(queue, Job(cmd="echo", tube=tube, args=("late",), out=str(out), delay=2))
    delayed = tube_counts(queue, tube)["delayed"]
    assert delayed == 1 or time.monotonic() - started >= 2, "not delayed within its delay"

    def ran() -> bool:
        exists = out.exists()  # read before the state: a job that ran is no longer delayed
        assert not (exists and tube_counts(queue, tube)["delayed"]), "ran while still delayed"
        return exists

    wait_for(ran, timeout=30, message="the delayed job to run")
    assert time.monotonic() - started >= 1.9
    wait_text(out, "late\n", listener)


# -- choosing tubes -----------------------------------------------------------------
def marker_job(tube: str, folder: Path, name: str, pri: int = 0) -> Job:
    """A job that creates ``folder/name``."""
    folder.mkdir(exist_ok=True)
    return Job(cmd="touch", tube=tube, args=(name,), workdir=str(folder), pri=pri)


def test_exclude_is_by_exact_name(start_listener: Start, queue: Queue, tube: str, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    foo, foobar, fo = tube, f"{tube}bar", tube[:-1]
    put(queue, marker_job(foo, marks, "foo", pri=0),
        marker_job(foobar, marks, "foobar", pri=1), marker_job(fo, marks, "fo", pri=1))
    listener = start_listener("--exclude", f"{foo},unrelated")
    wait_for(lambda: (marks / "foobar").exists() and (marks / "fo").exists(), timeout=30,
             message="jobs of tubes whose names contain or prefix the excluded one")
    put(queue, marker_job(foobar, marks, "sentinel", pri=1))
    wait_for(lambda: (marks / "sentinel").exists(), timeout=30, message="a later job")
    assert not (marks / "foo").exists(), log_of(listener)
    assert tube_counts(queue, foo)["ready"] == 1


def test_exclude_holds_when_no_other_tube_exists(start_listener: Start, queue: Queue,
                                                 tube: str, tmp_path: Path) -> None:
    """With every existing tube excluded the listener must idle, not fall back to 'default'."""
    marks = tmp_path / "marks"
    put(queue, marker_job("default", marks, "from-default"))
    listener = start_listener("--exclude", "default")
    wait_idle(queue, listener)
    put(queue, marker_job(tube, marks, "sentinel"))
    wait_for(lambda: (marks / "sentinel").exists(), timeout=30, message="the sentinel job")
    assert not (marks / "from-default").exists(), (
        "a job of the excluded tube 'default' ran\n" + log_of(listener))


def test_tubes_are_exact_names(start_listener: Start, queue: Queue, tube: str, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    chosen, other = tube, f"{tube}-2"
    put(queue, marker_job(f"{chosen}bar", marks, "suffixed"), marker_job(chosen[:-1], marks, "prefix"),
        marker_job("default", marks, "default"), marker_job(chosen, marks, "chosen", pri=5),
        marker_job(other, marks, "other", pri=5))
    listener = start_listener("--tubes", f"{chosen},{other}")
    wait_for(lambda: (marks / "chosen").exists() and (marks / "other").exists(), timeout=30,
             message="jobs of the chosen tubes")
    put(queue, marker_job(chosen, marks, "sentinel", pri=5))
    wait_for(lambda: (marks / "sentinel").exists(), timeout=30, message="a later job")
    assert sorted(p.name for p in marks.iterdir()) == [
        "chosen", "other", "sentinel"], log_of(listener)


def test_a_tube_created_later_is_picked_up(start_listener: Start, queue: Queue, tube: str,
                                           tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    listener = start_listener()
    wait_idle(queue, listener)
    put(queue, marker_job(tube, marks, "first"))
    wait_for(lambda: (marks / "first").exists(), timeout=30, message="the first job")
    late = f"{tube}-late"
    assert queue.stats_tube(late) is None
    put(queue, marker_job(late, marks, "late"))
    wait_for(lambda: (marks / "late").exists(), timeout=30,
             message=f"the job of a new tube; log:\n{log_of(listener)}")


# -- the job's process ------------------------------------------------------------------
def test_output_file_and_its_folders_are_created_and_appended(start_listener: Start, queue: Queue,
                                                              tube: str, tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "c" / "out.log"
    put(queue, Job(cmd="echo", tube=tube, args=("one",), out=str(out), pri=0),
        Job(cmd="echo", tube=tube, args=("two",), out=str(out), pri=1))
    listener = start_listener()
    wait_text(out, "one\ntwo\n", listener)


def test_stdout_and_stderr_split_or_together(start_listener: Start, queue: Queue, tube: str,
                                             tmp_path: Path) -> None:
    script = ("import sys; print('to-out', flush=True); print('to-err', file=sys.stderr, flush=True); "
              "print('out-again', flush=True)")
    both = tmp_path / "both.log"
    put(queue,
        Job(cmd=sys.executable, tube=tube, args=("-c", script), stdout=str(tmp_path / "o.log"),
            stderr=str(tmp_path / "e.log"), out=str(tmp_path / "unused.log"), pri=0),
        Job(cmd=sys.executable, tube=tube, args=("-c", script), out=str(both), pri=1),
        Job(cmd=sys.executable, tube=tube, args=("-c", script), out=str(tmp_path / "rest.log"),
            stderr=str(tmp_path / "e2.log"), pri=2))
    listener = start_listener()
    wait_for(lambda: tube_empty(queue, tube) and deleted(queue, tube) == 3, timeout=30,
             message=f"three jobs; log:\n{log_of(listener)}")
    assert read(tmp_path / "o.log") == "to-out\nout-again\n"
    assert read(tmp_path / "e.log") == "to-err\n"
    assert not (tmp_path / "unused.log").exists()
    assert sorted(read(both).splitlines()) == ["out-again", "to-err", "to-out"]
    assert read(tmp_path / "rest.log") == "to-out\nout-again\n"
    assert read(tmp_path / "e2.log") == "to-err\n"


def test_dev_stdout_reaches_the_listeners_stdout(start_listener: Start, address: str, queue: Queue,
                                                 tmp_path: Path) -> None:
    """The seed's quickstart: the job's output appears on the terminal running the listener."""
    folder = tmp_path / "listing"
    folder.mkdir()
    for name in ("alpha.txt", "beta.txt"):
        (folder / name).touch()
    listener = start_listener(stdout=subprocess.PIPE)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(l.decode() for l in listener.stdout), daemon=True)
    reader.start()
    result = glowlab("submit", "--tube", "test", "--out", "/dev/stdout", "--", "ls", str(folder),
                     address=address)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: lines == ["alpha.txt\n", "beta.txt\n"], timeout=30,
             message=f"the listing on the listener's stdout; got {lines!r}; log:\n{log_of(listener)}")


def test_env_is_added(start_listener: Start, queue: Queue, tube: str, tmp_path: Path) -> None:
    out = tmp_path / "env.txt"
    job = Job(cmd="sh", tube=tube, args=("-c", 'echo "$GREETING $GLOWLAB_JOB_ID $FROM_LISTENER"'),
              env={"GREETING": "hello world"}, out=str(out))
    put(queue, job)
    listener = start_listener(env=glowlab_env(queue.address, FROM_LISTENER="kept"))
    wait_text(out, f"hello world {job.id} kept\n", listener)


def test_workdir_is_respected_and_relative_outputs_live_in_it(start_listener: Start, queue: Queue,
                                                               tube: str, tmp_path: Path) -> None:
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    put(queue, Job(cmd="pwd", tube=tube, workdir=str(workdir), out="logs/pwd.txt"))
    listener = start_listener()
    wait_text(workdir / "logs" / "pwd.txt", f"{workdir.resolve()}\n", listener)


def test_a_body_with_unknown_keys_runs_and_the_listener_log_says_so(
        start_listener: Start, queue: Queue, tube: str, tmp_path: Path) -> None:
    queue.put(tube, ('{"cmd":"touch","args":["ran"],"tube":"%s","workdir":"%s","colour":"red"}'
                     % (tube, tmp_path)).encode())
    listener = start_listener()
    wait_for(lambda: (tmp_path / "ran").exists(), timeout=30, message=f"the job; log:\n{log_of(listener)}")
    wait_for(lambda: "ignoring unknown job keys: colour" in log_of(listener), timeout=5,
             message="the warning in the listener's log")


def test_a_malformed_body_is_buried_and_the_listener_goes_on(start_listener: Start, queue: Queue,
                                                             tube: str, tmp_path: Path) -> None:
    queue.put(tube, b"this is not json", pri=0)
    queue.put(tube, b'{"cmd":"ls"}', pri=1)
    put(queue, Job(cmd="touch", tube=tube, args=("after",), workdir=str(tmp_path), pri=2))
    listener = start_listener()
    wait_for(lambda: (tmp_path / "after").exists(), timeout=30,
             message=f"the job after the malformed ones; log:\n{log_of(listener)}")
    wait_for(lambda: tube_counts(queue, tube)["buried"] == 2, message="two buried bodies")
    assert tube_counts(queue, tube)["ready"] == 0
    assert listener.poll() is None, log_of(listener)
    wait_for(lambda: tube_counts(queue, "GLOW_ERRORS")["ready"] == 2, message="two error reports")
