"""The runner finds a job's command the way the job's PATH says, even as PATH folders change,
and pumps both pipes to the end however the process treats them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from glowlab import runner
from glowlab.job import Job


def tool(folder: Path, says: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "glowlab-test-tool"
    script.write_text(f"#!/bin/sh\necho {says}\n")
    script.chmod(0o755)


def run(tmp_path: Path, path: str) -> str:
    job = Job(cmd="glowlab-test-tool", tube="t", workdir=str(tmp_path), env={"PATH": path})
    outcome = runner.run(job)
    assert outcome.ok, outcome.describe()
    return outcome.stdout.strip()


def test_a_command_is_found_on_the_jobs_own_path(tmp_path: Path) -> None:
    tool(tmp_path / "a", "from-a")
    assert run(tmp_path, f"{tmp_path / 'a'}:/usr/bin:/bin") == "from-a"


def test_a_relative_path_folder_is_inside_the_workdir(tmp_path: Path) -> None:
    tool(tmp_path / "bin", "from-workdir")
    assert run(tmp_path, "bin:/usr/bin:/bin") == "from-workdir"


def test_a_command_removed_since_it_was_found_is_found_again(tmp_path: Path) -> None:
    path = f"{tmp_path / 'a'}:{tmp_path / 'b'}:/usr/bin:/bin"
    tool(tmp_path / "a", "from-a")
    assert run(tmp_path, path) == "from-a"
    os.unlink(tmp_path / "a" / "glowlab-test-tool")
    tool(tmp_path / "b", "from-b")
    assert run(tmp_path, path) == "from-b", "the remembered place was gone: PATH is searched again"


def test_a_newly_installed_command_is_seen_after_a_while(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "FOUND_FOR", 0.2)
    path = f"{tmp_path / 'a'}:{tmp_path / 'b'}:/usr/bin:/bin"
    tool(tmp_path / "b", "from-b")
    assert run(tmp_path, path) == "from-b"
    tool(tmp_path / "a", "from-a")  # earlier on PATH: it wins once the lookup is renewed
    deadline = runner.time.monotonic() + 5
    while run(tmp_path, path) != "from-a":
        assert runner.time.monotonic() < deadline, "the new command was never used"


def test_a_missing_command_fails_for_good(tmp_path: Path) -> None:
    job = Job(cmd="glowlab-no-such-tool", tube="t", workdir=str(tmp_path))
    outcome = runner.run(job)
    assert not outcome.ok and outcome.permanent
    assert "executable not found" in outcome.error


def sh(tmp_path: Path, script: str, **fields) -> "runner.Outcome":
    return runner.run(Job(cmd="sh", args=["-c", script], tube="t", workdir=str(tmp_path), **fields))


def test_both_streams_are_read_to_the_end_and_kept_apart(tmp_path: Path) -> None:
    # more than a pipe holds (64 KiB) on each stream, interleaved
    outcome = sh(tmp_path, "i=0; while [ $i -lt 3000 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done; "
                           "exit 3", out="both.log")
    assert outcome.exit_code == 3 and not outcome.ok
    assert outcome.stdout.endswith("out2999\n") and "err" not in outcome.stdout
    assert outcome.stderr.endswith("err2999\n") and "out" not in outcome.stderr
    assert (tmp_path / "both.log").read_text().count("\n") == 6000


def test_a_process_that_closes_its_pipes_and_runs_on_is_waited_for(tmp_path: Path) -> None:
    outcome = sh(tmp_path, "echo before; exec >&- 2>&-; sleep 0.3; exit 4")
    assert outcome.exit_code == 4 and outcome.stdout == "before\n"
    assert outcome.seconds >= 0.3


def test_a_leftover_holding_the_pipes_does_not_hold_the_job(tmp_path: Path) -> None:
    # the leader exits; what it left in its group is killed and the pipes reach end of file
    outcome = sh(tmp_path, "echo started; (sleep 30; echo late) & exit 0")
    assert outcome.ok and outcome.stdout == "started\n"
    assert outcome.seconds < runner.DRAIN_GRACE + 5
