"""What the progress panels show, as plain data: a batch's state and a queue's state.

The pure functions turn journal rows and beanstalkd stats into frozen
dataclasses and small DataFrames, and render them as plain text. The widgets
(:mod:`glowlab.widgets`) and the terminal view (:mod:`glowlab.watch`) only draw
these. :class:`BatchTracker` and :func:`read_queue` at the end are the thin edge
that gathers the inputs by asking a :class:`~glowlab.batch.Batch` or a
:class:`~glowlab.queue.Queue`.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from .errors import GlowlabError
from .outcome import Outcome, Status

if TYPE_CHECKING:
    import pandas as pd

    from .batch import Batch
    from .journal import BatchRecord, RowRecord
    from .queue import Queue

    Statuses = Sequence[tuple[RowRecord, Status, "Outcome | None"]]

LATEST_ROWS = 5
"""Rows of the latest-results table."""
FAILED_ROWS = 10
"""Failed rows listed (the count says how many there are in all)."""
RATE_WINDOW = 60.0
"""Seconds of history the rate (and so the time left) is measured over."""
FAILED = (Status.FAILED, Status.TIMEOUT)


# -- batch state ------------------------------------------------------------------
@dataclass(frozen=True)
class Tally:
    """Rows of a batch (or of one of its tubes) by state."""

    total: int = 0
    done: int = 0
    failed: int = 0
    """Failed and timed out."""
    cancelled: int = 0
    running: int = 0
    queued: int = 0

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.cancelled

    @property
    def complete(self) -> bool:
        return self.running == self.queued == 0

    @property
    def verdict(self) -> str:
        """``running``, ``done`` (all done), ``failed`` (some failed) or ``cancelled``."""
        if not self.complete:
            return "running"
        return "failed" if self.failed else "cancelled" if self.cancelled else "done"


@dataclass(frozen=True)
class TubeProgress:
    """One tube of a batch: its rows by state and its pause (seconds left, 0 if not paused)."""

    tube: str
    tally: Tally
    paused: int = 0


@dataclass(frozen=True, eq=False)
class BatchState:
    """A snapshot of a batch: everything a progress panel shows."""

    id: str
    name: str | None
    tally: Tally
    tubes: tuple[TubeProgress, ...]
    latest: "pd.DataFrame"
    """The last rows to finish: index, parameters, status, seconds, metrics."""
    failures: "pd.DataFrame"
    """Failed and timed-out rows (up to FAILED_ROWS): index, parameters, error, stderr tail."""
    rate: float | None = None
    """Rows finished per second lately; None until measurable."""
    eta: float | None = None
    """Seconds left at that rate; None when unknown."""
    error: str | None = None
    """Why the latest outcomes could not be collected (the rest is from the journal)."""

    @property
    def title(self) -> str:
        return self.name or self.id

    @property
    def finished(self) -> bool:
        return self.tally.complete

    @property
    def paused(self) -> list[str]:
        return [t.tube for t in self.tubes if t.paused]

    @property
    def verdict(self) -> str:
        return self.tally.verdict


def tally(statuses: Iterable[Status]) -> Tally:
    """Count row states; ``interrupted`` rows are back in the queue, so they count as queued."""
    counts = Counter(statuses)
    return tally_counts({s.value: n for s, n in counts.items()}, sum(counts.values()))


def tally_counts(counts: Mapping[str, int], total: int) -> Tally:
    """A :class:`Tally` from ``Batch.counts()`` (status value -> rows); the rest are queued."""
    done, cancelled, running = (int(counts.get(k, 0)) for k in ("done", "cancelled", "running"))
    failed = int(counts.get("failed", 0)) + int(counts.get("timeout", 0))
    return Tally(total, done, failed, cancelled, running, total - done - failed - cancelled - running)


def batch_state(record: "BatchRecord", statuses: "Statuses", *,
                counts: Mapping[str, int] | None = None, paused: Mapping[str, int] = {},
                rate: float | None = None, error: str | None = None) -> BatchState:
    """The state of a batch from its rows' statuses (``Batch.statuses()``) and tube pauses.

    ``counts`` (``Batch.counts()``, cheap) gives the overall tally when ``statuses``
    may be older: a large batch's rows are read less often than its counts.
    """
    overall = tally(s for _, s, _ in statuses) if counts is None else tally_counts(counts, record.total)
    by_tube: dict[str, list[Status]] = {}
    for row, status, _ in statuses:
        by_tube.setdefault(row.tube, []).append(status)
    tubes = tuple(TubeProgress(t, tally(s), int(paused.get(t, 0))) for t, s in sorted(by_tube.items()))
    remaining = overall.total - overall.finished
    eta = 0.0 if not remaining else (remaining / rate if rate else None)
    return BatchState(record.id, record.name, overall, tubes, latest_table(record, statuses),
                      failures_table(record, statuses), rate, eta,
                      None if overall.complete else error)  # once complete, nothing is missing


def latest_table(record: "BatchRecord", statuses: "Statuses", limit: int = LATEST_ROWS) -> "pd.DataFrame":
    """The ``limit`` rows that finished last, newest first, with their metrics."""
    final = [(row, status, o) for row, status, o in statuses if o is not None and o.finished]
    final.sort(key=lambda item: item[2].finished, reverse=True)
    records = []
    for row, status, outcome in final[:limit]:
        records.append({**_params(record, row), "status": status.value,
                        "seconds": round(outcome.seconds, 2), **outcome.metrics})
    return _frame(record, records, ["status", "seconds"])


def failures_table(record: "BatchRecord", statuses: "Statuses", limit: int = FAILED_ROWS) -> "pd.DataFrame":
    """The first ``limit`` failed or timed-out rows, with their error and stderr tail."""
    records = []
    for row, status, outcome in statuses:
        if status in FAILED and outcome is not None and len(records) < limit:
            records.append({**_params(record, row), "status": status.value,
                            "error": outcome.describe(), "stderr": tail(outcome.stderr)})
    return _frame(record, records, ["status", "error", "stderr"])


def _params(record: "BatchRecord", row: "RowRecord") -> dict[str, Any]:
    keys = [*record.index_names, *record.columns]
    return {k: row.params.get(k) for k in keys}


def _frame(record: "BatchRecord", records: list[dict[str, Any]], extra: list[str]) -> "pd.DataFrame":
    import pandas as pd

    columns = [*record.index_names, *record.columns, *extra]
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame(columns=columns)
    frame = frame.set_index(list(record.index_names))
    frame.index.names = [None if str(n).startswith("__index_") else n for n in frame.index.names]
    return frame


def tail(text: str | None, lines: int = 3, chars: int = 300) -> str:
    """The last few non-empty lines of ``text`` (a stderr), at most ``chars`` long."""
    kept = [line.strip() for line in (text or "").splitlines() if line.strip()][-lines:]
    joined = "\n".join(kept)
    return joined if len(joined) <= chars else "…" + joined[-(chars - 1):]


# -- rate -----------------------------------------------------------------------------
@dataclass
class RateMeter:
    """Rows finished per second over the last ``window`` seconds of samples."""

    window: float = RATE_WINDOW
    samples: deque = field(default_factory=deque)

    def add(self, when: float, finished: int) -> float | None:
        """Record ``finished`` rows at time ``when``; returns the rate, None while unknown."""
        if self.samples and finished < self.samples[-1][1]:
            self.samples.clear()  # rows were queued again (a retry): the old slope is meaningless
        self.samples.append((when, finished))
        while len(self.samples) > 2 and when - self.samples[1][0] >= self.window:
            self.samples.popleft()
        return rate(self.samples)


def rate(samples: Sequence[tuple[float, int]]) -> float | None:
    """The slope between the first and last (time, finished) sample; None if too short to tell."""
    if len(samples) < 2:
        return None
    (t0, f0), (t1, f1) = samples[0], samples[-1]
    if t1 - t0 < 0.5:
        return None
    return (f1 - f0) / (t1 - t0)


# -- queue state ----------------------------------------------------------------------
@dataclass(frozen=True)
class TubeState:
    """One tube as beanstalkd sees it."""

    name: str
    ready: int = 0
    reserved: int = 0
    delayed: int = 0
    buried: int = 0
    paused: int = 0
    """Seconds of pause left; 0 when not paused."""
    watching: int = 0
    """Connections watching the tube: listener slots, and collectors of result tubes."""


@dataclass(frozen=True)
class QueueState:
    """A beanstalkd server: its tubes and the listeners connected to it."""

    address: str
    tubes: tuple[TubeState, ...]
    workers: int = 0
    """Connections that have reserved a job: listener slots (and batch collectors)."""
    waiting: int = 0
    """Of those, the ones waiting for a job now (idle slots)."""
    connections: int = 0
    version: str = ""
    error: str | None = None
    """Why the server could not be read, when it could not."""


def tube_state(name: str, raw: Mapping[str, Any] | None) -> TubeState:
    """beanstalkd's ``stats-tube`` reply as a :class:`TubeState` (a missing tube is empty)."""
    raw = raw or {}
    number = lambda key: int(raw.get(key, 0))  # noqa: E731
    return TubeState(name, number("current-jobs-ready"), number("current-jobs-reserved"),
                     number("current-jobs-delayed"), number("current-jobs-buried"),
                     number("pause-time-left"), number("current-watching"))


def queue_state(address: str, server: Mapping[str, Any],
                tubes: Mapping[str, Mapping[str, Any] | None]) -> QueueState:
    """The state of a server from its ``stats`` and each tube's ``stats-tube``."""
    return QueueState(address, tuple(tube_state(n, raw) for n, raw in sorted(tubes.items())),
                      int(server.get("current-workers", 0)), int(server.get("current-waiting", 0)),
                      int(server.get("current-connections", 0)), str(server.get("version", "")))


# -- text -----------------------------------------------------------------------------
def bar(done: int, total: int, width: int = 24) -> str:
    """``[#########.......]`` for text frontends."""
    filled = round(width * done / total) if total else width
    return "[" + "#" * filled + "." * (width - filled) + "]"


def summary(t: Tally) -> str:
    """``10/16 finished · 9 done · 1 failed · 2 running · 4 queued``."""
    parts = [f"{t.finished}/{t.total} finished", f"{t.done} done"]
    parts += [f"{n} {label}" for n, label in ((t.failed, "failed"), (t.cancelled, "cancelled"),
                                              (t.running, "running"), (t.queued, "queued")) if n]
    return " · ".join(parts)


def format_rate(value: float | None) -> str:
    if value is None:
        return "rate —"
    return f"{value:.1f} jobs/s" if value >= 1 else f"{value * 60:.1f} jobs/min"


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "time left —"
    seconds = round(seconds)
    if seconds < 60:
        return f"about {seconds} s left"
    minutes = seconds // 60
    if minutes < 60:
        return f"about {minutes} min {seconds % 60} s left"
    return f"about {minutes // 60} h {minutes % 60} min left"


def pace(state: BatchState) -> str:
    """``3.1 jobs/s · about 2 s left``, or how it ended."""
    if state.finished:
        return {"done": "all done", "failed": f"finished with {state.tally.failed} failed",
                "cancelled": f"finished, {state.tally.cancelled} cancelled"}[state.verdict]
    paused = f" · paused: {', '.join(state.paused)}" if state.paused else ""
    return f"{format_rate(state.rate)} · {format_eta(state.eta)}{paused}"


def describe_batch(state: BatchState) -> str:
    """The whole panel as plain text (for text frontends and logs)."""
    t = state.tally
    lines = [f"batch {state.title}" + (f" ({state.id})" if state.name else "") + f": {t.total} jobs",
             f"{bar(t.finished, t.total)} {summary(t)}", pace(state)]
    if state.error:
        lines.append(f"error: {state.error}")
    if len(state.tubes) > 1:
        lines += [f"  {p.tube}: {summary(p.tally)}" + (" (paused)" if p.paused else "")
                  for p in state.tubes]
    if len(state.latest):
        lines += ["latest results:", _indent(state.latest.to_string())]
    if t.failed:
        lines.append(f"failed rows ({t.failed}):")
        for key, row in state.failures.iterrows():
            lines.append(f"  {key}: {row['status']}, {row['error']}")
            lines += [f"    {line}" for line in str(row["stderr"] or "").splitlines()]
    return "\n".join(lines)


def describe_queue(state: QueueState) -> str:
    """The dashboard as plain text: one line per tube, then the listeners."""
    if state.error:
        return f"beanstalkd at {state.address}: {state.error}"
    rows = [("TUBE", "READY", "RESERVED", "DELAYED", "BURIED", "PAUSED", "WATCHING")]
    rows += [(t.name, str(t.ready), str(t.reserved), str(t.delayed), str(t.buried),
              f"{t.paused}s" if t.paused else "-", str(t.watching)) for t in state.tubes]
    width = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(width[0]) if i == 0 else c.rjust(width[i])
                       for i, c in enumerate(r)).rstrip() for r in rows]
    if not state.tubes:
        lines.append("(no tubes)")
    return "\n".join([listeners_line(state), *lines])


def listeners_line(state: QueueState) -> str:
    """``beanstalkd 1.12 at HOST:PORT: 4 listener slot(s) connected, 1 idle``."""
    return (f"beanstalkd {state.version} at {state.address}: {state.workers} listener slot(s) "
            f"connected, {state.waiting} idle")


def cell(value: Any) -> str:
    """A table cell as text: floats to 6 significant digits, missing values empty."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


# -- gathering: the edge that asks the batch and the queue ------------------------------
class BatchTracker:
    """Polls a batch into :class:`BatchState` snapshots, keeping the rate's history.

    Counts come from the journal's SQL tallies at every poll; the rows behind the
    tables and tube bars are read again only when that costs at most ``share`` of
    the time, so a batch of 100,000 rows does not keep a kernel busy.
    """

    def __init__(self, batch: "Batch", *, share: float = 0.05):
        self.batch = batch
        self.meter = RateMeter()
        self.share = share
        self._statuses: Statuses | None = None
        self._rows_due = 0.0

    def poll(self, *, rows: bool = False) -> BatchState:
        """Collect waiting outcomes, then describe the batch; ``rows`` forces a fresh row read.

        When beanstalkd cannot be reached the state comes from the journal alone
        and says why; a batch whose outcomes are all there is complete anyway.
        """
        error = None
        try:
            while self.batch.collect():
                pass
        except GlowlabError as exc:
            error = str(exc)
        counts = self.batch.counts(collect=False)
        now = time.monotonic()
        complete = counts["queued"] == counts["running"] == 0
        if rows or complete or self._statuses is None or now >= self._rows_due:
            self._statuses = self.batch.statuses(collect=False)
            cost = time.monotonic() - now
            self._rows_due = now + cost / self.share
        tubes = {r.tube for r, _, _ in self._statuses}
        paused = {} if error else {tube: self._pause_left(tube) for tube in tubes}
        overall = tally_counts(counts, self.batch.total)
        return batch_state(self.batch.record, self._statuses, counts=counts, paused=paused,
                           rate=self.meter.add(now, overall.finished), error=error)

    def _pause_left(self, tube: str) -> int:
        return int((self.batch.queue.stats_tube(tube) or {}).get("pause-time-left", 0))


def read_queue(queue: "Queue", tubes: Sequence[str] = ()) -> QueueState:
    """The state of ``queue``'s server: ``tubes``, or every tube but glowlab's internal ones."""
    from .listener import INTERNAL_PREFIX

    try:
        names = list(tubes) or [t for t in queue.tubes() if not t.startswith(INTERNAL_PREFIX)]
        return queue_state(queue.address, queue.stats(), {n: queue.stats_tube(n) for n in names})
    except GlowlabError as exc:
        return QueueState(queue.address, (), error=str(exc))
