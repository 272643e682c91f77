"""The panels' state, from journal rows and beanstalkd stats: pure functions, no server."""

from __future__ import annotations

import pytest

from glowlab.journal import BatchRecord, RowRecord
from glowlab.outcome import Outcome, Status
from glowlab.state import (RateMeter, Tally, batch_state, describe_batch, describe_queue,
                           format_eta, format_rate, queue_state, rate, tail, tally, tally_counts)

RECORD = BatchRecord("b0123456789a", "first", "sim {alpha}", "127.0.0.1:1", "glowlab.results.b",
                     ["run"], ["alpha"], 0.0, 6)


def row(position: int, tube: str = "sims") -> RowRecord:
    return RowRecord(position, f"job{position}", position + 100, tube, "fp",
                     {"run": 1000 + position, "alpha": position / 10})


def outcome(position: int, status: Status, finished: float, **fields) -> Outcome:
    return Outcome(job_id=f"job{position}", tube="sims", command="sim", status=status,
                   started=finished - 1, finished=finished, **fields)


def statuses():
    """Six rows: three done (one per second), one failed, one running, one queued; two tubes."""
    return [
        (row(0), Status.DONE, outcome(0, Status.DONE, 10, metrics={"loss": 0.5})),
        (row(1), Status.DONE, outcome(1, Status.DONE, 12, metrics={"loss": 0.25})),
        (row(2, "post"), Status.FAILED, outcome(2, Status.FAILED, 11, exit_code=3,
                                                 stderr="starting\n\n  line 2\nValueError: bad alpha\n")),
        (row(3, "post"), Status.DONE, outcome(3, Status.DONE, 13, metrics={"loss": 0.125})),
        (row(4), Status.RUNNING, None),
        (row(5), Status.QUEUED, None),
    ]


def test_tally_counts_timeouts_as_failed_and_interrupted_rows_as_queued() -> None:
    t = tally([Status.DONE, Status.TIMEOUT, Status.FAILED, Status.INTERRUPTED, Status.CANCELLED,
               Status.RUNNING, Status.QUEUED])
    assert t == Tally(total=7, done=1, failed=2, cancelled=1, running=1, queued=2)
    assert (t.finished, t.complete, t.verdict) == (4, False, "running")


def test_tally_from_batch_counts_puts_the_rest_in_queued() -> None:
    counts = {"queued": 0, "running": 2, "done": 5, "failed": 1, "timeout": 1, "cancelled": 0}
    assert tally_counts(counts, 12) == Tally(12, 5, 2, 0, 2, 3)


@pytest.mark.parametrize("t,verdict", [(Tally(3, 3), "done"), (Tally(3, 2, 1), "failed"),
                                       (Tally(3, 2, 0, 1), "cancelled"), (Tally(3, 2, 1, 0, 0, 0), "failed"),
                                       (Tally(3, 2, 0, 0, 1), "running"), (Tally(0), "done")])
def test_verdict(t: Tally, verdict: str) -> None:
    assert t.verdict == verdict


def test_batch_state_splits_tubes_and_lists_latest_and_failed_rows() -> None:
    state = batch_state(RECORD, statuses(), paused={"post": 30}, rate=0.5)
    assert state.tally == Tally(6, 3, 1, 0, 1, 1)
    assert [(p.tube, p.tally.total, p.tally.finished, p.paused) for p in state.tubes] == [
        ("post", 2, 2, 30), ("sims", 4, 2, 0)]
    assert state.paused == ["post"] and not state.finished and state.verdict == "running"
    assert state.eta == pytest.approx(4.0)  # two rows left at half a row per second
    assert list(state.latest.index) == [1003, 1001, 1002, 1000]  # newest first
    assert state.latest.index.name == "run"
    assert state.latest.loc[1001, "loss"] == 0.25 and state.latest.loc[1002, "status"] == "failed"
    assert list(state.failures.index) == [1002]
    failure = state.failures.loc[1002]
    assert failure["alpha"] == 0.2 and failure["error"] == "exit status 3"
    assert failure["stderr"] == "starting\nline 2\nValueError: bad alpha"


def test_batch_state_takes_the_overall_tally_from_counts_when_given() -> None:
    counts = {"done": 6, "failed": 0, "timeout": 0, "cancelled": 0, "running": 0, "queued": 0}
    state = batch_state(RECORD, statuses(), counts=counts)
    assert state.tally == Tally(6, 6) and state.finished and state.verdict == "done"
    assert state.eta == 0.0


def test_latest_table_is_limited_and_an_unnamed_index_stays_unnamed() -> None:
    record = BatchRecord("b1", None, "x", "a:1", "r", ["__index_0"], ["alpha"], 0.0, 6)
    rows = [(RowRecord(i, f"job{i}", i, "t", "fp", {"__index_0": i, "alpha": i}), Status.DONE,
             outcome(i, Status.DONE, 100 + i)) for i in range(8)]
    state = batch_state(record, rows)
    assert list(state.latest.index) == [7, 6, 5, 4, 3] and state.latest.index.names == [None]
    assert state.failures.empty and list(state.failures.columns) == ["alpha", "status", "error", "stderr"]


def test_empty_batch() -> None:
    record = BatchRecord("b2", None, "x", "a:1", "r", ["__index_0"], ["alpha"], 0.0, 0)
    state = batch_state(record, [])
    assert state.finished and state.latest.empty and state.tubes == ()
    assert "0/0 finished" in describe_batch(state)


def test_rate_is_the_slope_over_the_window_and_restarts_after_a_retry() -> None:
    meter = RateMeter(window=10)
    assert meter.add(0.0, 0) is None  # one sample tells nothing
    assert meter.add(0.2, 1) is None  # too short to tell
    assert meter.add(2.0, 4) == pytest.approx(2.0)
    assert meter.add(30.0, 4) == pytest.approx(0.0)  # the old samples left the window
    assert len(meter.samples) == 2
    assert meter.add(31.0, 1) is None  # fewer finished than before: rows were queued again
    assert rate([(0, 0), (4, 2)]) == 0.5


def test_tail_keeps_the_last_non_empty_lines_within_a_limit() -> None:
    assert tail("a\n\nb\nc\nd\n") == "b\nc\nd"
    assert tail(None) == "" and tail("") == ""
    long = tail("x" * 1000)
    assert len(long) == 300 and long.startswith("…")


@pytest.mark.parametrize("seconds,text", [(None, "time left —"), (4.4, "about 4 s left"),
                                          (125, "about 2 min 5 s left"), (7322, "about 2 h 2 min left")])
def test_format_eta(seconds, text) -> None:
    assert format_eta(seconds) == text


def test_format_rate() -> None:
    assert (format_rate(None), format_rate(2.25), format_rate(0.05)) == (
        "rate —", "2.2 jobs/s", "3.0 jobs/min")


def test_text_rendering_has_the_counts_pace_tubes_and_failures() -> None:
    text = describe_batch(batch_state(RECORD, statuses(), paused={"post": 30}, rate=0.5))
    assert text.splitlines()[0] == "batch first (b0123456789a): 6 jobs"
    assert "4/6 finished · 3 done · 1 failed · 1 running · 1 queued" in text
    assert "0.5 jobs/s" not in text and "30.0 jobs/min · about 4 s left · paused: post" in text
    assert "  post: 2/2 finished · 1 done · 1 failed (paused)" in text
    assert "failed rows (1):\n  1002: failed, exit status 3\n    starting\n    line 2\n" in text


def test_queue_state_from_stats() -> None:
    server = {"current-workers": 4, "current-waiting": 1, "current-connections": 9, "version": "1.13"}
    tubes = {"sims": {"current-jobs-ready": 5, "current-jobs-reserved": 3, "current-jobs-delayed": 1,
                      "current-jobs-buried": 2, "pause-time-left": 60, "current-watching": 4},
             "gone": None}
    state = queue_state("h:1", server, tubes)
    assert [t.name for t in state.tubes] == ["gone", "sims"]
    sims = state.tubes[1]
    assert (sims.ready, sims.reserved, sims.delayed, sims.buried, sims.paused, sims.watching) == (
        5, 3, 1, 2, 60, 4)
    assert (state.workers, state.waiting, state.connections) == (4, 1, 9)
    text = describe_queue(state)
    assert text.splitlines()[0] == "beanstalkd 1.13 at h:1: 4 listener slot(s) connected, 1 idle"
    assert text.splitlines()[-1].split() == ["sims", "5", "3", "1", "2", "60s", "4"]
