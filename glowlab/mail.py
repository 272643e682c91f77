"""Failure mail: one message per address, sent off the job's path.

One background thread sends, so a refused, slow or silent SMTP server costs
at most its timeout per failure and never blocks or fails a job; what cannot
be sent is logged. A bounded backlog keeps a long outage from piling up.
"""

from __future__ import annotations

import logging
import queue
import smtplib
import threading
import time
from email.message import EmailMessage

from .job import Job
from .outcome import Outcome
from .settings import parse_address

log = logging.getLogger("glowlab")

SMTP_TIMEOUT = 10.0
BACKLOG = 100
"""Failures waiting to be mailed; beyond it, mail is dropped (and logged)."""


def failure_message(job: Job, outcome: Outcome, sender: str, recipient: str) -> EmailMessage:
    """The mail a final failure sends (pure: no network)."""
    msg = EmailMessage()
    msg["Subject"] = " ".join(f"FAILED: {outcome.command}".split())[:900]
    msg["From"] = sender
    msg["To"] = recipient
    exit_status = (f"killed by signal {outcome.signal}" if outcome.signal is not None
                   else "did not start" if outcome.exit_code is None and outcome.error
                   else str(outcome.exit_code))
    msg.set_content(
        f"Job {job.id} on tube {job.tube} failed.\n\n"
        f"command:     {outcome.command}\n"
        f"host:        {outcome.host}\n"
        f"listener:    {outcome.listener}\n"
        f"workdir:     {job.workdir}\n"
        f"attempt:     {outcome.attempt} of {job.retries + 1}\n"
        f"error:       {outcome.describe()}\n"
        f"exit status: {exit_status}\n"
        f"duration:    {outcome.seconds:.1f} s\n\n"
        f"--- stdout (last {len(outcome.stdout)} characters) ---\n{outcome.stdout}\n"
        f"--- stderr (last {len(outcome.stderr)} characters) ---\n{outcome.stderr}\n"
    )
    return msg


class Mailer:
    """Sends failure mail through ``server`` (``host:port``) from one background thread."""

    def __init__(self, server: str, sender: str, *, timeout: float = SMTP_TIMEOUT,
                 backlog: int = BACKLOG):
        self.host, self.port = parse_address(server, what="SMTP server")
        self.sender = sender
        self.timeout = timeout
        self._backlog: queue.Queue[list[EmailMessage] | None] = queue.Queue(backlog)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def send_failure(self, job: Job, outcome: Outcome) -> bool:
        """Queue the failure mail of ``job``; returns at once (False if nothing was queued)."""
        if not job.mailto:
            return False
        messages = [failure_message(job, outcome, self.sender, to) for to in job.mailto]
        try:
            self._backlog.put_nowait(messages)
        except queue.Full:
            log.warning("failure mail to %s dropped: %d mails are already waiting for %s:%s",
                        ", ".join(job.mailto), self._backlog.maxsize, self.host, self.port)
            return False
        self._start()
        return True

    def close(self, timeout: float | None = None) -> None:
        """Send what is waiting, for at most ``timeout`` seconds, then stop."""
        with self._lock:
            thread = self._thread
        if thread is None:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self._backlog.put(None, timeout=timeout)
        except queue.Full:
            pass
        # one deadline for both waits: room in the backlog, then the thread's end
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, daemon=True, name="mail")
                self._thread.start()

    def _work(self) -> None:
        while (messages := self._backlog.get()) is not None:
            self._send(messages)

    def _send(self, messages: list[EmailMessage]) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                for msg in messages:
                    self._send_one(smtp, msg)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("failure mail to %s via %s:%s not sent: %s", ", ".join(m["To"] for m in messages),
                        self.host, self.port, str(exc) or type(exc).__name__)

    def _send_one(self, smtp: smtplib.SMTP, msg: EmailMessage) -> None:
        try:
            smtp.send_message(msg)
            log.info("failure mail sent to %s", msg["To"])
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError) as exc:
            # one refused address must not cost the others their mail
            log.warning("failure mail to %s refused by %s:%s: %s", msg["To"], self.host, self.port, exc)
