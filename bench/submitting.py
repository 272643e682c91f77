"""Submitting: a big batch (CLI and sweep) against a raw client, one job, body size."""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys
import sysconfig
import time
import uuid

from glowlab.job import parse_batch

from .common import GLOWLAB, ROOT, Figure, Raw, Sizes, Workspace, alternate, beanstalkd, median, paired_ratio

COMMAND = "python sim.py --alpha {alpha} --seed {seed}"


def _frame(n: int):
    import pandas as pd

    return pd.DataFrame({"alpha": [round(i * 1e-3, 3) for i in range(n)], "seed": range(n)})


def _records(n: int) -> list[dict]:
    """The CLI's input: the jobs a sweep of :func:`_frame` queues, as JSON records."""
    return [{"cmd": "python", "args": ["sim.py", "--alpha", str(round(i * 1e-3, 3)), "--seed", str(i)],
             "tube": "bench", "workdir": os.getcwd()} for i in range(n)]


def _sweep_bodies(ws: Workspace, df) -> list[bytes]:
    """The bodies a sweep of ``df`` queues (read back from a server, once, untimed)."""
    from glowlab.sweep import sweep

    with beanstalkd(ws) as server:
        os.environ["GLOWLAB_HOME"] = str(ws.path(f"home-{uuid.uuid4().hex[:8]}"))
        batch = sweep(df, COMMAND, tube="bench", queue=server.address)
        bodies = []
        while taken := batch.queue.take("bench"):
            bodies += [r.body for r in taken]
        batch.queue.close()
        batch.journal.close()
    return bodies


def batch_submit(ws: Workspace, sizes: Sizes) -> list[Figure]:
    """Target 1: 100k jobs through ``glowlab submit`` and ``glowlab.sweep`` vs raw puts."""
    from glowlab.sweep import sweep

    n = sizes.submit_jobs
    df = _frame(n)
    records = _records(n)
    stdin = ws.path("batch.json")
    stdin.write_text(json.dumps(records))
    cli_bodies = [job.encode() for job in parse_batch(json.dumps(records))]
    sweep_bodies = _sweep_bodies(ws, df)

    def raw(bodies, binlog=False):
        def run() -> float:
            with beanstalkd(ws, binlog=binlog) as server:
                client = Raw(server.address)
                start = time.perf_counter()
                client.put_all("bench", bodies)
                elapsed = time.perf_counter() - start
                client.close()
            return elapsed
        return run

    def cli() -> float:
        with beanstalkd(ws) as server, open(stdin, "rb") as fh:
            start = time.perf_counter()
            subprocess.run([*GLOWLAB, "submit", "--queue", server.address], stdin=fh,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ws.env, check=True)
            return time.perf_counter() - start

    def in_process(binlog=False):
        def run() -> float:
            with beanstalkd(ws, binlog=binlog) as server:
                os.environ["GLOWLAB_HOME"] = str(ws.path(f"home-{uuid.uuid4().hex[:8]}"))
                gc.collect()
                start = time.perf_counter()
                batch = sweep(df, COMMAND, tube="bench", queue=server.address)
                elapsed = time.perf_counter() - start
                batch.queue.close()
                batch.journal.close()
                return elapsed
        return run

    times = alternate(sizes.rounds, {
        "raw_cli": raw(cli_bodies), "submit": cli, "raw_sweep": raw(sweep_bodies), "sweep": in_process(),
        "raw_binlog": raw(sweep_bodies, binlog=True), "sweep_binlog": in_process(binlog=True)})
    figures = []
    for key, what, base, limits in (
        ("submit", f"glowlab submit of {n:,} jobs (stdin JSON, whole process)", "raw_cli",
         "every record parsed and checked, and every body encoded, before the first put "
         "(nothing is sent if one is invalid); process start-up; the id list printed."),
        ("sweep", f"glowlab.sweep of {n:,} rows", "raw_sweep",
         "per row: template filling, checks of the changed fields, JSON encoding; the "
         "journal's rows (fingerprint, params JSON, SQLite insert) are written while "
         "beanstalkd takes in the puts before them."),
        ("sweep_binlog", f"glowlab.sweep of {n:,} rows, beanstalkd with a binlog", "raw_binlog",
         "as above; the binlog makes the server slower, so more of the sweep's own work "
         "hides behind it."),
    ):
        ratio = paired_ratio(times[base], times[key])
        figures.append(Figure(
            key=f"batch.{key}", what=what, value=n / median(times[key]), unit="jobs/s",
            target=">= 0.5x raw", met=ratio >= 0.5, baseline="raw pipelined put, same bodies",
            baseline_value=n / median(times[base]), ratio=ratio, limits=limits,
            samples=times[key], extra={"baseline_samples": times[base]}))
    return figures


def one_submit(ws: Workspace, sizes: Sizes) -> list[Figure]:
    """Target 2: one ``glowlab submit`` as a whole process, beside ``python -c pass``."""
    with beanstalkd(ws) as server:
        def run(argv, env=None):
            def timed() -> float:
                start = time.perf_counter()
                subprocess.run(argv, env=env or ws.env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=True)
                return time.perf_counter() - start
            return timed

        submit = [*GLOWLAB, "submit", "--queue", server.address, "--tube", "one", "--", "true"]
        # as a wheel would run it: no site hooks such as the editable install's import finder
        plain = [sys.executable, "-S", "-m", "glowlab", *submit[1:]]
        plain_env = {**ws.env, "PYTHONPATH": f"{ROOT}:{sysconfig.get_paths()['purelib']}"}
        run(submit)()  # the first run writes the byte-code caches
        times = alternate(sizes.submit_one_runs, {
            "submit": run(submit), "python": run([sys.executable, "-c", "pass"]),
            "submit_nohook": run(plain, plain_env),
            "python_nosite": run([sys.executable, "-S", "-c", "pass"])})
        heavy = heavy_imports(ws, submit)
    ms = {k: 1000 * median(v) for k, v in times.items()}
    return [Figure(
        key="submit.one", what="one glowlab submit (whole process)", value=ms["submit"], unit="ms",
        target="<= 40 ms", met=ms["submit"] <= 40 and not heavy, baseline="python -c pass",
        baseline_value=ms["python"], samples=[1000 * t for t in times["submit"]],
        limits="interpreter start-up and site (python -c pass); imports (argparse, socket, "
               "json, re, typing for greenstalk); the submit command's parser; one "
               "connection, two round trips (stats, put).",
        extra={"python_nosite_ms": ms["python_nosite"], "submit_nohook_ms": ms["submit_nohook"],
               "heavy_imports": heavy})]


def heavy_imports(ws: Workspace, argv: list[str]) -> list[str]:
    """Modules that must not load to submit or listen, found with ``-X importtime``."""
    heavy = ("pandas", "numpy", "ipywidgets", "matplotlib", "rich", "sqlite3")
    found = set()
    env = {**ws.env, "PYTHONPROFILEIMPORTTIME": "1"}
    err = subprocess.run(argv, env=env, capture_output=True, text=True).stderr
    found |= _imported(err, heavy)
    listen = subprocess.Popen([*GLOWLAB, "listen", "--queue", argv[argv.index("--queue") + 1]],
                              env=env, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # long enough for every import a listener makes before it runs a job
    listen.terminate()
    found |= {f"listen:{m}" for m in _imported(listen.communicate(timeout=20)[1], heavy)}
    return sorted(found)


def _imported(importtime: str, names: tuple[str, ...]) -> set[str]:
    modules = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", importtime, re.M)
    return {m for m in modules if m.split(".")[0] in names}


def body_size(ws: Workspace, sizes: Sizes) -> list[Figure]:
    """Target 6: the queued body of a typical sweep job, unsigned and signed."""
    import pandas as pd

    from glowlab.sweep import sweep

    df = pd.DataFrame({"alpha": [0.125], "beta": [2.5], "seed": [123456], "model": ["lattice-3d"]})
    command = ("python simulate.py --alpha {alpha} --beta {beta} --seed {seed} --model {model} "
               "--out results/{model}-{seed}.json")
    found = {}
    with beanstalkd(ws) as server:
        for label, secret in (("unsigned", None), ("signed", "bench-secret-of-some-length")):
            if secret:
                os.environ["GLOW_SECRET"] = secret
            try:
                batch = sweep(df, command, tube=f"sims-{label}", queue=server.address, retries=2,
                              timeout=3600, workdir="/home/alice/projects/lattice-sims")
            finally:
                os.environ.pop("GLOW_SECRET", None)
            found[label] = len(batch.queue.peek_ready(f"sims-{label}").body)
            batch.queue.close()
            batch.journal.close()
    return [Figure(key="body.size", what="queued body of a typical sweep job (signed)",
                   value=found["signed"], unit="bytes", target="<= 500", met=found["signed"] <= 500,
                   baseline="unsigned", baseline_value=found["unsigned"],
                   limits="the command line, workdir, results tube and the 32-hex job id; "
                          "signing adds the HMAC and key id.", extra=found)]
