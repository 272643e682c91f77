"""The outcome record: what happened when a listener ran a job once."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
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
    """One run of one job. ``error`` is set when the job could not start."""

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
        if self.signal is not None:
            return f"killed by signal {self.signal}"
        return f"exit status {self.exit_code}"

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["status"] = self.status.value
        record["seconds"] = round(self.seconds, 6)
        return record

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, body: bytes) -> "Outcome":
        record = json.loads(body)
        record.pop("seconds", None)
        record["status"] = Status(record["status"])
        return cls(**record)
