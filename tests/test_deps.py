"""Tube dependencies (glow's --deps file and the jobs' own ``after``) and the idle cost of a
listener, against a real beanstalkd and real listener processes."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from glowlab.cluster import Beanstalkd
from glowlab.deps import Dependencies, load, parse
from glowlab.errors import ConfigurationError
from glowlab.job import Job
from glowlab.queue import Queue

from conftest import glowlab, tube_counts, tube_empty, wait_for
from listening import Start, log_of, sh, wait_job, waiting


@pytest.fixture
def server(own_server: Beanstalkd) -> Beanstalkd:
    """A beanstalkd per test: command counts and tube states must be this test's alone."""
    return own_server


def stamp(tube: str, folder: Path, name: str, seconds: float = 0, **fields) -> Job:
    """A job writing its start and end times to ``folder/name.start`` and ``.end``."""
    return sh(f"date +%s.%N > {folder}/{name}.start; sleep {seconds}; "
              f"date +%s.%N > {folder}/{name}.end", tube, **fields)


def read_time(folder: Path, name: str) -> float:
    return float((folder / name).read_text())


def deps_file(tmp_path: Path, deps: dict) -> Path:
    path = tmp_path / "deps.json"
    path.write_text(json.dumps(deps))
    return path


def looked(queue: Queue) -> int:
    """How often listeners have looked at the tube list (once per rhythm each)."""
    return int(queue.stats()["cmd-list-tubes"])


def wait_looks(queue: Queue, count: int) -> None:
    """Wait until the listeners have worked out their tubes ``count`` more times."""
    target = looked(queue) + count
    wait_for(lambda: looked(queue) >= target, timeout=20, message=f"{count} looks at the tubes")


# -- the file ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text, says", [
    ("{", "is not valid JSON"),
    ('["foo"]', 'deps.json must map tubes to lists of tubes, e.g. {"foo": ["bar"]}'),
    ('{"foo": "bar"}', "must map tubes to lists of tubes"),
    ('{"foo": ["b ar"]}', "is not a valid tube name"),
])
def test_a_broken_dependency_file_is_explained(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "deps.json"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=re.escape(says)):
        load(str(path))


def test_parse_accepts_glows_format() -> None:
    assert parse({"foo": ["bar"], "baz": ["foo", "bar"]}) == {
        "foo": frozenset({"bar"}), "baz": frozenset({"foo", "bar"})}


def test_listen_with_a_missing_dependency_file_says_so_in_one_line(address: str, tmp_path: Path) -> None:
    result = glowlab("listen", "--deps", str(tmp_path / "nope.json"), address=address, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("glowlab: error: cannot read dependency file")


def test_what_blocks_ready_delayed_and_reserved_but_not_buried(queue: Queue, tube: str) -> None:
    state = {name: f"{tube}-{name}" for name in ("ready", "delayed", "reserved", "buried", "none")}
    queue.put(state["ready"], b"r")
    queue.put(state["delayed"], b"d", delay=600)
    for name in ("reserved", "buried"):
        queue.put(state[name], name.encode())
        queue.watch_only([state[name]])
        reserved = queue.reserve(0)
    queue.bury(reserved.id, 0)
    deps = Dependencies()
    for name, dep in state.items():
        deps.learn(f"waits-for-{name}", [dep])
    blocked = {name for name in state if deps.blocked(f"waits-for-{name}", queue.stats_tube)}
    assert blocked == {"ready", "delayed", "reserved"}
    assert deps.blocked_tubes([f"waits-for-{n}" for n in state], queue.stats_tube) == {
        f"waits-for-{n}" for n in blocked}


# -- listeners honouring them -------------------------------------------------------------------
def test_a_tube_waits_for_the_tubes_the_file_names(start_listener: Start, queue: Queue, tube: str,
                                                   tmp_path: Path) -> None:
    foo, bar = f"{tube}-foo", f"{tube}-bar"
    path = deps_file(tmp_path, {foo: [bar]})
    queue.submit_many([stamp(bar, tmp_path, "bar", 1), stamp(foo, tmp_path, "foo")])
    listener = start_listener("--jobs", "2", "--deps", str(path))
    wait_job(lambda: (tmp_path / "foo.end").exists(), listener, "the dependent job")
    assert read_time(tmp_path, "foo.start") >= read_time(tmp_path, "bar.end")


def test_dependencies_are_not_transitive_and_buried_jobs_do_not_block(
        start_listener: Start, queue: Queue, tube: str, tmp_path: Path) -> None:
    a, b, c, d, foo, bar = (f"{tube}-{n}" for n in ("a", "b", "c", "d", "foo", "bar"))
    path = deps_file(tmp_path, {a: [b], b: [c], d: [c], foo: [bar]})
    queue.put(c, b"c has work for a while", delay=600)
    queue.put(bar, b"a buried job")
    queue.watch_only([bar])
    queue.bury(queue.reserve(0).id, 0)
    # d would run first (smaller pri) if it were not waiting for c
    queue.submit_many([stamp(d, tmp_path, "d", pri=0), stamp(a, tmp_path, "a", pri=10),
                       stamp(foo, tmp_path, "foo", pri=10)])
    listener = start_listener("--deps", str(path))
    wait_job(lambda: (tmp_path / "a.end").exists() and (tmp_path / "foo.end").exists(), listener,
             "a (after b, which has no work) and foo (after bar, whose job is buried)")
    assert not (tmp_path / "d.start").exists()
    assert tube_counts(queue, d)["ready"] == 1


def test_the_file_is_read_again_when_it_changes(start_listener: Start, queue: Queue, tube: str,
                                                tmp_path: Path) -> None:
    foo, bar = f"{tube}-foo", f"{tube}-bar"
    path = deps_file(tmp_path, {foo: [bar]})
    queue.put(bar, b"delayed work blocks too", delay=600)
    queue.submit(stamp(foo, tmp_path, "foo"))
    listener = start_listener("--deps", str(path))
    wait_looks(queue, 3)
    assert tube_counts(queue, foo)["ready"] == 1, log_of(listener)
    path.write_text("{}")
    wait_job(lambda: tube_empty(queue, foo), listener, "foo to run once the file no longer holds it back")


def test_a_job_with_after_waits_for_those_tubes(start_listener: Start, address: str, queue: Queue,
                                                tube: str, tmp_path: Path) -> None:
    foo, bar, baz = f"{tube}-foo", f"{tube}-bar", f"{tube}-baz"
    queue.submit(stamp(bar, tmp_path, "bar", 1))
    queue.submit(stamp(foo, tmp_path, "foo", after=(bar,)))
    submitted = glowlab("submit", "--tube", baz, "--after", bar, "--",
                        "sh", "-c", f"date +%s.%N > {tmp_path}/baz.start", address=address)
    assert submitted.returncode == 0, submitted.stderr
    listener = start_listener("--jobs", "3")
    wait_job(lambda: (tmp_path / "foo.end").exists() and (tmp_path / "baz.start").exists(),
             listener, "the jobs with after")
    assert read_time(tmp_path, "foo.start") >= read_time(tmp_path, "bar.end")
    assert read_time(tmp_path, "baz.start") >= read_time(tmp_path, "bar.end")
    wait_for(lambda: tube_empty(queue, foo) and tube_empty(queue, baz), timeout=10, message="deletes")
    for name in (foo, baz):
        assert queue.stats_tube(name)["cmd-delete"] == 1


# -- the cost of waiting ----------------------------------------------------------------------------
def commands(queue: Queue) -> dict[str, int]:
    return {k: int(v) for k, v in queue.stats().items() if k.startswith("cmd-")}


@pytest.mark.parametrize("jobs", ["1", "3"])
def test_an_idle_listener_sends_about_two_commands_a_second(start_listener: Start, queue: Queue,
                                                            jobs: str) -> None:
    listener = start_listener("--jobs", jobs)
    wait_for(lambda: waiting(queue, int(jobs)), timeout=20, message="the listener to idle")
    before, started = commands(queue), time.monotonic()
    time.sleep(3)  # a measurement window, not a wait for some state
    after, seconds = commands(queue), time.monotonic() - started
    sent = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    sent["cmd-stats"] -= 1  # our own question
    rate = sum(sent.values()) / seconds
    assert rate <= 1 + int(jobs) + 0.7, f"{rate:.2f} commands/s: {sent}; log:\n{log_of(listener)}"
    assert sent["cmd-list-tubes"] / seconds <= 1.4, sent
