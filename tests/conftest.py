"""Fixtures: a real beanstalkd on a free loopback port, fresh tubes, real listeners.

Nothing is mocked. If beanstalkd is not installed the fixtures fail loudly:
a test suite that skips its broker tests proves nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from glowlab.cluster import Beanstalkd, stop_processes
from glowlab.queue import Queue

ROOT = Path(__file__).resolve().parent.parent

# CI runs as root, and listeners refuse root unless told; every listener a test starts is
# told so through the environment (tests/test_security.py checks the refusal itself).
os.environ["GLOWLAB_ALLOW_ROOT"] = "1"


def pytest_sessionstart(session: pytest.Session) -> None:
    if shutil.which("beanstalkd") is None:
        pytest.exit("beanstalkd is not installed: run 'make test' (it installs it) or "
                    "'apt-get install beanstalkd'", returncode=3)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Beanstalkd]:
    """One beanstalkd for the session (tests use fresh tube names)."""
    srv = Beanstalkd(binlog_dir=str(tmp_path_factory.mktemp("binlog"))).start()
    yield srv
    srv.stop()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Beanstalkd]:
    """A beanstalkd of the test's own, for tests that stop, restart or fill it."""
    binlog = tmp_path / "binlog"
    binlog.mkdir()
    srv = Beanstalkd(binlog_dir=str(binlog)).start()
    yield srv
    srv.stop()


@pytest.fixture
def address(server: Beanstalkd) -> str:
    return server.address


@pytest.fixture
def queue(address: str) -> Iterator[Queue]:
    q = Queue(address)
    yield q
    q.close()


@pytest.fixture
def tube() -> str:
    """A tube name no other test uses."""
    return f"t-{uuid.uuid4().hex[:12]}"


def glowlab_env(address: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "GLOW_QUEUE": address, "PYTHONUNBUFFERED": "1", **extra}
    env.pop("GLOW_SMTP_SERVER", None)
    return env


def glowlab(*args: str, address: str, input: bytes | str | None = None,
            timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real ``glowlab`` command as a subprocess."""
    if isinstance(input, str):
        input = input.encode()
    return subprocess.run(
        [sys.executable, "-m", "glowlab", *args], input=input, capture_output=True,
        timeout=timeout, env=env or glowlab_env(address),
    )


@pytest.fixture
def start_listener(address: str, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start ``glowlab listen`` processes; each is stopped (TERM, then KILL) afterwards."""
    procs: list[subprocess.Popen] = []

    def start(*args: str, queue_address: str | None = None, env: dict | None = None,
              stdout=None) -> subprocess.Popen:
        log = open(tmp_path / f"listener-{len(procs)}.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "glowlab", "listen", "-v", *args],
            env=env or glowlab_env(queue_address or address),
            stdout=stdout if stdout is not None else log, stderr=log,
        )
        proc.log_path = log.name  # type: ignore[attr-defined]
        procs.append(proc)
        return proc

    yield start
    stop_processes(procs)


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.02,
             message: str = "condition") -> object:
    """Poll ``predicate`` until it returns something truthy (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def tube_counts(queue: Queue, tube: str) -> dict[str, int]:
    stats = queue.stats_tube(tube) or {}
    return {k: int(stats.get(f"current-jobs-{k}", 0))
            for k in ("ready", "reserved", "delayed", "buried")}


def tube_empty(queue: Queue, tube: str) -> bool:
    c = tube_counts(queue, tube)
    return c["ready"] == c["reserved"] == c["delayed"] == 0


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Path:
    """A journal and a working folder of the test's own; the module's ``SIM`` becomes sim.py."""
    monkeypatch.setenv("GLOWLAB_HOME", str(tmp_path / "home"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    sim = getattr(request.module, "SIM", None)
    if sim is not None:
        (work / "sim.py").write_text(sim)
    return work
