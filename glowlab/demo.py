"""``glowlab demo``: a real Monte-Carlo sweep on a private cluster, end to end.

Each job is a process estimating pi from N random points; the sweep covers
sample sizes and seeds, and the results show the error falling as 1/sqrt(N).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

SAMPLES = [1_000, 10_000, 100_000, 1_000_000, 10_000_000]
SEEDS = range(8)


def parameters(quick: bool):
    import pandas as pd

    samples = SAMPLES[:4] if quick else SAMPLES
    seeds = range(4) if quick else SEEDS
    return pd.DataFrame([(n, s) for n in samples for s in seeds], columns=["samples", "seed"])


def run_demo(out_dir: str | None = None, listeners: int = 2, quick: bool = False) -> int:
    """Run the sweep, print a results table, write CSV and PNG; returns an exit code."""
    from rich.console import Console

    from .cluster import LocalCluster
    from .progress import follow
    from .sweep import sweep

    console = Console(stderr=False)
    folder = Path(out_dir or f"glowlab-demo-{time.strftime('%Y%m%d-%H%M%S')}")
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GLOWLAB_HOME", str(folder / ".glowlab"))
    params = parameters(quick)
    command = (f"{shlex.quote(sys.executable)} -m glowlab.examples.montecarlo "
               "--samples {samples} --seed {seed}")
    console.print(f"[bold]glowlab demo[/]: estimating pi with {len(params)} jobs "
                  f"on a private beanstalkd and {listeners} listeners")
    with LocalCluster(listeners=listeners) as cluster:
        console.print(f"beanstalkd at {cluster.address}")
        started = time.monotonic()
        batch = sweep(params, command, tube="demo", queue=cluster,
                      pri=lambda row: row["samples"] // 1000, name=folder.name)
        follow(batch, timeout=900)
        elapsed = time.monotonic() - started
        results = batch.results()
    table = summarise(results)
    _print_table(console, table)
    results.to_csv(folder / "results.csv")
    table.to_csv(folder / "summary.csv")
    plotted = plot(table, folder / "error.png")
    failed = int((results["status"] != "done").sum())
    console.print(f"{len(results)} jobs in {elapsed:.1f} s, {failed} failed. Results written to "
                  f"[bold]{folder}/[/]: results.csv, summary.csv" + (", error.png" if plotted else ""))
    return 0 if failed == 0 else 1


def summarise(results):
    """Per sample size: mean estimate, spread, mean absolute error and run time."""
    done = results[results["status"] == "done"]
    table = done.groupby("samples").agg(
        jobs=("seed", "count"), estimate=("estimate", "mean"), spread=("estimate", "std"),
        abs_error=("abs_error", "mean"), seconds=("seconds", "mean"),
    )
    return table


def _print_table(console, table) -> None:
    from rich.table import Table

    out = Table(title="pi by Monte-Carlo: mean over seeds")
    for name in ["samples", *table.columns]:
        out.add_column(name, justify="right")
    for samples, row in table.iterrows():
        out.add_row(f"{samples:,}", str(int(row["jobs"])), f"{row['estimate']:.6f}",
                    f"{row['spread']:.2e}", f"{row['abs_error']:.2e}", f"{row['seconds']:.2f}")
    console.print(out)


def plot(table, path: Path) -> bool:
    """Absolute error against sample size, with the 1/sqrt(N) law; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(table.index, table["abs_error"], "o-", label="mean |estimate - pi|")
    ref = table["abs_error"].iloc[0] * (table.index[0] / table.index) ** 0.5
    ax.loglog(table.index, ref, "--", color="grey", label="1/sqrt(N)")
    ax.set_xlabel("samples per job")
    ax.set_ylabel("absolute error")
    ax.set_title("glowlab demo: Monte-Carlo estimate of pi")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
