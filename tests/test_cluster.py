"""LocalCluster and ``glowlab up``: a private beanstalkd and listeners that leave nothing behind."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import glowlab
from glowlab.errors import BeanstalkdMissingError
from glowlab.job import Job

from conftest import glowlab as run_glowlab, glowlab_env, wait_for


# -- processes, read from /proc (psutil is not a dependency) ---------------------------
def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of ``pid``, or None when it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state, ppid = text[text.rindex(")") + 2:].split()[:2]  # the name may hold spaces and ')'
    return state, int(ppid)


def alive(pid: int) -> bool:
    """True for a process that still runs (a zombie has finished)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in "ZX"


def descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None and stat[0] not in "ZX":
            children.setdefault(stat[1], []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def roles(pids: set[int]) -> dict[str, int]:
    """How many beanstalkd, listener and guardian processes are among ``pids``."""
    counts = {"beanstalkd": 0, "listen": 0, "glowlab.guardian": 0}
    for pid in pids:
        argv = cmdline(pid)
        for role in counts:
            if any(os.path.basename(a) == role for a in argv):
                counts[role] += 1
    return counts


FULL_CLUSTER = {"beanstalkd": 1, "listen": 2, "glowlab.guardian": 3}
"""Two listeners: beanstalkd, the listeners, each listener's guardian and the cluster's own."""


def wait_for_tree(root: int, before: set[int] = frozenset()) -> set[int]:
    def tree() -> set[int] | None:
        pids = descendants(root) - before
        return pids if roles(pids) == FULL_CLUSTER else None
    return wait_for(tree, timeout=60, message=f"the processes of a cluster {FULL_CLUSTER}")


def read_line(pipe, timeout: float = 60) -> str:
    ready, _, _ = select.select([pipe], [], [], timeout)
    assert ready, f"no line within {timeout} s"
    return pipe.readline().decode()


@pytest.fixture
def no_beanstalkd_path(tmp_path: Path) -> str:
    """A PATH holding only python: beanstalkd cannot be found on it."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "python").symlink_to(sys.executable)
    return str(folder)


# -- LocalCluster --------------------------------------------------------------------
def test_local_cluster_runs_a_job_and_leaves_nothing_behind(tmp_path: Path) -> None:
    before = descendants(os.getpid())
    out = tmp_path / "deep" / "out.txt"
    with glowlab.LocalCluster(listeners=2) as cluster:
        assert re.fullmatch(r"127\.0\.0\.1:\d+", cluster.address)
        cluster.queue.submit(Job(cmd="echo", tube="test", args=("hello",), out=str(out)))
        wait_for(lambda: out.exists() and out.read_text() == "hello\n", timeout=60,
                 message="the job's output")
        pids = wait_for_tree(os.getpid(), before)
        assert len(cluster.listener_pids) == 2
        binlog = cluster.server.binlog_dir
        assert binlog and os.path.isdir(binlog)
    left = sorted(pid for pid in pids if alive(pid))
    assert not left, [(pid, cmdline(pid)) for pid in left]
    assert not os.path.exists(binlog)
    cluster.close()  # closing twice is harmless


def test_local_cluster_without_beanstalkd(no_beanstalkd_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    before = descendants(os.getpid())
    monkeypatch.setenv("PATH", no_beanstalkd_path)
    with pytest.raises(BeanstalkdMissingError) as info:
        glowlab.LocalCluster(listeners=1)
    assert info.value.exit_code == 6
    assert "apt-get install beanstalkd" in str(info.value)
    assert descendants(os.getpid()) - before == set()


# -- glowlab up ------------------------------------------------------------------------
def start_up(tmp_path: Path) -> subprocess.Popen:
    """``glowlab up`` as a shell starts a background job: with SIGINT ignored, which ``up`` must undo."""
    return subprocess.Popen(
        [sys.executable, "-m", "glowlab", "up"], stdout=subprocess.PIPE,
        stderr=open(tmp_path / "up.log", "wb"), env=glowlab_env("unused:1"),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )


def test_glowlab_up_runs_jobs_and_stops_on_sigint(tmp_path: Path) -> None:
    proc = start_up(tmp_path)
    try:
        first = read_line(proc.stdout)
        match = re.fullmatch(r"GLOW_QUEUE=(127\.0\.0\.1:\d+)\n", first)
        assert match, first
        address = match.group(1)
        out = tmp_path / "out.txt"
        result = run_glowlab("submit", "--tube", "test", "--out", str(out), "--", "echo", "via up",
                             address=address)
        assert result.returncode == 0, result.stderr
        wait_for(lambda: out.exists() and out.read_text() == "via up\n", timeout=60,
                 message="the job's output")
        pids = wait_for_tree(proc.pid)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, (tmp_path / "up.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = sorted(pid for pid in pids if alive(pid))
    assert not left, [(pid, cmdline(pid)) for pid in left]
    assert "Traceback" not in (tmp_path / "up.log").read_text()


def test_glowlab_up_without_beanstalkd(no_beanstalkd_path: str) -> None:
    env = {**glowlab_env("unused:1"), "PATH": no_beanstalkd_path}
    result = run_glowlab("up", address="unused:1", env=env, timeout=60)
    stderr = result.stderr.decode()
    assert result.returncode == 6, stderr
    assert "Traceback" not in stderr
    assert stderr.startswith("glowlab: error: ") and stderr.count("\n") == 1, stderr
    assert "apt-get install beanstalkd" in stderr
    assert result.stdout == b""


def test_killing_glowlab_up_leaves_nothing_behind(tmp_path: Path) -> None:
    """kill -9 gives no chance to clean up: the guardians must stop the server and listeners."""
    proc = start_up(tmp_path)
    try:
        assert read_line(proc.stdout).startswith("GLOW_QUEUE=")
        pids = wait_for_tree(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    try:
        wait_for(lambda: not any(alive(pid) for pid in pids), timeout=30, message="the cluster to end")
    except AssertionError:
        raise AssertionError(f"left running: {[cmdline(p) for p in pids if alive(p)]}") from None
