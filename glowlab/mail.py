"""Failure mail: one message per address, sent off the job's path.

A refused, slow or silent SMTP server is logged and forgotten: mail never
blocks or fails a job.
"""

from __future__ import annotations

import logging
import smtplib
import threading
from email.message import EmailMessage

from .job import Job
from .outcome import Outcome
from .settings import parse_address

log = logging.getLogger("glowlab")

SMTP_TIMEOUT = 10.0


def failure_message(job: Job, outcome: Outcome, sender: str, recipient: str) -> EmailMessage:
    """The mail a final failure sends (pure: no network)."""
    msg = EmailMessage()
    msg["Subject"] = f"FAILED: {outcome.command}"[:900]
    msg["From"] = sender
    msg["To"] = recipient
    msg.set_content(
        f"Job {job.id} on tube {job.tube} failed.\n\n"
        f"command:  {outcome.command}\n"
        f"host:     {outcome.host}\n"
        f"listener: {outcome.listener}\n"
        f"attempt:  {outcome.attempt}\n"
        f"status:   {outcome.describe()}\n"
        f"workdir:  {job.workdir}\n\n"
        f"--- stdout (last part) ---\n{outcome.stdout}\n"
        f"--- stderr (last part) ---\n{outcome.stderr}\n"
    )
    return msg


class Mailer:
    """Sends failure mail through ``server`` (``host:port``) in the background."""

    def __init__(self, server: str, sender: str, *, timeout: float = SMTP_TIMEOUT):
        self.host, self.port = parse_address(server, what="SMTP server")
        self.sender = sender
        self.timeout = timeout

    def send_failure(self, job: Job, outcome: Outcome) -> threading.Thread | None:
        """Start sending; returns the thread (tests may join it) or None if no mailto."""
        if not job.mailto:
            return None
        messages = [failure_message(job, outcome, self.sender, to) for to in job.mailto]
        thread = threading.Thread(target=self._send, args=(messages,), daemon=True,
                                  name=f"mail-{job.id}")
        thread.start()
        return thread

    def _send(self, messages: list[EmailMessage]) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                for msg in messages:
                    smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("failure mail to %s via %s:%s not sent: %s",
                        ", ".join(m["To"] for m in messages), self.host, self.port, exc)
