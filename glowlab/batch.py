"""A submitted sweep: collect its outcomes, look at them as a DataFrame, steer it.

Outcomes come back on the batch's own results tube. :meth:`Batch.collect`
writes them to the journal *before* deleting them from beanstalkd, so a
kernel restart loses nothing: :meth:`Batch.open` picks up where it stopped.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .errors import GlowlabError
from .job import gc_paused
from .journal import BatchRecord, Journal, RowRecord
from .outcome import Outcome, Status

if TYPE_CHECKING:
    import pandas as pd

    from .queue import Queue
    from .widgets import BatchPanel

OUTCOME_COLUMNS = ["status", "exit_code", "seconds", "host", "attempts", "started", "finished",
                   "stdout", "stderr", "error"]
FINAL = {Status.DONE, Status.FAILED, Status.TIMEOUT, Status.CANCELLED}


class Batch:
    """The jobs of one sweep, and everything known about them."""

    def __init__(self, record: BatchRecord, queue: "Queue", journal: Journal):
        self.record = record
        self.queue = queue
        self.journal = journal

    @classmethod
    def open(cls, batch_id_or_name: str, queue: "Queue | str | None" = None) -> "Batch":
        """Reattach to a batch recorded in the journal (after a kernel restart, say)."""
        from .sweep import resolve_queue

        journal = Journal()
        record = journal.batch(batch_id_or_name)
        return cls(record, resolve_queue(queue or record.address), journal)

    # -- identity -------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.record.id

    @property
    def name(self) -> str | None:
        return self.record.name

    @property
    def total(self) -> int:
        return self.record.total

    @property
    def tubes(self) -> list[str]:
        return sorted({row.tube for row in self.journal.rows(self.id)})

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.counts(collect=False).items() if v)
        return f"<Batch {self.name or self.id}: {self.total} jobs ({counts})>"

    # -- showing (glowlab.widgets draws; imported only here) ------------------------
    def progress(self, *, interval: float = 1.0) -> "BatchPanel":
        """A live panel of this batch for notebooks: bars, latest results, failures, buttons."""
        from .widgets import BatchPanel

        return BatchPanel(self, interval=interval)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """The live panel in a Jupyter kernel; the same state as text anywhere else."""
        from .widgets import batch_bundle

        return batch_bundle(self)

    # -- collecting -----------------------------------------------------------
    def collect(self, wait: float = 0) -> int:
        """Move the outcomes waiting on the results tube into the journal; returns how many."""
        taken = self.queue.take(self.record.results_tube, wait=int(wait))
        if not taken:
            return 0
        outcomes, starts = [], []
        # one decoding call for the lot: for small messages the call costs more than the work
        messages = json.loads(b"[" + b",".join(r.body for r in taken) + b"]")
        for reserved, message in zip(taken, messages):
            if message.get("event") == "start":
                starts.append((message["job_id"], message["attempt"], message.get("host"),
                               message.get("started")))
            else:
                outcomes.append((message, reserved.body))
        self.journal.add_starts(starts)
        self.journal.add_received(outcomes)
        self.queue.delete_many([r.id for r in taken])  # only once they are safe on disk
        return len(taken)

    def _collect_all(self) -> None:
        while self.collect() > 0:
            pass

    # -- looking --------------------------------------------------------------
    def statuses(self, *, collect: bool = True) -> list[tuple[RowRecord, Status, Outcome | None]]:
        """Each row with its status and latest outcome (None while queued or running)."""
        if collect:
            self._collect_all()
        outcomes = self.journal.latest_outcomes(self.id)
        started = self.journal.started(self.id)
        result = []
        for row in self.journal.rows(self.id):
            outcome = outcomes.get(row.job_id)
            if outcome is not None:
                status = outcome.status
            else:
                status = Status.RUNNING if row.job_id in started else Status.QUEUED
            result.append((row, status, outcome))
        return result

    def counts(self, *, collect: bool = True) -> dict[str, int]:
        """How many rows are in each state (queued, running, done, failed, timeout, cancelled)."""
        if collect:
            self._collect_all()
        tally = self.journal.status_counts(self.id)
        counts = {s.value: tally.get(s.value, 0) for s in Status if s is not Status.INTERRUPTED}
        counts["queued"] = self.total - sum(counts.values())
        return counts

    @property
    def done(self) -> bool:
        """True when every row has a final outcome."""
        counts = self.counts()
        return counts["queued"] == counts["running"] == 0

    def wait(self, timeout: float | None = None) -> "Batch":
        """Collect until every row is final; raises TimeoutError after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"batch {self.name or self.id} not finished after {timeout} s: "
                                   f"{self.counts(collect=False)}")
            self.collect(wait=1)
        return self

    def as_completed(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield each row's result (parameters, outcome, metrics) as it becomes final."""
        seen: set[int] = set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            statuses = self.statuses()
            for row, status, outcome in statuses:
                if status in FINAL and row.position not in seen:
                    seen.add(row.position)
                    yield _result_row(self.record, row, status, outcome)
            if len(seen) == len(statuses):
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"batch {self.name or self.id} not finished after {timeout} s")
            self.collect(wait=1)

    def results(self) -> "pd.DataFrame":
        """One row per input row: the sweep's index and parameters, outcome columns, metrics."""
        import pandas as pd

        with gc_paused():  # an outcome, a row and a record per input row, none in a cycle
            records = [_result_row(self.record, row, status, outcome, when=_seconds)
                       for row, status, outcome in self.statuses()]
        frame = pd.DataFrame.from_records(records) if records else pd.DataFrame(
            columns=self.record.index_names + self.record.columns + OUTCOME_COLUMNS)
        for column in ("started", "finished"):  # a column at once: a Timestamp per cell is slow
            frame[column] = pd.to_datetime(frame[column], unit="s")
        frame = frame.set_index(self.record.index_names)
        frame.index.names = [None if n.startswith("__index_") else n for n in frame.index.names]
        return frame

    # -- steering -------------------------------------------------------------
    def retry_failed(self, **overrides: Any) -> int:
        """Queue the failed and timed-out rows again (optionally with new job fields)."""
        from .job import decode

        failed = [(row, o) for row, status, o in self.statuses()
                  if status in (Status.FAILED, Status.TIMEOUT)]
        jobs, rows = [], []
        for row, _ in failed:
            old = self._body(row)
            if old is None:
                raise GlowlabError(f"cannot retry row {row.position}: its job is no longer in "
                                   "beanstalkd; submit the row again with sweep()")
            job = decode(old).with_changes(id=_new_id(), **overrides)
            jobs.append(job)
            rows.append(RowRecord(row.position, job.id, None, job.tube, row.fingerprint, row.params))
        if not jobs:
            return 0
        ids = self.queue.put_bodies([(j.tube, j.pri, j.delay, j.ttr) for j in jobs],
                                    self.queue.encode_all(jobs))
        self.journal.replace_rows(self.id, [RowRecord(r.position, r.job_id, bid, r.tube,
                                                      r.fingerprint, r.params)
                                            for r, bid in zip(rows, ids)])
        self.queue.delete_many([r.beanstalkd_id for r, _ in failed if r.beanstalkd_id])
        return len(jobs)

    def _body(self, row: RowRecord) -> bytes | None:
        return self.queue.peek_body(row.beanstalkd_id) if row.beanstalkd_id else None

    def cancel(self) -> int:
        """Remove the batch's jobs that have not started; returns how many."""
        pending = [row for row, status, _ in self.statuses() if status is Status.QUEUED]
        removed = [row for row in pending if row.beanstalkd_id and self.queue.delete(row.beanstalkd_id)]
        now = time.time()
        self.journal.add_outcomes(
            Outcome(job_id=row.job_id, tube=row.tube, command=self.record.command,
                    status=Status.CANCELLED, attempt=0, started=now, finished=now)
            for row in removed)
        return len(removed)

    def pause(self, seconds: int = 3600) -> None:
        """Stop listeners from starting this batch's jobs for ``seconds`` (its tubes pause)."""
        for tube in self.tubes:
            self.queue.pause_tube(tube, seconds)

    def resume(self) -> None:
        for tube in self.tubes:
            self.queue.pause_tube(tube, 0)


def _new_id() -> str:
    import uuid

    return uuid.uuid4().hex


def _result_row(batch: BatchRecord, row: RowRecord, status: Status, outcome: Outcome | None,
                *, when: Callable[[float], Any] | None = None) -> dict[str, Any]:
    """A row of results; ``when`` turns a time stamp into its cell (default: a Timestamp)."""
    when = when or _time
    result = dict(row.params)
    result.update(status=status.value, exit_code=None, seconds=None, host=None, attempts=0,
                  started=None, finished=None, stdout=None, stderr=None, error=None)
    if outcome is not None:
        result.update(
            exit_code=outcome.exit_code, seconds=outcome.seconds, host=outcome.host or None,
            attempts=outcome.attempt, started=when(outcome.started),
            finished=when(outcome.finished), stdout=outcome.stdout, stderr=outcome.stderr,
            error=None if outcome.ok else outcome.describe(),
        )
        for key, value in outcome.metrics.items():
            result.setdefault(key, value)
    return result


def _seconds(stamp: float) -> float | None:
    return stamp or None


def _time(stamp: float) -> Any:
    import pandas as pd

    return pd.Timestamp(stamp, unit="s") if stamp else None


def batches() -> "pd.DataFrame":
    """The journal's batches, oldest first."""
    import pandas as pd

    rows = Journal().batches()
    frame = pd.DataFrame(rows, columns=["id", "name", "command", "address", "created", "total"])
    frame["created"] = pd.to_datetime(frame["created"], unit="s")
    return frame
