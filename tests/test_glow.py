"""The ``glow`` command: Go-style flags translated to glowlab, and the seed README's
commands run for real (listener, single job, stdin batch, stats, drain, pause, local)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from glowlab.cluster import Beanstalkd
from glowlab.glow import FLAGS, UsageError, parse_flags, translate
from glowlab.job import decode
from glowlab.queue import Queue

from conftest import glowlab_env, tube_counts, wait_for

GLOW = Path(sys.executable).with_name("glow")
SEED_BATCH = (
    '[{"cmd":"ls","pri":"0","tube":"foo","delay":"0","mailto":"example@example.com",'
    '"out":"/tmp/glow.out","workdir":"/tmp/glow"},'
    '{"cmd":"ps","pri":"1","tube":"bar","delay":"0","mailto":"example@example.com",'
    '"out":"/tmp/glow.out","workdir":"/tmp/glow"}]'
)


@pytest.fixture
def server(own_server: Beanstalkd) -> Beanstalkd:
    """A beanstalkd per test: the README's tube names (test, foo, bar) are this test's own."""
    return own_server


def glow(*args: str, address: str, input: str | None = None) -> subprocess.CompletedProcess:
    """The installed ``glow`` console script, as a user runs it."""
    return subprocess.run([str(GLOW), *args], input=input.encode() if input else None,
                          capture_output=True, timeout=60, env=glowlab_env(address))


@pytest.fixture
def glow_listener(address: str, tmp_path: Path) -> Iterator:
    """Start ``glow -listen ...`` with stdout piped; returns (process, lines of its stdout)."""
    procs = []

    def start(*flags: str):
        log = open(tmp_path / f"glow-listen-{len(procs)}.log", "wb")
        proc = subprocess.Popen([str(GLOW), "-listen", *flags], stdout=subprocess.PIPE, stderr=log,
                                env=glowlab_env(address))
        procs.append(proc)
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(l.decode() for l in proc.stdout), daemon=True).start()
        return proc, lines

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(20)


def first_job(queue: Queue, tube: str):
    peeked = queue.peek_ready(tube) or queue.peek_delayed(tube)
    assert peeked is not None, f"no job on {tube}"
    return decode(peeked.body), queue.stats_job(peeked.id)


# -- translation (pure) ----------------------------------------------------------------
@pytest.mark.parametrize("argv, expected", [
    (["-listen"], ["listen"]),
    (["-listen", "-v", "-exclude=a,b", "-deps", "d.json", "-log=l.log", "-smtp-server=h:25",
      "-mail-from=x@y"],
     ["listen", "--verbose", "--exclude=a,b", "--deps=d.json", "--log=l.log",
      "--smtp-server=h:25", "--mail-from=x@y"]),
    (["-listen", "-v=false"], ["listen"]),
    (["--listen=true", "--v"], ["listen", "--verbose"]),
    (["-tube=test", "-out=/dev/stdout", "ls"], ["submit", "--tube=test", "--out=/dev/stdout", "--", "ls"]),
    (["-tube", "t", "-pri", "3", "-delay=5", "-mailto=a@b,c@d", "-stdout=o", "-stderr", "e", "echo", "hi"],
     ["submit", "--tube=t", "--stdout=o", "--stderr=e", "--pri=3", "--delay=5",
      "--mailto=a@b,c@d", "--", "echo", "hi"]),
    (["-tube=t", "ls", "-la", "-tube=x"], ["submit", "--tube=t", "--", "ls", "-la", "-tube=x"]),
    (["-tube=t", "--", "-weird-cmd"], ["submit", "--tube=t", "--", "-weird-cmd"]),
    (["-tube", "-dash-tube", "ls"], ["submit", "--tube=-dash-tube", "--", "ls"]),
    ([], ["submit"]),
    (["-tube=fallback"], ["submit", "--tube=fallback"]),
    (["-stats"], ["stats", "--json"]),
    (["-drain=a,b"], ["drain", "a,b"]),
    (["-pause=a,b", "-pause-delay=60"], ["pause", "a,b", "--seconds=60"]),
    (["-local", "-tube=t", "-mailto=a@b", "-smtp-server=h:25", "make", "-j2"],
     ["run", "--tube=t", "--mailto=a@b", "--smtp-server=h:25", "--", "make", "-j2"]),
    (["-workdir=/abs", "-tube=t", "pwd"], ["submit", "--tube=t", "--workdir=/abs", "--", "pwd"]),
])
def test_translation(argv: list[str], expected: list[str]) -> None:
    assert translate(argv) == expected


def test_a_relative_workdir_is_made_absolute_as_glow_did(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert translate(["-workdir=sub", "-tube=t", "ls"])[2] == f"--workdir={tmp_path / 'sub'}"


def test_go_flag_parsing_stops_at_the_first_argument() -> None:
    flags, rest = parse_flags(["-v", "-tube=a", "cmd", "-v", "--", "x"])
    assert flags == {"v": True, "tube": "a"} and rest == ["cmd", "-v", "--", "x"]
    assert parse_flags(["-", "x"]) == ({}, ["-", "x"])  # a lone dash is an argument, as in Go


@pytest.mark.parametrize("argv, message", [
    (["-nope"], "flag provided but not defined: -nope"),
    (["--tube"], "flag needs an argument: -tube"),
    (["-v=maybe"], 'invalid boolean value "maybe" for -v'),
    (["---x"], "bad flag syntax: ---x"),
    (["-=x"], "bad flag syntax: -=x"),
    (["-pause=a"], "-pause needs -pause-delay"),
    (["-pause=a", "-pause-delay=0"], "-pause needs -pause-delay"),
    (["-local"], "-local needs a command"),
])
def test_bad_command_lines(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        translate(argv)


def test_unknown_flag_is_one_line_and_exit_2(address: str) -> None:
    result = glow("-tube=t", "-bogus", "ls", address=address)
    assert result.returncode == 2
    assert result.stderr.decode() == "glow: error: flag provided but not defined: -bogus (see 'glow -h')\n"


@pytest.mark.parametrize("flag", ["-h", "-help", "--help", "-h=true"])
def test_help_lists_every_flag(flag: str, address: str) -> None:
    result = glow(flag, address=address)
    assert result.returncode == 0
    text = result.stdout.decode()
    assert text.startswith("usage:")
    for name in FLAGS:
        assert f"  -{name} " in text


# -- the seed README, for real ------------------------------------------------------------
def test_quickstart_output_appears_on_the_listeners_terminal(glow_listener, address: str,
                                                             tmp_path: Path) -> None:
    folder = tmp_path / "listing"
    folder.mkdir()
    for name in ("one.txt", "two.txt"):
        (folder / name).touch()
    listener, lines = glow_listener()
    result = glow("-tube=test", "-out=/dev/stdout", "ls", str(folder), address=address)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: lines == ["one.txt\n", "two.txt\n"], timeout=30,
             message=f"the listing on glow -listen's stdout; got {lines!r}")


def test_seed_batch_on_stdin_runs_on_a_listener(glow_listener, address: str, queue: Queue,
                                                tmp_path: Path) -> None:
    workdir, out = tmp_path / "glow", tmp_path / "glow.out"
    workdir.mkdir()
    (workdir / "marker-file").touch()
    batch = SEED_BATCH.replace("/tmp/glow.out", str(out)).replace("/tmp/glow", str(workdir))
    result = glow(address=address, input=batch)
    assert result.returncode == 0, result.stderr
    foo, foo_stats = first_job(queue, "foo")
    bar, bar_stats = first_job(queue, "bar")
    assert (foo.cmd, foo.mailto, foo.workdir, foo_stats["pri"]) == ("ls", ("example@example.com",), str(workdir), 0)
    assert (bar.cmd, bar_stats["pri"]) == ("ps", 1)

    glow_listener("-v")
    wait_for(lambda: out.exists() and "marker-file" in out.read_text() and "PID" in out.read_text(),
             timeout=30, message="the output of ls and ps in the out file")
    wait_for(lambda: tube_counts(queue, "foo")["ready"] + tube_counts(queue, "bar")["ready"] == 0,
             timeout=30, message="both jobs taken")


def test_job_flags_reach_the_job_and_arguments_after_the_command_are_its(address: str,
                                                                        queue: Queue, tmp_path: Path) -> None:
    result = glow("-tube", "t1", "-workdir", str(tmp_path), "-stdout=o.log", "-stderr=e.log", "-pri=9",
                  "-delay=300", "-mailto=a@example.org", "ls", "-la", "-tube=x", address=address)
    assert result.returncode == 0, result.stderr
    job, stats = first_job(queue, "t1")
    assert job.argv == ["ls", "-la", "-tube=x"]
    assert (job.workdir, job.stdout, job.stderr, job.mailto) == (str(tmp_path), "o.log", "e.log",
                                                                ("a@example.org",))
    assert (stats["pri"], stats["state"], stats["delay"]) == (9, "delayed", 300)


def test_stats_drain_and_pause(address: str, queue: Queue) -> None:
    for tube in ("a", "b"):
        assert glow(f"-tube={tube}", "true", address=address).returncode == 0
    stats = json.loads(glow("-stats", address=address).stdout)
    assert stats["a"] == {"jobs-ready": 1, "jobs-reserved": 0, "jobs-delayed": 0, "jobs-buried": 0, "pause": 0}

    result = glow("-pause=a,b", "-pause-delay=120", address=address)
    assert result.returncode == 0, result.stderr
    assert queue.stats_tube("a")["pause"] == queue.stats_tube("b")["pause"] == 120

    drained = glow("-drain=a,b", address=address)
    assert drained.returncode == 0, drained.stderr
    assert [r["tube"] for r in json.loads(drained.stdout)] == ["a", "b"]
    assert tube_counts(queue, "a")["ready"] == tube_counts(queue, "b")["ready"] == 0


def test_local_runs_here_and_reports_a_failure(address: str, queue: Queue, tmp_path: Path) -> None:
    ok = glow("-local", "-workdir", str(tmp_path), "pwd", address=address)
    assert (ok.returncode, ok.stdout.decode()) == (0, f"{tmp_path}\n")

    failed = glow("-local", "-tube=nightly", "sh", "-c", "exit 7", address=address)
    assert failed.returncode == 7
    wait_for(lambda: tube_counts(queue, "GLOW_ERRORS")["ready"] == 1, message="the GLOW_ERRORS report")
    report = json.loads(queue.peek_ready("GLOW_ERRORS").body)
    assert (report["cmd"], report["error"], report["tube"]) == ("sh -c 'exit 7'", "exit status 7", "nightly")


def test_glowlab_errors_use_glowlabs_one_line_form(address: str) -> None:
    result = glow("-tube=bad tube!", "ls", address=address)
    assert result.returncode == 3
    assert result.stderr.decode().startswith("glowlab: error: ") and result.stderr.count(b"\n") == 1


def test_console_script_is_installed() -> None:
    assert os.access(GLOW, os.X_OK), f"{GLOW} missing: run pip install -e . again"
