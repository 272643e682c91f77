"""The README's two commands come first, CI runs one of them, and the Makefile parses."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def make(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run make in the repository, free of any make that runs this test suite."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_readme_shows_make_demo_and_make_test_first() -> None:
    first_block = re.search(r"```\w*\n(.*?)```", README, re.S)
    assert first_block, "README has no code block"
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make demo", "make test"]
    assert README.index("make demo") < README.index("glowlab ")


def test_ci_runs_make_test() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert script.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script
    assert re.search(r"^make test\b", script, re.M)


@pytest.mark.parametrize("goal,command", [("demo", ".venv/bin/glowlab demo"),
                                          ("test", ".venv/bin/pytest -p no:cacheprovider")])
def test_make_goal_parses_and_runs_in_the_venv(goal: str, command: str) -> None:
    result = make("-n", goal)
    assert result.returncode == 0, result.stderr
    assert command in result.stdout
    assert "apt-get install -y" in result.stdout  # the set-up step is part of the goal
    assert "beanstalkd" in result.stdout


def test_make_test_fails_when_pytest_collects_nothing() -> None:
    # -o skips the set-up steps: this test runs inside a set-up venv.
    result = make("-o", "system-test", "-o", ".venv/.installed", "test",
                  "PYTEST_ARGS=-q tests/test_readme_commands.py -k no_test_has_this_name", timeout=120)
    assert result.returncode != 0
    assert "make test: pytest collected no tests" in result.stderr
