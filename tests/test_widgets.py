"""The notebook panels against a real beanstalkd and real listeners: values, thread, buttons."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from conftest import tube_counts, wait_for
from glowlab.errors import GlowlabError
from glowlab.queue import Queue
from glowlab.sweep import sweep
from glowlab.widgets import BatchPanel, Dashboard, batch_bundle

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

# Fails for seed 3 unless the file 'fixed' exists; reports a metric.
SIM = textwrap.dedent("""
    import json, os, sys
    seed = int(sys.argv[1])
    if seed == 3 and not os.path.exists("fixed"):
        sys.exit("boom: seed 3 diverged")
    json.dump({"score": seed * 10}, open(os.environ["GLOWLAB_RESULT"], "w"))
""")


@pytest.fixture(autouse=True)
def _own_home(home: Path) -> Path:
    """Each test has its own journal and works in its own folder (with sim.py)."""
    return home


def seeds(n: int) -> pd.DataFrame:
    return pd.DataFrame({"seed": range(n)}, index=pd.Index(range(100, 100 + n), name="run"))


def run_sweep(queue, tube: str, n: int):
    return sweep(seeds(n), f"{sys.executable} sim.py {{seed}}", tube=tube, queue=queue)


def finished(panel: BatchPanel) -> bool:
    return not panel.running


def test_bar_follows_the_batch_to_the_end_and_lists_the_failed_row(queue, tube, start_listener):
    batch = run_sweep(queue, tube, 6)
    panel = batch.progress(interval=0.1)
    assert (panel.bar.value, panel.bar.max, panel.running) == (0, 6, True)
    assert "0/6" in repr(panel) and panel.retry_button.disabled and not panel.cancel_button.disabled
    start_listener("--jobs", "2", "--tubes", tube)
    wait_for(lambda: finished(panel), timeout=60, message="the panel to stop at the end")
    assert panel.bar.value == panel.bar.max == 6  # drawn by the background thread
    assert panel.bar.bar_style == "danger"
    assert "5 done" in panel.counts.value and "1 failed" in panel.counts.value
    assert "failed rows (1)" in panel.failures.value
    assert "<th>103</th>" in panel.failures.value and "boom: seed 3 diverged" in panel.failures.value
    assert "score" in panel.latest.value and "<td>50</td>" in panel.latest.value
    assert not panel.retry_button.disabled and panel.cancel_button.disabled
    assert "failed rows (1):\n  103: failed, exit status 1" in repr(panel)


def test_retry_button_queues_the_failed_row_again(queue, tube, start_listener, home):
    batch = run_sweep(queue, tube, 4)
    start_listener("--tubes", tube)
    panel = BatchPanel(batch, interval=0.1)
    wait_for(lambda: finished(panel), timeout=60, message="the first run to end")
    assert panel.state.tally.failed == 1 and panel.bar.bar_style == "danger"
    (home / "fixed").write_text("")
    panel.pause()  # hold the retried row in the queue while we look
    panel.retry_button.click()
    assert "queued 1 failed row(s) again" in panel.message.value
    assert batch.counts()["failed"] == 0 and batch.counts()["queued"] == 1
    assert tube_counts(queue, tube) == {"ready": 1, "reserved": 0, "delayed": 0, "buried": 0}
    assert panel.running and panel.bar.value == 3 and panel.bar.bar_style == "warning"
    panel.resume_button.click()
    wait_for(lambda: finished(panel), timeout=60, message="the retried row to finish")
    assert panel.bar.value == 4 and panel.bar.bar_style == "success"
    assert panel.failures.value == "" and panel.retry_button.disabled
    assert batch.results()["status"].tolist() == ["done"] * 4


def test_pause_resume_and_cancel_buttons_steer_the_tube(queue, tube):
    batch = run_sweep(queue, tube, 5)  # no listener: every row stays queued
    panel = BatchPanel(batch, interval=0.1)
    assert panel.resume_button.disabled and not panel.pause_button.disabled
    panel.pause_button.click()
    assert queue.stats_tube(tube)["pause-time-left"] > 0
    assert panel.bar.bar_style == "warning" and panel.pause_button.disabled
    assert "paused: " + tube in panel.counts.value
    panel.resume_button.click()
    assert queue.stats_tube(tube)["pause-time-left"] == 0 and panel.resume_button.disabled
    panel.cancel_button.click()
    assert "cancelled 5 queued row(s)" in panel.message.value
    assert batch.counts()["cancelled"] == 5 and tube_counts(queue, tube)["ready"] == 0
    assert panel.bar.value == 5 and panel.bar.bar_style == "warning"
    wait_for(lambda: finished(panel), timeout=20, message="the panel to stop")


def test_tube_bars_when_the_batch_spans_tubes(queue, tube, start_listener):
    df = seeds(4)
    batch = sweep(df, f"{sys.executable} sim.py {{seed}}", queue=queue,
                  tube=lambda row: tube if row["seed"] % 2 else f"{tube}-2")
    start_listener("--jobs", "2", "--tubes", f"{tube},{tube}-2")
    panel = BatchPanel(batch, interval=0.1)
    wait_for(lambda: finished(panel), timeout=60, message="the batch to end")
    bars = {name: bar for name, (bar, _label) in panel.tube_bars.items()}
    assert sorted(bars) == sorted([tube, f"{tube}-2"])
    assert bars[f"{tube}-2"].value == bars[f"{tube}-2"].max == 2  # seeds 0 and 2
    assert bars[f"{tube}-2"].bar_style == "success"
    assert bars[tube].value == 2 and bars[tube].bar_style == "danger"  # seed 3 failed


def test_without_beanstalkd_the_panel_keeps_to_the_journal(own_server, tube, start_listener):
    with Queue(own_server.address) as queue:
        finished_batch = run_sweep(queue, tube, 3)
        start_listener("--tubes", tube, queue_address=own_server.address)
        finished_batch.wait(timeout=60)  # the notebook's batch has collected every outcome
        waiting = run_sweep(queue, f"{tube}-2", 2)  # no listener takes these
        panel = BatchPanel(waiting, interval=0.1)
        own_server.stop()
        wait_for(lambda: "cannot reach beanstalkd" in panel.message.value, timeout=30,
                 message="the panel to say beanstalkd is gone")
        assert panel.running and panel.bar.value == 0 and "error: cannot reach" in repr(panel)
        panel.stop()
        done = BatchPanel(finished_batch)
        assert done.bar.value == 3 and done.bar.bar_style == "success"
        assert done.state.error is None and not done.running and done.message.value == ""


def test_dashboard_shows_tubes_pauses_and_listeners(queue, tube, start_listener):
    idle = f"{tube}-idle"
    start_listener("--jobs", "2", "--tubes", tube)
    for _ in range(3):
        queue.put(idle, b"{}")
    queue.pause_tube(idle, 120)
    board = Dashboard(queue, tubes=[tube, idle], interval=0.1)
    try:
        wait_for(lambda: board.state.workers >= 2 and board.state.tubes[0].watching >= 2, timeout=30,
                 message="the listener's slots to show")
        by_name = {t.name: t for t in board.state.tubes}
        assert by_name[idle].ready == 3 and by_name[idle].paused > 0
        assert f"<th>{idle}</th><td>3</td>" in board.table.value
        assert "listener slot(s) connected" in board.title.value
        assert idle in repr(board) and board._repr_mimebundle_()[WIDGET_VIEW]["model_id"]
        assert board.running
    finally:
        board.close()
    assert not board.running


def test_a_batch_shows_text_outside_a_kernel_and_the_panel_inside_one(queue, tube):
    batch = run_sweep(queue, tube, 2)
    bundle = batch._repr_mimebundle_()
    assert list(bundle) == ["text/plain"]
    assert bundle["text/plain"].startswith(f"batch {batch.id}: 2 jobs\n") and "0/2 finished" in bundle["text/plain"]
    panel = BatchPanel(batch, start=False)
    bundle = panel._repr_mimebundle_()
    assert bundle[WIDGET_VIEW]["model_id"] == panel.widget.model_id
    assert bundle["text/plain"] == repr(panel) and not panel.running
    batch.cancel()


def test_without_ipywidgets_a_panel_is_a_clear_error(queue, tube, monkeypatch):
    batch = run_sweep(queue, tube, 1)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    with pytest.raises(GlowlabError, match=r"live panels need ipywidgets: pip install 'glowlab\[notebook\]'"):
        batch.progress()
    assert "1 queued" in batch_bundle(batch)["text/plain"]
    batch.cancel()
