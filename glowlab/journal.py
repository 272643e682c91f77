"""The submitting side's durable memory: batches, their rows and every outcome.

SQLite under ``GLOWLAB_HOME`` (default ``./.glowlab``). Outcomes are written
here before they are deleted from beanstalkd; ``(job_id, attempt)`` is the key,
so a message delivered twice is stored once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from array import array
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

from .errors import ConfigurationError, GlowlabError
from .outcome import Outcome, Status

SCHEMA = """
-- Every read of rows is by batch (the primary key), joined to outcomes and starts by
-- their keys: an index on rows(job_id) would only slow the insert of a big sweep.
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY, name TEXT, command TEXT NOT NULL, address TEXT NOT NULL,
    results_tube TEXT NOT NULL, index_names TEXT NOT NULL, columns TEXT NOT NULL,
    created REAL NOT NULL, total INTEGER NOT NULL, bids BLOB
);
CREATE INDEX IF NOT EXISTS batches_name ON batches(name);
CREATE TABLE IF NOT EXISTS rows (
    batch_id TEXT NOT NULL, position INTEGER NOT NULL, job_id TEXT NOT NULL,
    beanstalkd_id INTEGER, tube TEXT NOT NULL, fingerprint TEXT NOT NULL, params TEXT NOT NULL,
    PRIMARY KEY (batch_id, position)
);
DROP INDEX IF EXISTS rows_job;
CREATE TABLE IF NOT EXISTS outcomes (
    job_id TEXT NOT NULL, attempt INTEGER NOT NULL, status TEXT NOT NULL, record TEXT NOT NULL,
    received REAL NOT NULL, PRIMARY KEY (job_id, attempt)
);
CREATE TABLE IF NOT EXISTS starts (
    job_id TEXT NOT NULL, attempt INTEGER NOT NULL, host TEXT, started REAL,
    PRIMARY KEY (job_id, attempt)
);
"""


@dataclass(frozen=True)
class BatchRecord:
    id: str
    name: str | None
    command: str
    address: str
    results_tube: str
    index_names: list[str | None]
    columns: list[str]
    created: float
    total: int


class RowRecord(NamedTuple):
    """One row of a batch: a tuple, as a sweep makes one per DataFrame row."""

    position: int
    job_id: str
    beanstalkd_id: int | None
    tube: str
    fingerprint: str
    params: dict[str, Any]


def default_path() -> str:
    home = os.environ.get("GLOWLAB_HOME") or ".glowlab"
    return os.path.join(home, "journal.sqlite")


class Journal:
    """A connection to the journal file (created on first use)."""

    def __init__(self, path: str | None = None):
        self.path = path or default_path()
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(
                f"cannot open the journal {self.path}: {exc}; set GLOWLAB_HOME to a writable folder"
            ) from None

    def close(self) -> None:
        self.db.close()

    # -- batches and rows ---------------------------------------------------
    def add_batch(self, batch: BatchRecord, rows: Sequence[RowRecord]) -> None:
        with self.adding(batch) as add_rows:
            add_rows(rows)

    @contextmanager
    def adding(self, batch: BatchRecord) -> Iterator[Callable[[Iterable[RowRecord]], None]]:
        """Record ``batch``; yields a function that adds its rows, written in one transaction.

        Committed even when the block fails: a sweep adds rows before it sends
        their jobs, so what may have been queued is never forgotten.
        """
        try:
            self.db.execute(
                "INSERT INTO batches VALUES (?,?,?,?,?,?,?,?,?,NULL)",
                (batch.id, batch.name, batch.command, batch.address, batch.results_tube,
                 json.dumps(batch.index_names), json.dumps(batch.columns), batch.created,
                 batch.total),
            )
            yield lambda rows: self._put_rows(batch.id, rows)
        finally:
            self.db.commit()

    def set_bids(self, batch_id: str, bids: Sequence[int]) -> None:
        """beanstalkd ids of the rows as first queued, by position (0: not queued), in one write."""
        with self.db:
            self.db.execute("UPDATE batches SET bids = ? WHERE id = ?",
                            (array("Q", bids).tobytes(), batch_id))

    def replace_rows(self, batch_id: str, rows: Sequence[RowRecord]) -> None:
        """Point rows at new jobs (after a retry)."""
        with self.db:
            self._put_rows(batch_id, rows)

    def _put_rows(self, batch_id: str, rows: Iterable[RowRecord]) -> None:
        dumps = json.dumps
        self.db.executemany(
            "INSERT OR REPLACE INTO rows VALUES (?,?,?,?,?,?,?)",
            ((batch_id, position, job_id, bid, tube, fp, dumps(params))
             for position, job_id, bid, tube, fp, params in rows),
        )

    def batch(self, id_or_name: str) -> BatchRecord:
        row = self.db.execute(
            "SELECT * FROM batches WHERE id = ? OR name = ? ORDER BY created DESC LIMIT 1",
            (id_or_name, id_or_name),
        ).fetchone()
        if row is None:
            raise GlowlabError(f"no batch {id_or_name!r} in the journal {self.path}; journals are "
                               "kept per folder: run where the sweep ran, or set GLOWLAB_HOME "
                               "(glowlab.batches() lists a journal's batches)")
        return BatchRecord(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]),
                           json.loads(row[6]), row[7], row[8])

    def batches(self) -> list[tuple]:
        return self.db.execute(
            "SELECT id, name, command, address, created, total FROM batches ORDER BY created"
        ).fetchall()

    def rows(self, batch_id: str) -> list[RowRecord]:
        blob = self.db.execute("SELECT bids FROM batches WHERE id = ?", (batch_id,)).fetchone()
        first = array("Q", blob[0]) if blob and blob[0] else array("Q")
        found = self.db.execute(
            "SELECT position, job_id, beanstalkd_id, tube, fingerprint, params FROM rows "
            "WHERE batch_id = ? ORDER BY position", (batch_id,)).fetchall()
        return [
            RowRecord(position, job_id,
                      bid if bid is not None else (first[position] or None if position < len(first) else None),
                      tube, fp, params)
            for (position, job_id, bid, tube, fp, _), params in zip(found, _decode_all(r[5] for r in found))
        ]

    # -- outcomes -----------------------------------------------------------
    def add_outcomes(self, outcomes: Iterable[Outcome]) -> int:
        """Store outcomes; returns how many were new (duplicates are ignored)."""
        return self._insert_outcomes((o.job_id, o.attempt, o.status.value, o.encode().decode())
                                     for o in outcomes)

    def add_received(self, messages: Iterable[tuple[dict[str, Any], bytes]]) -> int:
        """Store outcome messages from a results tube, each decoded and as received.

        The body is stored as it came: decoding it into an :class:`Outcome` and
        encoding it again was most of a collector's time.
        """
        return self._insert_outcomes((m["job_id"], int(m["attempt"]), Status(m["status"]).value,
                                      body.decode()) for m, body in messages)

    def _insert_outcomes(self, records: Iterable[tuple[str, int, str, str]]) -> int:
        now = time.time()
        with self.db:
            before = self.db.total_changes
            self.db.executemany("INSERT OR IGNORE INTO outcomes VALUES (?,?,?,?,?)",
                                (record + (now,) for record in records))
            return self.db.total_changes - before

    def add_starts(self, starts: Iterable[tuple[str, int, str, float]]) -> None:
        with self.db:
            self.db.executemany("INSERT OR IGNORE INTO starts VALUES (?,?,?,?)", starts)

    def latest_outcomes(self, batch_id: str) -> dict[str, Outcome]:
        """The last attempt's outcome of each current job of the batch."""
        found = self.db.execute(
            "SELECT o.job_id, o.record FROM outcomes o JOIN rows r ON r.job_id = o.job_id "
            "WHERE r.batch_id = ? ORDER BY o.attempt", (batch_id,)).fetchall()
        # later attempts come later, and replace earlier ones
        return {job_id: Outcome.from_record(record)
                for (job_id, _), record in zip(found, _decode_all(r[1] for r in found))}

    def status_counts(self, batch_id: str) -> dict[str, int]:
        """Rows per final status, plus ``running`` (started, no outcome yet); in SQL, for speed."""
        counts = dict(self.db.execute(
            "SELECT status, COUNT(*) FROM (SELECT o.status AS status, MAX(o.attempt) "
            "FROM outcomes o JOIN rows r ON r.job_id = o.job_id WHERE r.batch_id = ? "
            "GROUP BY o.job_id) GROUP BY status", (batch_id,)).fetchall())
        (counts["running"],) = self.db.execute(
            "SELECT COUNT(DISTINCT s.job_id) FROM starts s JOIN rows r ON r.job_id = s.job_id "
            "WHERE r.batch_id = ? AND NOT EXISTS (SELECT 1 FROM outcomes o WHERE o.job_id = s.job_id)",
            (batch_id,)).fetchone()
        return counts

    def started(self, batch_id: str) -> set[str]:
        return {job_id for (job_id,) in self.db.execute(
            "SELECT DISTINCT s.job_id FROM starts s JOIN rows r ON r.job_id = s.job_id "
            "WHERE r.batch_id = ?", (batch_id,))}

    def done_by_fingerprint(self, fingerprints: Iterable[str]) -> dict[str, str]:
        """fingerprint -> job id of a successful earlier run, for ``skip_done``."""
        found = {}
        for fp, job_id in self.db.execute(
            "SELECT r.fingerprint, r.job_id FROM rows r JOIN outcomes o ON o.job_id = r.job_id "
            "WHERE o.status = 'done'"):
            found[fp] = job_id
        wanted = set(fingerprints)
        return {fp: job for fp, job in found.items() if fp in wanted}


def _decode_all(texts: Iterable[str]) -> list[Any]:
    """Many JSON texts decoded in one call: for small records the call costs more than the work."""
    return json.loads("[" + ",".join(texts) + "]")
