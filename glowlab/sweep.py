"""Parameter sweeps: each row of a DataFrame becomes one job of a :class:`Batch`.

A command template is split into an argv first and each piece is filled from
the row, so a value with spaces or shell characters stays one argument and no
shell ever sees it. ``"pkg.mod:func"`` instead calls a Python function with the
row as keyword arguments.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence, Union

from .call import is_target
from .errors import GlowlabError, InvalidJobError
from .job import Job, gc_paused, new_id, new_ids

if TYPE_CHECKING:
    import pandas as pd

    from .batch import Batch
    from .cluster import LocalCluster
    from .journal import Journal, RowRecord
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
        self._fills = [(i, p.format_map) for i, p in enumerate(self.pieces) if "{" in p]

    def argv(self, row: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
        """The argv for one row; ``params`` (the columns) are a function's kwargs."""
        if self.function:
            return ["glowlab", "call", self.command, json.dumps(params, sort_keys=True)]
        argv = self.pieces.copy()
        try:
            for i, fill in self._fills:
                argv[i] = fill(row)
            return argv
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
    return fingerprinter(env)(argv)


def fingerprinter(env: Mapping[str, str]) -> Callable[[Sequence[str]], str]:
    """:func:`fingerprint` for many commands with one ``env``, whose part is encoded once.

    The bytes hashed are the arguments joined by NUL (which no argument holds),
    two NULs, then ``env`` as sorted JSON: one join and one hash per command.
    """
    import hashlib

    sha256 = hashlib.sha256
    tail = b"\0\0" + json.dumps(sorted(env.items())).encode()
    # surrogatepass: arguments that were not UTF-8 arrive as lone surrogates
    return lambda argv: sha256("\0".join(argv).encode("utf-8", "surrogatepass") + tail).hexdigest()[:32]


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
    with gc_paused():  # a sweep makes a few objects per row, none in a cycle
        return _sweep(df, command, tube=tube, queue=queue, pri=pri, delay=delay, workdir=workdir,
                      timeout=timeout, retries=retries, after=after, name=name,
                      skip_done=skip_done, env=env, ttr=ttr, progress=progress)


def _sweep(df, command, *, tube, queue, pri, delay, workdir, timeout, retries, after, name,
           skip_done, env, ttr, progress) -> "Batch":
    from .batch import Batch
    from .journal import BatchRecord, Journal

    q = resolve_queue(queue)
    template = Template(command)
    batch_id = new_id()[:12]
    results_tube = RESULTS_PREFIX + batch_id
    index_names = [n if n is not None else f"__index_{i}" for i, n in enumerate(df.index.names)]
    columns = [str(c) for c in df.columns]
    maker = _JobMaker(template, columns, tube=tube, pri=pri, delay=delay,
                      workdir=workdir if workdir is not None else os.getcwd(), timeout=timeout,
                      retries=retries, after=_after_tubes(after), results=results_tube,
                      env=dict(env or {}), **({"ttr": ttr} if ttr is not None else {}))
    params = records(df.reset_index(names=index_names))
    rows = _Rows([maker.job(position, row, job_id)
                  for position, (row, job_id) in enumerate(zip(params, new_ids(len(params))))],
                 params, maker.base.env)
    journal = Journal()
    earlier, queued = _skip_done(journal, rows) if skip_done else ([], range(len(params)))
    jobs = [rows.jobs[p] for p in queued]
    bodies = q.encode_all(jobs)  # every check passes before anything is written or sent
    record = BatchRecord(batch_id, name, command, q.address, results_tube, index_names, columns,
                         time.time(), len(params))
    with journal.adding(record) as add_rows:
        add_rows(earlier)
        ids = q.put_bodies([(j.tube, j.pri, j.delay, j.ttr) for j in jobs], bodies,
                           progress=(lambda n: progress(n, len(jobs))) if progress else None,
                           prepare=lambda window: add_rows(rows.at(queued[i] for i in window)))
    bids = [0] * len(params)
    for position, bid in zip(queued, ids):
        bids[position] = bid
    journal.set_bids(batch_id, bids)
    return Batch(record, q, journal)


class _Rows:
    """The journal rows of a sweep's jobs, made as they are written (while jobs are queued)."""

    def __init__(self, jobs: list[Job], params: list[dict[str, Any]], env: Mapping[str, str]):
        self.jobs, self.params = jobs, params
        self.fingerprint = fingerprinter(env)

    def at(self, positions: Iterable[int]) -> list["RowRecord"]:
        from .journal import RowRecord

        return [RowRecord(p, job.id, None, job.tube, self.fingerprint(job.argv), self.params[p])
                for p in positions for job in (self.jobs[p],)]


def records(frame: "pd.DataFrame") -> list[dict[str, Any]]:
    """The rows of ``frame`` as dicts of JSON-safe values (see :func:`jsonable`).

    Converted a column at a time: numbers and booleans without gaps come out of
    ``tolist`` as Python values already, so only other columns go cell by cell.
    """
    names = [str(c) for c in frame.columns]
    columns = []
    for i in range(frame.shape[1]):
        column = frame.iloc[:, i]
        values = column.tolist()
        if column.dtype.kind not in "iufb" or column.hasnans:
            values = [jsonable(v) for v in values]
        columns.append(values)
    return [dict(zip(names, row)) for row in zip(*columns)]


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

    def job(self, position: int, record: Mapping[str, Any], job_id: str) -> Job:
        """The job of one row; ``record`` holds the row's index values and columns."""
        params = {c: record[c] for c in self.columns} if self.template.function or self.varying else record
        argv = self.template.argv(record, params)
        changes = {"cmd": argv[0], "args": argv[1:], "id": job_id}
        for name, option in self.varying.items():
            value = per_row(option, params, self.columns)
            if value is not None:
                changes[name] = value
        try:
            job = self.base.with_changes(**changes)
        except InvalidJobError as exc:
            raise exc.at(position) from None
        if self.after and job.tube in self.after:
            raise GlowlabError(f"row {position}: tube {job.tube!r} cannot wait for itself; give "
                               "the later stage its own tube")
        return job


def _skip_done(journal: "Journal", rows: _Rows) -> tuple[list["RowRecord"], list[int]]:
    """Rows that already succeeded, pointed at their earlier job; and the positions to queue."""
    every = rows.at(range(len(rows.jobs)))
    done = journal.done_by_fingerprint(r.fingerprint for r in every)
    earlier = [r._replace(job_id=done[r.fingerprint]) for r in every if r.fingerprint in done]
    return earlier, [r.position for r in every if r.fingerprint not in done]
