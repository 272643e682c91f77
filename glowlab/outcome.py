"""The outcome record: what happened when a listener ran a job once.

Also the GLOW_ERRORS report built from it. Pure: nothing here touches a
socket or a process.
"""

from __future__ import annotations

import json
import signal as _signal
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any


class Status(str, Enum):
    """The state of a job as a user sees it."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    """Stopped by its listener's shutdown and handed back to the queue."""


@dataclass(frozen=True)
class Outcome:
    """One run of one job. ``error`` is set when the job could not start, or
    could not write its output (with the operating system's reason).

    ``stdout`` and ``stderr`` hold the last 16 KiB the process wrote to each
    pipe; ``attempt`` counts runs of this job (1 for the first).
    """

    job_id: str
    tube: str
    command: str
    status: Status
    exit_code: int | None = None
    signal: int | None = None
    started: float = 0.0
    finished: float = 0.0
    host: str = ""
    listener: str = ""
    attempt: int = 1
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    permanent: bool = False
    """True when retrying cannot help (missing executable, malformed body)."""
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return max(0.0, self.finished - self.started)

    @property
    def ok(self) -> bool:
        return self.status is Status.DONE

    def describe(self) -> str:
        """One line for logs and mail: how the job ended."""
        if self.error:
            return self.error
        if self.status is Status.TIMEOUT:
            return f"timed out after {self.seconds:.1f} s"
        if self.status is Status.INTERRUPTED:
            return "stopped by its listener and handed back"
        if self.signal is not None:
            return f"killed by signal {self.signal} ({signal_name(self.signal)})"
        return f"exit status {self.exit_code}"

    def to_dict(self) -> dict[str, Any]:
        record = dict(vars(self))  # not asdict(): its deep copy was most of a collector's time
        record["status"] = self.status.value
        record["seconds"] = round(self.seconds, 6)
        return record

    def encode(self, limit: int | None = None) -> bytes:
        """Compact JSON; with ``limit``, output tails are shortened until it fits."""
        return _fit(self.to_dict(), limit)

    @classmethod
    def decode(cls, body: bytes | str) -> "Outcome":
        return cls.from_record(json.loads(body))

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Outcome":
        """The outcome in a decoded message (changed in place: it is the caller's to give)."""
        record.pop("seconds", None)  # derived from started and finished
        record["status"] = Status(record["status"])
        return cls(**record)

    def with_changes(self, **changes: Any) -> "Outcome":
        return replace(self, **changes)


def signal_name(number: int) -> str:
    try:
        return _signal.Signals(number).name
    except ValueError:
        return "unknown signal"


# -- GLOW_ERRORS ------------------------------------------------------------------
def error_report(outcome: Outcome, limit: int | None = None) -> bytes:
    """The GLOW_ERRORS message for a final failure: glow's ``cmd``, ``error``, ``log``
    fields, then the whole outcome record."""
    log = outcome.stderr if outcome.stderr.strip() else outcome.stdout
    report = {"cmd": outcome.command, "error": outcome.describe(), "log": log,
              **{k: v for k, v in outcome.to_dict().items() if k != "error"}}
    return _fit(report, limit)


def malformed_report(body: bytes, reason: str, *, beanstalkd_id: int, tube: str, host: str,
                     listener: str, limit: int | None = None) -> bytes:
    """The GLOW_ERRORS message for a body that is not a valid job (it was never run)."""
    report = {"cmd": "", "error": f"malformed job: {reason}",
              "log": body.decode("utf-8", errors="replace"), "status": Status.FAILED.value,
              "beanstalkd_id": beanstalkd_id, "tube": tube, "host": host, "listener": listener}
    return _fit(report, limit)


_SHRINKABLE = ("log", "stdout", "stderr")


def _fit(record: dict[str, Any], limit: int | None) -> bytes:
    """Encode ``record``; over ``limit`` bytes, keep ever shorter tails of the text fields."""
    body = _dumps(record)
    while limit is not None and len(body) > limit:
        longest = max(_SHRINKABLE, key=lambda k: len(record.get(k) or ""))
        text = record.get(longest) or ""
        if not text:
            break  # nothing left to shorten; the caller's put reports the size
        # each character takes at least one byte, so dropping `excess` of them is enough
        excess = len(body) - limit
        record = {**record, longest: text[min(len(text), excess):]}
        body = _dumps(record)
    return body


def _dumps(record: dict[str, Any]) -> bytes:
    # ensure_ascii=False: an escaped non-ASCII tail can be six times its size
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
