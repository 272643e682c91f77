"""``glowlab watch`` and the submit bar: rich on a terminal, plain text everywhere else."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import glowlab, glowlab_env, tube_counts, wait_for
from glowlab.progress import LARGE, putting
from glowlab.sweep import sweep

SIM = "import sys; sys.exit('boom') if sys.argv[1] == '2' else print('ok')"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GLOWLAB_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def small_batch(queue, tube: str, name: str):
    df = pd.DataFrame({"seed": range(4)})
    return sweep(df, f"{sys.executable} -c \"{SIM}\" {{seed}}", tube=tube, queue=queue, name=name)


def run_in_terminal(argv: list[str], env: dict, timeout: float = 60) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal; returns the exit status and what it drew."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
                            env={**env, "TERM": "xterm", "COLUMNS": "120"})
    os.close(follower)
    drawn = bytearray()
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process has exited
            break
        if not chunk:
            break
        drawn += chunk
    os.close(leader)
    return proc.wait(timeout), drawn.decode(errors="replace")


def test_snapshot_of_a_batch_when_not_a_terminal(queue, tube, address, start_listener, home):
    batch = small_batch(queue, tube, "snap")
    start_listener("--tubes", tube)
    batch.wait(timeout=60)
    result = glowlab("watch", "--batch", "snap", address=address,
                     env=glowlab_env(address, GLOWLAB_HOME=str(home / "home")))
    out = result.stdout.decode()
    assert result.returncode == 1, result.stderr  # a row failed
    assert out.startswith(f"batch snap ({batch.id}): 4 jobs\n")
    assert "4/4 finished · 3 done · 1 failed" in out and "  2: failed, exit status 1\n    boom" in out
    assert "\x1b[" not in out  # nothing animates


def test_follow_prints_a_line_per_change_until_the_batch_ends(queue, tube, address, start_listener, home):
    batch = small_batch(queue, tube, "follow")
    env = glowlab_env(address, GLOWLAB_HOME=str(home / "home"))
    watcher = subprocess.Popen([sys.executable, "-m", "glowlab", "watch", "--batch", batch.id,
                                "--follow", "--interval", "0.2"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    first = watcher.stdout.readline()  # seen before any job can start
    start_listener("--tubes", tube)
    out, err = watcher.communicate(timeout=60)
    lines = [first.rstrip("\n"), *out.splitlines()]
    assert watcher.returncode == 1, err
    assert "follow: 0/4 finished · 0 done · 4 queued" in lines[0]
    assert lines[-1].endswith("follow: 4/4 finished · 3 done · 1 failed · finished with 1 failed")
    assert len(lines) == len(set(line[9:] for line in lines)) <= 10  # no line twice: only changes


def test_tubes_snapshot(queue, tube, address):
    queue.put(tube, b"{}")
    queue.pause_tube(tube, 100)
    result = glowlab("watch", tube, address=address)
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.decode().splitlines()[1:]
    assert header.split() == ["TUBE", "READY", "RESERVED", "DELAYED", "BURIED", "PAUSED", "WATCHING"]
    assert row.split()[:3] == [tube, "1", "0"] and row.split()[5].endswith("s")


def test_on_a_terminal_rich_draws_until_the_batch_ends(queue, tube, address, start_listener, home):
    batch = small_batch(queue, tube, "live")
    start_listener("--tubes", tube)
    status, drawn = run_in_terminal(
        [sys.executable, "-m", "glowlab", "watch", "--batch", "live", tube, "--interval", "0.2"],
        glowlab_env(address, GLOWLAB_HOME=str(home / "home")))
    assert status == 1, drawn
    assert "\x1b[" in drawn and "━" in drawn  # rich's live bars
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn)
    final = text[text.rindex("batch live"):]
    assert "4/4" in final and "3 done" in final and "failed rows (1)" in final and "boom" in final
    assert "listener slot(s) connected" in final and tube in final
    assert batch.counts()["done"] == 3


def test_interval_must_be_positive(address):
    result = glowlab("watch", "--interval", "0", address=address)
    assert result.returncode == 2
    assert result.stderr.decode() == "glowlab: error: --interval must be more than 0 seconds, not 0.0\n"


def test_submit_of_a_large_batch_draws_a_bar_on_a_terminal(queue, tube, address, tmp_path):
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{"cmd": "true", "tube": tube}] * LARGE))
    status, drawn = run_in_terminal(
        ["sh", "-c", f'"{sys.executable}" -m glowlab submit --json < "{jobs}" > /dev/null'],
        glowlab_env(address))
    assert status == 0, drawn
    assert "queuing" in drawn and f"{LARGE}/{LARGE}" in drawn
    wait_for(lambda: tube_counts(queue, tube)["ready"] == LARGE, message="every job queued")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_submit_bar_is_only_for_large_batches_on_a_terminal() -> None:
    with putting(LARGE - 1, Terminal()) as small, putting(LARGE, io.StringIO()) as piped:
        assert small is None and piped is None
    screen = Terminal()
    with putting(LARGE, screen) as report:
        report(LARGE // 2)
        report(LARGE)
    assert f"{LARGE}/{LARGE}" in screen.getvalue()
