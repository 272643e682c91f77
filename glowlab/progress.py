"""Terminal progress for a batch, drawn by rich; plain lines when not on a terminal."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, TextIO


if TYPE_CHECKING:
    from .batch import Batch

LARGE = 10_000
"""Jobs from which ``glowlab submit`` shows a bar while queuing them (on a terminal)."""


def summary(counts: dict[str, int], total: int) -> str:
    """``12/32 finished · 11 done · 1 failed · 2 running · 17 queued`` from ``Batch.counts()``."""
    from . import state  # only when drawing: submit must stay quick to start

    return state.summary(state.tally_counts(counts, total))


def follow(batch: "Batch", *, timeout: float | None = None, stream: TextIO | None = None) -> None:
    """Collect ``batch`` until it is finished, showing progress on ``stream``."""
    stream = stream or sys.stderr
    if stream.isatty():
        _follow_live(batch, timeout, stream)
    else:
        _follow_plain(batch, timeout, stream)


def _follow_live(batch: "Batch", timeout: float | None, stream: TextIO) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[detail]}"))
    with Progress(*columns, console=Console(file=stream), transient=False) as bar:
        task = bar.add_task(batch.name or batch.id, total=batch.total, detail="")
        for counts in _ticks(batch, timeout):
            finished = batch.total - counts["queued"] - counts["running"]
            bar.update(task, completed=finished, detail=summary(counts, batch.total))


def _follow_plain(batch: "Batch", timeout: float | None, stream: TextIO) -> None:
    last = ""
    next_line = 0.0
    for counts in _ticks(batch, timeout):
        line = summary(counts, batch.total)
        if line != last and time.monotonic() >= next_line:
            print(f"{batch.name or batch.id}: {line}", file=stream, flush=True)
            last, next_line = line, time.monotonic() + 5
    print(f"{batch.name or batch.id}: {summary(batch.counts(collect=False), batch.total)}",
          file=stream, flush=True)


def _ticks(batch: "Batch", timeout: float | None):
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        counts = batch.counts()
        yield counts
        if counts["queued"] == 0 and counts["running"] == 0:
            return
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"batch {batch.name or batch.id} not finished after {timeout} s")
        batch.collect(wait=1)


@contextmanager
def putting(total: int, stream: TextIO | None = None) -> Iterator[Callable[[int], None] | None]:
    """A bar for queuing ``total`` jobs: a ``progress(queued)`` callback, or None.

    Only for ``LARGE`` batches and when ``stream`` (stderr) is a terminal: a few
    jobs are queued faster than a bar could be drawn.
    """
    stream = stream or sys.stderr
    if total < LARGE or not stream.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("queuing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(file=stream), transient=True) as bar:
        task = bar.add_task("queuing", total=total)
        yield lambda queued: bar.update(task, completed=queued)
