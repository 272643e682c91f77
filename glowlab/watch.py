"""``glowlab watch``: a batch's or the queue's live state in a terminal, drawn by rich.

On a terminal the view is redrawn in place (rich ``Live``) until the batch has
finished, or until Ctrl-C for the queue. When the output is not a terminal
nothing animates: one plain snapshot is printed, or with ``follow`` one
timestamped line per change.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence, TextIO

from .state import (BatchState, BatchTracker, QueueState, Tally, cell, describe_batch, describe_queue,
                    listeners_line, pace, read_queue, summary)

if TYPE_CHECKING:
    from rich.console import RenderableType

    from .batch import Batch
    from .queue import Queue

STYLES = {"done": "green", "failed": "red", "cancelled": "dark_orange", "running": "blue",
          "queued": "grey50"}


@dataclass(frozen=True)
class View:
    """What one poll saw: the batch (if watched) and the queue (if watched)."""

    batch: BatchState | None
    queue: QueueState | None

    @property
    def over(self) -> bool:
        """A watched batch has finished (the queue alone is watched until Ctrl-C)."""
        return self.batch is not None and self.batch.finished


def watch(queue: "Queue", *, batch: "Batch | None" = None, tubes: Sequence[str] = (),
          follow: bool = False, interval: float = 1.0, stream: TextIO | None = None) -> int:
    """Show ``batch`` (and ``tubes``), or the queue's tubes; returns the exit status.

    The status is 1 when the batch has rows that failed, timed out or were
    cancelled, else 0.
    """
    stream = stream or sys.stdout
    poll = _poller(queue, batch, tubes)
    if stream.isatty():
        view = _live(poll, interval, stream)
    elif follow:
        view = _lines(poll, interval, stream)
    else:
        view = poll()
        print(describe(view), file=stream, flush=True)
    return 1 if view.batch is not None and view.batch.verdict in ("failed", "cancelled") else 0


def _poller(queue: "Queue", batch: "Batch | None", tubes: Sequence[str]) -> Callable[[], View]:
    tracker = BatchTracker(batch) if batch is not None else None
    show_queue = batch is None or bool(tubes)
    return lambda: View(tracker.poll() if tracker else None,
                        read_queue(queue, tubes) if show_queue else None)


def _live(poll: Callable[[], View], interval: float, stream: TextIO) -> View:
    from rich.console import Console
    from rich.live import Live

    view = poll()
    try:
        with Live(render(view), console=Console(file=stream), auto_refresh=False) as live:
            while not view.over:
                time.sleep(interval)
                view = poll()
                live.update(render(view), refresh=True)
    except KeyboardInterrupt:
        pass  # the way to end watching a queue
    return view


def _lines(poll: Callable[[], View], interval: float, stream: TextIO) -> View:
    view, printed = poll(), {}
    try:
        while True:
            for key, (what, line) in lines(view).items():
                if printed.get(key) != what:
                    print(f"{time.strftime('%H:%M:%S')} {line}", file=stream, flush=True)
                    printed[key] = what
            if view.over:
                return view
            time.sleep(interval)
            view = poll()
    except KeyboardInterrupt:
        return view


# -- plain text -------------------------------------------------------------------------
def describe(view: View) -> str:
    parts = [describe_batch(view.batch)] if view.batch else []
    parts += [describe_queue(view.queue)] if view.queue else []
    return "\n\n".join(parts)


def lines(view: View) -> dict[str, tuple[str, str]]:
    """For each thing that can change (the batch, the listeners, each tube): what counts as a
    change, and the line to print then. A batch's rate alone changing is no change."""
    out: dict[str, tuple[str, str]] = {}
    if view.batch:
        b = view.batch
        what = f"{summary(b.tally)} {b.paused}"
        out["batch"] = (what, f"{b.title}: {summary(b.tally)} · {pace(b)}")
    if view.queue:
        server = view.queue.error or listeners_line(view.queue)
        out["server"] = (server, server)
        for t in view.queue.tubes:
            jobs = (f"{t.name}: ready={t.ready} reserved={t.reserved} delayed={t.delayed} "
                    f"buried={t.buried} watching={t.watching}")
            # a pause counts down every second: only its start and end are changes
            out[f"tube {t.name}"] = (jobs + " paused" * bool(t.paused),
                                     jobs + (f" paused={t.paused}s" if t.paused else ""))
    return out


# -- rich --------------------------------------------------------------------------------
def render(view: View) -> "RenderableType":
    from rich.console import Group

    parts = [render_batch(view.batch)] if view.batch else []
    parts += [render_queue(view.queue)] if view.queue else []
    return Group(*parts)


def render_batch(s: BatchState) -> "RenderableType":
    """Title, overall bar and counts, pace, tube bars, latest results, failed rows."""
    from rich.console import Group
    from rich.text import Text

    t = s.tally
    title = Text.assemble(("batch ", "bold"), (s.title, "bold"),
                          (f" ({s.id})" if s.name else "", "dim"), f" · {t.total} jobs")
    parts: list = [title, _bar_row(s.title if len(s.tubes) < 2 else "all", t, s.verdict),
                   Text(pace(s), style="dim")]
    if len(s.tubes) > 1:
        parts += [_bar_row(p.tube, p.tally, "paused" if p.paused else p.tally.verdict)
                  for p in s.tubes]
    if len(s.latest):
        parts.append(frame_table("latest results", s.latest))
    if t.failed:
        parts.append(frame_table(f"failed rows ({t.failed})", s.failures, style="red"))
    return Group(*parts)


def _bar_row(label: str, t: Tally, verdict: str) -> "RenderableType":
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    colour = {"done": "green", "failed": "red", "cancelled": "dark_orange", "paused": "yellow"}
    style = colour.get(verdict, "blue")
    grid = Table.grid(padding=(0, 1))
    grid.add_row(Text(label, style="bold"),
                 ProgressBar(total=max(t.total, 1), completed=t.finished if t.total else 1, width=40,
                             complete_style=style, finished_style=style),
                 counts_text(t))
    return grid


def counts_text(t: Tally) -> "RenderableType":
    from rich.text import Text

    parts = [(t.done, "done"), (t.failed, "failed"), (t.cancelled, "cancelled"),
             (t.running, "running"), (t.queued, "queued")]
    text = Text(f"{t.finished}/{t.total} ")
    for n, key in parts:
        if n:
            text.append(f"{n} {key} ", style=STYLES[key])
    return text


def frame_table(title: str, frame, *, style: str = "") -> "RenderableType":
    """A small DataFrame as a rich table (index first)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", title_style=f"bold {style}".strip(),
                  header_style="bold", show_edge=False, pad_edge=False)
    names = [str(n or "") for n in frame.index.names]
    for name in [*names, *map(str, frame.columns)]:
        table.add_column(name, overflow="fold")
    for key, values in zip(frame.index, frame.itertuples(index=False)):
        keys = key if isinstance(key, tuple) else (key,)
        table.add_row(*(cell(v) for v in (*keys, *values)))
    return table


def render_queue(s: QueueState) -> "RenderableType":
    from rich.table import Table
    from rich.text import Text

    if s.error:
        return Text(f"beanstalkd at {s.address}: {s.error}", style="red")
    table = Table(title=listeners_line(s), title_justify="left", header_style="bold")
    for name in ("tube", "ready", "reserved", "delayed", "buried", "paused", "watching"):
        table.add_column(name, justify="left" if name == "tube" else "right")
    for t in s.tubes:
        table.add_row(t.name, str(t.ready), str(t.reserved), str(t.delayed),
                      Text(str(t.buried), style="red" if t.buried else ""),
                      Text(f"{t.paused} s", style="yellow") if t.paused else "-", str(t.watching))
    return table
