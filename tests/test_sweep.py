"""Sweeps end to end: DataFrame in, results DataFrame out, nothing lost or doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from conftest import glowlab, glowlab_env, tube_counts, wait_for
from glowlab.batch import Batch, batches
from glowlab.queue import Queue
from glowlab.sweep import sweep

SIM = textwrap.dedent("""
    import json, os, sys
    alpha, seed = float(sys.argv[1]), int(sys.argv[2])
    print(f"alpha={alpha} seed={seed}")
    with open(os.environ["GLOWLAB_RESULT"], "w") as fh:
        json.dump({"score": alpha * seed, "argv": sys.argv[1:]}, fh)
""")


@pytest.fixture(autouse=True)
def _own_home(home: Path) -> Path:
    """Each test has its own journal and works in its own folder (with sim.py)."""
    return home


@pytest.fixture
def listeners(start_listener, tube):
    """Two listeners with two slots each, on this test's tubes only (the server is shared)."""
    return [start_listener("--jobs", "2", "--tubes", f"{tube},{tube}-2") for _ in range(2)]


def test_sweep_of_200_rows_returns_metrics_in_input_order(queue, tube, listeners):
    df = pd.DataFrame({"alpha": [i / 10 for i in range(200)], "seed": range(200)},
                      index=pd.Index(range(1000, 1200), name="run"))
    batch = sweep(df, f"{sys.executable} sim.py {{alpha}} {{seed}}", tube=tube, queue=queue)
    results = batch.wait(timeout=120).results()
    assert list(results.index) == list(df.index) and results.index.name == "run"
    assert (results["status"] == "done").all(), results[results["status"] != "done"]
    assert results["score"].tolist() == pytest.approx((df["alpha"] * df["seed"]).tolist())
    assert results.loc[1005, "stdout"] == "alpha=0.5 seed=5\n"
    for column in ["status", "exit_code", "seconds", "host", "attempts", "started", "finished",
                   "stdout", "stderr", "error"]:
        assert column in results.columns
    assert batch.counts()["done"] == 200 and batch.done


def test_values_with_spaces_and_shell_characters_stay_one_argument(queue, tube, listeners, home):
    hostile = ["a b", "$(touch pwned)", "`touch pwned`", "x; touch pwned", "'\"quoted\"'", "*"]
    df = pd.DataFrame({"alpha": [1.0] * len(hostile), "seed": range(len(hostile)), "word": hostile})
    batch = sweep(df, f"{sys.executable} -c 'import json,os,sys; json.dump({{{{\"argv\": sys.argv[1:]}}}}, "
                      f"open(os.environ[\"GLOWLAB_RESULT\"], \"w\"))' {{word}} tail",
                  tube=tube, queue=queue)
    results = batch.wait(timeout=60).results()
    assert [a for a in results["argv"]] == [[w, "tail"] for w in hostile]
    assert not (home / "pwned").exists()


def test_function_jobs_return_result_columns(queue, tube, listeners, home):
    (home / "mysims.py").write_text(
        "def simulate(alpha, seed):\n    return {'twice': 2 * alpha, 'label': f'{seed}-x'}\n")
    df = pd.DataFrame({"alpha": [0.5, 1.5], "seed": [1, 2]})
    results = sweep(df, "mysims:simulate", tube=tube, queue=queue).wait(timeout=60).results()
    assert results["twice"].tolist() == [1.0, 3.0]
    assert results["label"].tolist() == ["1-x", "2-x"]


def test_failures_timeouts_and_retry_failed(queue, tube, listeners, home):
    script = "import sys, time; n = int(sys.argv[1]); time.sleep(30 if n == 2 else 0); sys.exit(n)"
    (home / "job.py").write_text(script)
    df = pd.DataFrame({"n": [0, 1, 2]})
    batch = sweep(df, f"{sys.executable} job.py {{n}}", tube=tube, queue=queue, timeout=2)
    results = batch.wait(timeout=60).results()
    assert results["status"].tolist() == ["done", "failed", "timeout"]
    assert results.loc[1, "exit_code"] == 1 and "exit status 1" in results.loc[1, "error"]
    (home / "job.py").write_text("import sys; sys.exit(0)")
    assert batch.retry_failed(timeout=20) == 2
    results = batch.wait(timeout=60).results()
    assert results["status"].tolist() == ["done", "done", "done"]
    assert tube_counts(queue, tube)["buried"] == 0, "retried jobs leave no buried originals"


def test_skip_done_queues_only_rows_without_success(queue, tube, listeners):
    command = f"{sys.executable} sim.py {{alpha}} {{seed}}"
    first = sweep(pd.DataFrame({"alpha": [1.0, 2.0], "seed": [1, 2]}), command, tube=tube, queue=queue)
    first.wait(timeout=60)
    grown = pd.DataFrame({"alpha": [1.0, 2.0, 3.0], "seed": [1, 2, 3]})
    again = sweep(grown, command, tube=tube, queue=queue, skip_done=True)
    results = again.wait(timeout=60).results()
    assert (results["status"] == "done").all()
    assert results["score"].tolist() == [1.0, 4.0, 9.0]
    outcomes = again.journal.db.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0]
    assert outcomes == 3, "the two rows already done ran only once"


def test_duplicate_outcome_messages_are_stored_once(queue, tube, listeners):
    batch = sweep(pd.DataFrame({"alpha": [1.0], "seed": [1]}),
                  f"{sys.executable} sim.py {{alpha}} {{seed}}", tube=tube, queue=queue)
    batch.wait(timeout=60)
    stored = batch.journal.latest_outcomes(batch.id)
    outcome = next(iter(stored.values()))
    for _ in range(3):  # a listener that died after reporting but before deleting re-reports
        queue.put(batch.record.results_tube, outcome.encode())
    wait_for(lambda: batch.collect() == 0 and tube_counts(queue, batch.record.results_tube)["ready"] == 0)
    assert len(batch.results()) == 1
    assert batch.journal.db.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0] == 1


def test_collector_killed_mid_collection_loses_and_doubles_nothing(address, tube, listeners, home):
    script = textwrap.dedent(f"""
        import os, signal, sys, pandas as pd
        from glowlab.sweep import sweep
        df = pd.DataFrame({{"alpha": [0.1] * 60, "seed": range(60)}})
        batch = sweep(df, "{sys.executable} sim.py {{alpha}} {{seed}}", tube="{tube}",
                      queue="{address}", name="killme")
        print(batch.id, flush=True)
        while batch.counts()["done"] < 20:
            batch.collect(wait=1)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120,
                          env=glowlab_env(address, GLOWLAB_HOME=os.environ["GLOWLAB_HOME"]))
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    batch = Batch.open("killme")
    results = batch.wait(timeout=120).results()
    assert len(results) == 60 and (results["status"] == "done").all()
    assert batch.journal.db.execute("SELECT COUNT(DISTINCT job_id), COUNT(*) FROM outcomes").fetchone() == (60, 60)
    assert sorted(results["seed"]) == list(range(60))


def test_stages_with_after_wait_for_the_earlier_batch(queue, tube, listeners, home):
    (home / "stamp.py").write_text(
        "import sys, time, json, os\n"
        "start = time.time(); time.sleep(float(sys.argv[1])); end = time.time()\n"
        "json.dump({'start': start, 'end': end}, open(os.environ['GLOWLAB_RESULT'], 'w'))\n")
    first = sweep(pd.DataFrame({"s": [0.6] * 4}), f"{sys.executable} stamp.py {{s}}",
                  tube=tube, queue=queue)
    second = sweep(pd.DataFrame({"s": [0.0] * 4}), f"{sys.executable} stamp.py {{s}}",
                   tube=tube + "-2", queue=queue, after=first)
    r2 = second.wait(timeout=60).results()
    r1 = first.wait(timeout=60).results()
    assert r2["start"].min() >= r1["end"].max()


def test_cancel_pause_and_resume(queue, tube):
    df = pd.DataFrame({"alpha": [1.0] * 5, "seed": range(5)})
    batch = sweep(df, f"{sys.executable} sim.py {{alpha}} {{seed}}", tube=tube, queue=queue)
    batch.pause(60)
    assert queue.stats_tube(tube)["pause"] == 60
    batch.resume()
    assert queue.stats_tube(tube)["pause"] == 0
    assert batch.cancel() == 5
    assert batch.counts()["cancelled"] == 5 and batch.done
    assert tube_counts(queue, tube)["ready"] == 0


def test_batches_lists_the_journal(queue, tube):
    sweep(pd.DataFrame({"alpha": [1.0], "seed": [1]}), "true", tube=tube, queue=queue, name="listed")
    listing = batches()
    assert "listed" in listing["name"].tolist()
    assert {"id", "name", "command", "created", "total"} <= set(listing.columns)


def test_bad_template_column_is_a_clear_error(queue, tube):
    with pytest.raises(Exception, match="no such column"):
        sweep(pd.DataFrame({"alpha": [1]}), "echo {beta}", tube=tube, queue=queue)
    assert tube_counts(queue, tube)["ready"] == 0


def test_100k_rows_are_queued(own_server, tube):
    queue = Queue(own_server.address)
    df = pd.DataFrame({"alpha": [i * 0.001 for i in range(100_000)], "seed": range(100_000)})
    batch = sweep(df, "python sim.py --alpha {alpha} --seed {seed}", tube=tube, queue=queue)
    assert tube_counts(queue, tube)["ready"] == 100_000
    assert batch.counts(collect=False)["queued"] == 100_000


def test_cli_sweep_and_results(address, tube, listeners, home):
    (home / "params.csv").write_text("alpha,seed\n0.5,1\n1.5,2\n")
    env = glowlab_env(address, GLOWLAB_HOME=os.environ["GLOWLAB_HOME"])
    run = subprocess.run(
        [sys.executable, "-m", "glowlab", "sweep", "params.csv", "--tube", tube, "--name", "cli",
         "--out", "results.csv", "--", sys.executable, "sim.py", "{alpha}", "{seed}"],
        capture_output=True, env=env, timeout=120, cwd=home)
    assert run.returncode == 0, run.stderr.decode()
    table = pd.read_csv(home / "results.csv")
    assert table["score"].tolist() == [0.5, 3.0]
    again = subprocess.run([sys.executable, "-m", "glowlab", "results", "cli", "--out", "again.csv"],
                           capture_output=True, env=env, timeout=60, cwd=home)
    assert again.returncode == 0 and pd.read_csv(home / "again.csv")["score"].tolist() == [0.5, 3.0]
    missing = glowlab("results", "no-such-batch", address=address, env=env)
    assert missing.returncode == 1 and b"no batch 'no-such-batch'" in missing.stderr
