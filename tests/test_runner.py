"""The runner finds a job's command the way the job's PATH says, even as PATH folders change."""

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
