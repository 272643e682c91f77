"""Parameter sweeps: each row of a DataFrame becomes one job of a :class:`Batch`.

A command template is split into an argv first and each piece is filled from
the row, so a value with spaces or shell characters stays one argument and no
shell ever sees it. ``"pkg.mod:func"`` instead calls a Python function with the
row as keyword arguments.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, Union

from .call import is_target
from .errors import GlowlabError, InvalidJobError
from .job import Job
from .journal import BatchRecord, Journal, RowRecord

if TYPE_CHECKING:
    import pandas as pd

    from .batch import Batch
    from .cluster import LocalCluster
    from .queue import Queue

RESULTS_PREFIX = "glowlab.results."
PerRow = Union[None, int, float, str, Callable[[Mapping[str, Any]], Any]]


def jsonable(value: Any) -> Any:
    """A JSON-safe version of a DataFrame cell (numpy scalars, timestamps, NaN)."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class Template:
    """A command template split once into argv pieces, filled per row."""

    def __init__(self, command: str):
        self.command = command
        self.function = is_target(command)
        self.pieces = [] if self.function else shlex.split(command)
        if not self.pieces and not self.function:
            raise GlowlabError("the sweep command is empty; give e.g. 'python sim.py --alpha {alpha}'")

    def argv(self, row: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
        """The argv for one row; ``params`` (the columns) are a function's kwargs."""
        if self.function:
            return ["glowlab", "call", self.command, json.dumps(params, sort_keys=True)]
        try:
            return [p.format_map(row) if "{" in p else p for p in self.pieces]
        except KeyError as exc:
            raise GlowlabError(f"the command uses {{{exc.args[0]}}} but the DataFrame has no such "
                               f"column; columns: {', '.join(map(str, row))}") from None
        except (ValueError, IndexError) as exc:
            raise GlowlabError(f"cannot fill the command template {self.command!r}: {exc} "
                               "(write literal braces as {{ and }})") from None


def per_row(value: PerRow, row: Mapping[str, Any], columns: Sequence[str]) -> Any:
    """A sweep option as given: a function of the row, a column name, or a constant."""
    if callable(value):
        return value(row)
    if isinstance(value, str) and value in columns:
        return row[value]
    return value


def fingerprint(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """What makes two jobs 'the same command' for ``skip_done``."""
    text = json.dumps([list(argv), sorted(env.items())])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def resolve_queue(queue: "Queue | LocalCluster | str | None") -> "Queue":
    from .queue import Queue, connect

    if queue is None or isinstance(queue, str):
        return connect(queue)
    if isinstance(queue, Queue):
        return queue
    if hasattr(queue, "queue"):
        return queue.queue
    raise GlowlabError(f"queue must be a Queue, a LocalCluster or an address, not {type(queue).__name__}")


def sweep(
    df: "pd.DataFrame",
    command: str,
    *,
    tube: PerRow,
    queue: "Queue | LocalCluster | str | None" = None,
    pri: PerRow = None,
    delay: PerRow = None,
    workdir: PerRow = None,
    timeout: PerRow = None,
    retries: int = 0,
    after: "Batch | str | Sequence[str] | None" = None,
    name: str | None = None,
    skip_done: bool = False,
    env: Mapping[str, str] | None = None,
    ttr: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> "Batch":
    """Queue one job per row of ``df`` and return the :class:`Batch` that tracks them.

    ``tube``, ``pri``, ``delay``, ``workdir`` and ``timeout`` are each a constant,
    a column name, or a function of the row. ``workdir`` defaults to the current
    folder, so relative paths in the command work on this machine's listeners.
    """
    from .batch import Batch

    q = resolve_queue(queue)
    template = Template(command)
    batch_id = uuid.uuid4().hex[:12]
    results_tube = RESULTS_PREFIX + batch_id
    after_tubes = _after_tubes(after)
    index_names = [n if n is not None else f"__index_{i}" for i, n in enumerate(df.index.names)]
    frame = df.reset_index(names=index_names)
    columns = [str(c) for c in df.columns]
    maker = _JobMaker(template, columns, tube=tube, pri=pri, delay=delay,
                      workdir=workdir if workdir is not None else os.getcwd(), timeout=timeout,
                      retries=retries, after=after_tubes, results=results_tube,
                      env=dict(env or {}), **({"ttr": ttr} if ttr is not None else {}))
    jobs, rows = [], []
    for position, record in enumerate(frame.to_dict("records")):
        record = {str(k): jsonable(v) for k, v in record.items()}
        params = {c: record[c] for c in columns}
        job = maker.job(position, record, params)
        jobs.append(job)
        rows.append(RowRecord(position, job.id, None, job.tube, fingerprint(job.argv, job.env), record))
    journal = Journal()
    rows, jobs = _skip_done(journal, rows, jobs) if skip_done else (rows, jobs)
    record = BatchRecord(batch_id, name, command, q.address, results_tube, index_names, columns,
                         time.time(), len(rows))
    journal.add_batch(record, rows)
    ids = q.put_bodies([(j.tube, j.pri, j.delay, j.ttr) for j in jobs], q.encode_all(jobs),
                       progress=(lambda n: progress(n, len(jobs))) if progress else None)
    by_job = dict(zip((j.id for j in jobs), ids))
    journal.set_bids(batch_id, [by_job.get(r.job_id, 0) for r in rows])
    return Batch(record, q, journal)


def _after_tubes(after: Any) -> tuple[str, ...]:
    if after is None:
        return ()
    if hasattr(after, "tubes"):
        return tuple(after.tubes)
    if isinstance(after, str):
        return tuple(t.strip() for t in after.split(",") if t.strip())
    return tuple(after)


class _JobMaker:
    """Jobs for rows: constant options are checked once, per-row ones for each row."""

    def __init__(self, template: Template, columns: Sequence[str], **options: Any):
        self.template, self.columns = template, columns
        self.varying = {k: v for k, v in options.items()
                        if callable(v) or (isinstance(v, str) and v in columns)}
        constant = {k: v for k, v in options.items() if k not in self.varying and v is not None}
        constant.setdefault("tube", "default")  # a placeholder when the tube varies by row
        self.after = constant.get("after", ())
        try:
            self.base = Job(cmd="-", **constant)
        except InvalidJobError as exc:
            raise InvalidJobError(f"sweep option: {exc}", field=exc.field) from None

    def job(self, position: int, record: Mapping[str, Any], params: Mapping[str, Any]) -> Job:
        argv = self.template.argv(record, params)
        changes = {k: per_row(v, params, self.columns) for k, v in self.varying.items()}
        try:
            job = self.base.with_changes(cmd=argv[0], args=argv[1:], id=uuid.uuid4().hex,
                                         **{k: v for k, v in changes.items() if v is not None})
        except InvalidJobError as exc:
            raise exc.at(position) from None
        if job.tube in self.after:
            raise GlowlabError(f"row {position}: tube {job.tube!r} cannot wait for itself; give "
                               "the later stage its own tube")
        return job


def _skip_done(journal: Journal, rows: list[RowRecord], jobs: list[Job]):
    """Point rows that already succeeded at their earlier job; queue only the rest."""
    done = journal.done_by_fingerprint(r.fingerprint for r in rows)
    kept_rows, kept_jobs = [], []
    for row, job in zip(rows, jobs):
        earlier = done.get(row.fingerprint)
        if earlier:
            kept_rows.append(RowRecord(row.position, earlier, None, row.tube, row.fingerprint, row.params))
        else:
            kept_rows.append(row)
            kept_jobs.append(job)
    return kept_rows, kept_jobs
