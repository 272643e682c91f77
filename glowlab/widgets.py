"""Live progress panels for notebooks, drawn with ipywidgets.

:class:`BatchPanel` (``Batch.progress()``) and :class:`Dashboard`
(``glowlab.dashboard()``) build their widgets once; a daemon thread polls the
state (:mod:`glowlab.state`) and only updates their values, so the kernel
stays free. ipywidgets is imported when a panel is built, never at import
time: a compute node never needs it. Where widgets cannot be shown, the same
state is given as text.
"""

from __future__ import annotations

import html
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .errors import GlowlabError
from .state import (BatchState, BatchTracker, QueueState, TubeProgress, cell, describe_batch,
                    describe_queue, listeners_line, pace, read_queue, summary)

if TYPE_CHECKING:
    import ipywidgets

    from .batch import Batch
    from .cluster import LocalCluster
    from .queue import Queue

BAR_STYLE = {"running": "info", "paused": "warning", "done": "success", "failed": "danger",
             "cancelled": "warning"}
COLOURS = {"done": "#2e7d32", "failed": "#c62828", "cancelled": "#ef6c00", "running": "#1565c0",
           "queued": "#757575"}
PAUSE_SECONDS = 24 * 3600
"""How long the Pause button pauses a batch's tubes (Resume ends it)."""
CSS = """<style>
.glowlab-table {border-collapse: collapse; font-size: 12px; margin: 2px 0 6px 0}
.glowlab-table th, .glowlab-table td {padding: 2px 8px; border-bottom: 1px solid #ddd;
  text-align: right; vertical-align: top; white-space: pre-wrap; font-family: monospace}
.glowlab-table thead th {border-bottom: 1px solid #999}
.glowlab-caption {font-weight: bold; margin-top: 4px}
</style>"""


def ipywidgets() -> Any:
    """The ipywidgets module, or an error that says how to install it."""
    try:
        import ipywidgets as module
    except ModuleNotFoundError:
        raise GlowlabError("live panels need ipywidgets: pip install 'glowlab[notebook]' "
                           "(or use 'glowlab watch' in a terminal)") from None
    return module


def widgets_shown() -> bool:
    """True in a Jupyter kernel with ipywidgets installed (widgets can be displayed)."""
    import importlib.util
    import sys

    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return getattr(shell, "kernel", None) is not None and importlib.util.find_spec("ipywidgets") is not None


class _Live:
    """Parts refreshed by a daemon thread until the state is final or :meth:`stop` is called."""

    interval: float
    widget: "ipywidgets.Widget"
    message: "ipywidgets.HTML"

    def __init__(self, interval: float):
        self.interval = interval
        self._lock = threading.RLock()  # one poll or button action at a time
        self._halt: threading.Event | None = None
        self.state: Any = None

    def _poll(self, *, rows: bool = False) -> Any:
        raise NotImplementedError

    def _draw(self, state: Any) -> None:
        raise NotImplementedError

    def _final(self, state: Any) -> bool:
        return False

    def _idle(self) -> None:
        """Called when the thread stops: let connections go."""

    def refresh(self, *, rows: bool = False) -> Any:
        """Poll the state now and draw it; returns the state."""
        with self._lock:
            state = self._poll(rows=rows)
            self._draw(state)
            self.state = state
            return state

    @property
    def running(self) -> bool:
        """True while the background thread updates the panel."""
        return self._halt is not None

    def start(self) -> None:
        """Update in the background (again) until the state is final."""
        with self._lock:
            if self._halt is None:
                self._halt = threading.Event()
                threading.Thread(target=self._run, args=(self._halt,), daemon=True,
                                 name=f"glowlab-{type(self).__name__}").start()

    def stop(self) -> None:
        """Stop updating (the panel keeps its last values)."""
        with self._lock:
            if self._halt is not None:
                self._halt.set()
                self._halt = None

    def close(self) -> None:
        """Stop updating and remove the widgets from the page."""
        self.stop()
        with self._lock:  # not while the thread is halfway through a refresh
            self.widget.close()
            self._idle()

    def _run(self, halt: threading.Event) -> None:
        wait = self.interval
        while not halt.wait(wait):
            with self._lock:
                if halt.is_set():
                    return
                started = time.monotonic()
                try:
                    state = self.refresh()
                except Exception as exc:  # noqa: BLE001 - shown in the panel; a dead thread shows nothing
                    self._say(f"cannot update: {exc}", error=True)
                    wait = min(max(wait, 1.0) * 2, 30.0)
                    continue
                if self._final(state):
                    self._halt = None
                    self._idle()
                    return
                # polling a big batch is slow: keep its share of the kernel's time small
                wait = max(self.interval, 3 * (time.monotonic() - started))

    def _say(self, text: str, *, error: bool = False) -> None:
        colour = COLOURS["failed"] if error else "inherit"
        self.message.value = f'<span style="color:{colour}">{html.escape(text)}</span>' if text else ""

    def _text(self) -> str:
        raise NotImplementedError

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle = self.widget._repr_mimebundle_(include=include, exclude=exclude)
        bundle["text/plain"] = self._text()
        return bundle

    def __repr__(self) -> str:
        return self._text()


class BatchPanel(_Live):
    """A batch's live panel: overall and per-tube bars, rate, latest results, failures, buttons.

    It works on its own connections to beanstalkd and the journal, so the
    notebook may use the batch meanwhile. ``widget`` is the ipywidgets box, for
    placing the panel inside other widgets.
    """

    def __init__(self, batch: "Batch", *, interval: float = 1.0, start: bool = True):
        super().__init__(interval)
        self.batch = own_connections(batch)
        self._tracker = BatchTracker(self.batch)
        self._build(ipywidgets())
        self.refresh(rows=True)
        if start and not self.state.finished:
            self.start()

    def _build(self, w: Any) -> None:
        self.title = w.HTML()
        self.bar = w.IntProgress(min=0, max=self.batch.total, layout=w.Layout(width="100%"))
        self.counts = w.HTML()
        self.tube_bars: dict[str, Any] = {}
        self.tube_box = w.VBox()
        self.pause_button = _button(w, "Pause", "stop listeners from starting this "
                                    "batch's jobs (its tubes pause)", self.pause)
        self.resume_button = _button(w, "Resume", "let listeners start them again", self.resume)
        self.retry_button = _button(w, "Retry failed", "queue the failed rows again",
                                    self.retry_failed)
        self.cancel_button = _button(w, "Cancel", "remove the jobs that have not started",
                                     self.cancel)
        self.message = w.HTML()
        self.latest = w.HTML()
        self.failures = w.HTML()
        buttons = w.HBox([self.pause_button, self.resume_button, self.retry_button,
                          self.cancel_button, self.message])
        self.widget = w.VBox([self.title, w.HBox([self.bar], layout=w.Layout(width="100%")),
                              self.counts, self.tube_box, buttons, self.latest, self.failures],
                             layout=w.Layout(width="100%"))
        self.widget.add_class("glowlab-panel")

    # -- state -----------------------------------------------------------------
    def _poll(self, *, rows: bool = False) -> BatchState:
        return self._tracker.poll(rows=rows)

    def _final(self, state: BatchState) -> bool:
        return state.finished

    def _idle(self) -> None:
        self.batch.queue.close()

    def _text(self) -> str:
        return describe_batch(self.state)

    # -- drawing ---------------------------------------------------------------
    def _draw(self, s: BatchState) -> None:
        t = s.tally
        label = html.escape(s.title) + (f" <small>({s.id})</small>" if s.name else "")
        self.title.value = f"{CSS}<b>batch {label}</b> · {t.total} jobs"
        self.bar.max = t.total
        self.bar.value = t.finished
        self.bar.bar_style = BAR_STYLE["paused" if s.paused and not s.finished else s.verdict]
        self.counts.value = counts_html(s) + " · " + html.escape(pace(s))
        self._draw_tubes(s.tubes)
        self.pause_button.disabled = s.finished or len(s.paused) == len(s.tubes)
        self.resume_button.disabled = not s.paused
        self.retry_button.disabled = not t.failed
        self.cancel_button.disabled = not t.queued
        if s.error or (self.state is not None and self.state.error):
            self._say(s.error or "", error=True)
        self.latest.value = table_html("latest results", s.latest)
        self.failures.value = table_html(f"failed rows ({t.failed})", s.failures) if t.failed else ""

    def _draw_tubes(self, tubes: Sequence[TubeProgress]) -> None:
        if len(tubes) < 2:
            return
        w = ipywidgets()
        if sorted(self.tube_bars) != [p.tube for p in tubes]:  # only a retry into a new tube changes them
            self.tube_bars = {p.tube: (w.IntProgress(min=0, description=p.tube,
                                                     layout=w.Layout(width="60%")), w.HTML())
                              for p in tubes}
            self.tube_box.children = [w.HBox(list(parts)) for parts in self.tube_bars.values()]
        for p in tubes:
            bar, label = self.tube_bars[p.tube]
            bar.max, bar.value = p.tally.total, p.tally.finished
            bar.bar_style = BAR_STYLE["paused" if p.paused and not p.tally.complete else p.tally.verdict]
            label.value = html.escape(summary(p.tally) + (" · paused" if p.paused else ""))

    # -- buttons (also callable from code) ----------------------------------------
    def pause(self, _button: Any = None) -> None:
        self._act(lambda: self.batch.pause(PAUSE_SECONDS) or "paused: listeners start no new jobs")

    def resume(self, _button: Any = None) -> None:
        self._act(lambda: self.batch.resume() or "resumed")

    def retry_failed(self, _button: Any = None) -> None:
        self._act(lambda: f"queued {self.batch.retry_failed()} failed row(s) again")

    def cancel(self, _button: Any = None) -> None:
        self._act(lambda: f"cancelled {self.batch.cancel()} queued row(s)")

    def _act(self, action: Callable[[], str]) -> None:
        with self._lock:
            try:
                message, error = action(), False
            except GlowlabError as exc:
                message, error = str(exc), True
            self.refresh(rows=True)
            self._say(message, error=error)
            if not self.state.finished:
                self.start()


class Dashboard(_Live):
    """The whole queue, live: every tube's jobs by state and pause, and the listeners connected."""

    def __init__(self, queue: "Queue", *, tubes: Sequence[str] = (), interval: float = 2.0,
                 start: bool = True):
        from .queue import Queue

        super().__init__(interval)
        self.queue = Queue(queue.address, keyring=queue.keyring)  # the thread's own connection
        self.tubes = list(tubes)
        w = ipywidgets()
        self.title = w.HTML()
        self.table = w.HTML()
        self.message = w.HTML()
        self.widget = w.VBox([self.title, self.table, self.message])
        self.widget.add_class("glowlab-dashboard")
        self.refresh()
        if start:
            self.start()

    def _poll(self, *, rows: bool = False) -> QueueState:
        return read_queue(self.queue, self.tubes)

    def _draw(self, s: QueueState) -> None:
        self.title.value = f"{CSS}<b>{html.escape(listeners_line(s) if not s.error else s.address)}</b>"
        self.table.value = queue_html(s)
        self._say(s.error or "", error=bool(s.error))

    def _idle(self) -> None:
        self.queue.close()

    def _text(self) -> str:
        return describe_queue(self.state)


def dashboard(queue: "Queue | LocalCluster | str | None" = None, *, tubes: Sequence[str] = (),
              interval: float = 2.0) -> Dashboard:
    """A live view of a beanstalkd server (default ``$GLOW_QUEUE``): tubes and listeners."""
    from .sweep import resolve_queue

    return Dashboard(resolve_queue(queue), tubes=tubes, interval=interval)


def batch_bundle(batch: "Batch") -> dict[str, Any]:
    """How a Batch shows itself: its live panel in a Jupyter kernel, else the same as text."""
    if widgets_shown():
        return BatchPanel(batch)._repr_mimebundle_()
    return {"text/plain": describe_batch(BatchTracker(batch).poll())}


def own_connections(batch: "Batch") -> "Batch":
    """The same batch on new connections (the panel's thread must not share the notebook's)."""
    from .batch import Batch
    from .journal import Journal
    from .queue import Queue

    queue = Queue(batch.queue.address, keyring=batch.queue.keyring)
    return Batch(batch.record, queue, Journal(batch.journal.path))


# -- drawing helpers (pure: state in, HTML out) ---------------------------------------
def _button(w: Any, text: str, tooltip: str, handler: Callable) -> Any:
    # No icons: they need Font Awesome, which frontends may fetch from a CDN.
    button = w.Button(description=text, tooltip=tooltip, layout=w.Layout(width="auto"))
    button.on_click(handler)
    return button


def counts_html(s: BatchState) -> str:
    """``■ 9 done ■ 1 failed ■ 2 running ■ 4 queued of 16``, coloured like the bars."""
    t = s.tally
    parts = [(t.done, "done"), (t.failed, "failed"), (t.cancelled, "cancelled"),
             (t.running, "running"), (t.queued, "queued")]
    chips = [f'<span style="color:{COLOURS[k]}">■</span> {n} {k}' for n, k in parts
             if n or k == "done"]
    return "&nbsp; ".join(chips) + f" of {t.total}"


def table_html(caption: str, frame: Any) -> str:
    """A small DataFrame as an HTML table (newlines kept: stderr tails have several lines)."""
    if frame is None or not len(frame):
        return ""
    names = [n or "" for n in frame.index.names]
    head = "".join(f"<th>{html.escape(str(n))}</th>" for n in [*names, *frame.columns])
    body = "".join(
        "<tr>" + "".join(f"<th>{html.escape(cell(v))}</th>" for v in (key if isinstance(key, tuple) else (key,)))
        + "".join(f"<td>{html.escape(cell(v))}</td>" for v in values) + "</tr>"
        for key, values in zip(frame.index, frame.itertuples(index=False)))
    return (f'<div class="glowlab-caption">{html.escape(caption)}</div><div style="overflow-x:auto">'
            f'<table class="glowlab-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')


def queue_html(s: QueueState) -> str:
    """The tubes as an HTML table."""
    if s.error:
        return ""
    head = "".join(f"<th>{h}</th>" for h in ("tube", "ready", "reserved", "delayed", "buried",
                                              "paused", "watching"))
    rows = "".join(
        f"<tr><th>{html.escape(t.name)}</th><td>{t.ready}</td><td>{t.reserved}</td>"
        f"<td>{t.delayed}</td><td>{t.buried}</td><td>{f'{t.paused} s' if t.paused else '-'}</td>"
        f"<td>{t.watching}</td></tr>" for t in s.tubes) or '<tr><td colspan="7">(no tubes)</td></tr>'
    return f'<table class="glowlab-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
