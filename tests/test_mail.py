"""Failure mail: a real SMTP server (aiosmtpd) on loopback, real listeners and jobs; and SMTP
servers that refuse, stay silent or are not there, which must never hurt a job."""

from __future__ import annotations

import email
import email.policy
import logging
import socket
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Iterator

import pytest
from aiosmtpd.controller import Controller

from glowlab.cluster import Beanstalkd, free_port
from glowlab.job import Job
from glowlab.mail import Mailer, failure_message
from glowlab.outcome import Outcome, Status
from glowlab.queue import Queue

from conftest import glowlab_env, tube_counts, tube_empty
from listening import Start, errors, log_of, sh, wait_job


@pytest.fixture
def server(own_server: Beanstalkd) -> Beanstalkd:
    return own_server


class Inbox:
    """An aiosmtpd handler keeping what it receives; it refuses addresses starting with 'nobody'."""

    def __init__(self) -> None:
        self.mails: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("nobody"):
            return "550 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted"


@pytest.fixture
def smtp() -> Iterator[tuple[str, Inbox]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield f"127.0.0.1:{controller.port}", inbox
    controller.stop()


def failing(tube: str, **fields) -> Job:
    return sh("echo progress-so-far; echo it broke >&2; exit 3", tube, **fields)


def test_the_failure_mail_says_what_failed_where_and_how() -> None:
    job = failing("sims", mailto=("a@example.org",), retries=1)
    outcome = Outcome(job_id=job.id, tube="sims", command=job.command_line, status=Status.FAILED,
                      exit_code=3, started=10.0, finished=12.5, host="node7", listener="node7:42",
                      attempt=2, stdout="progress-so-far\n", stderr="it broke\n")
    msg = failure_message(job, outcome, "glow@example.com", "a@example.org")
    assert msg["Subject"] == f"FAILED: {job.command_line}"
    assert (msg["From"], msg["To"]) == ("glow@example.com", "a@example.org")
    body = msg.get_content()
    for text in ("host:        node7", "error:       exit status 3", "exit status: 3",
                 "attempt:     2 of 2", "duration:    2.5 s", "progress-so-far", "it broke"):
        assert text in body


def test_a_final_failure_mails_each_address_once(start_listener: Start, address: str, queue: Queue,
                                                 tube: str, smtp: tuple[str, Inbox]) -> None:
    smtp_address, inbox = smtp
    env = {**glowlab_env(address), "GLOW_SMTP_SERVER": smtp_address, "GLOW_MAIL_FROM": "lab@example.org"}
    listener = start_listener("--retry-base", "0", env=env)
    job = failing(tube, mailto=("ada@example.org", "nobody@example.org", "bob@example.org"), retries=1)
    queue.submit_many([job, Job(cmd="true", tube=tube, mailto=("ada@example.org",))])
    errors(queue, 1, proc=listener)
    wait_job(lambda: len(inbox.mails) >= 2, listener, "two mails")
    assert sorted(rcpt for _, (rcpt,), _ in inbox.mails) == ["ada@example.org", "bob@example.org"]
    for sender, _, msg in inbox.mails:
        assert sender == "lab@example.org"
        assert msg["Subject"] == f"FAILED: {job.command_line}"
        body = msg.get_content()
        assert "exit status: 3" in body and "it broke" in body and "progress-so-far" in body
        assert "attempt:     2 of 2" in body, "only the final failure is mailed"
    wait_job(lambda: "refused" in log_of(listener), listener, "the refused address to be logged")
    assert len(inbox.mails) == 2


def test_a_missing_mail_server_does_not_hurt_jobs(start_listener: Start, queue: Queue, tube: str,
                                                  tmp_path: Path) -> None:
    closed = f"127.0.0.1:{free_port()}"
    listener = start_listener("--smtp-server", closed)
    queue.submit(failing(tube, mailto=("ada@example.org",)))
    queue.submit(Job(cmd="touch", args=(str(tmp_path / "next"),), tube=tube, pri=1))
    (report,) = errors(queue, 1, proc=listener)
    assert report["error"] == "exit status 3"
    wait_job((tmp_path / "next").exists, listener, "the next job")
    wait_job(lambda: "not sent" in log_of(listener), listener, "the mail failure in the log")
    assert tube_counts(queue, tube)["buried"] == 1 and tube_empty(queue, tube)
    assert listener.poll() is None


def test_a_silent_mail_server_costs_a_timeout_in_the_background(caplog: pytest.LogCaptureFixture) -> None:
    job = failing("sims", mailto=("ada@example.org",))
    outcome = Outcome(job_id=job.id, tube="sims", command=job.command_line, status=Status.FAILED,
                      exit_code=3)
    with socket.socket() as silent:  # accepts connections (the kernel does), never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        mailer = Mailer(f"127.0.0.1:{silent.getsockname()[1]}", "glow@example.com", timeout=0.5)
        with caplog.at_level(logging.WARNING, logger="glowlab"):
            started = time.monotonic()
            assert mailer.send_failure(job, outcome)
            assert time.monotonic() - started < 0.2, "sending must not block the job's path"
            mailer.close(timeout=5)
    assert time.monotonic() - started < 3
    assert "not sent" in caplog.text and "timed out" in caplog.text


def test_a_full_backlog_drops_mail_instead_of_piling_up(caplog: pytest.LogCaptureFixture) -> None:
    job = failing("sims", mailto=("ada@example.org",))
    outcome = Outcome(job_id=job.id, tube="sims", command=job.command_line, status=Status.FAILED)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        mailer = Mailer(f"127.0.0.1:{silent.getsockname()[1]}", "glow@example.com", timeout=0.3,
                        backlog=2)
        with caplog.at_level(logging.WARNING, logger="glowlab"):
            sent = [mailer.send_failure(job, outcome) for _ in range(6)]
            mailer.close(timeout=5)
    assert sent.count(False) >= 3 and "dropped" in caplog.text


def test_close_waits_at_most_its_timeout_even_with_a_full_backlog() -> None:
    job = failing("sims", mailto=("ada@example.org",))
    outcome = Outcome(job_id=job.id, tube="sims", command=job.command_line, status=Status.FAILED)
    with socket.socket() as silent:  # the first mail hangs for the SMTP timeout; the rest wait
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        mailer = Mailer(f"127.0.0.1:{silent.getsockname()[1]}", "glow@example.com", timeout=10,
                        backlog=2)
        for _ in range(3):
            mailer.send_failure(job, outcome)
        started = time.monotonic()
        mailer.close(timeout=1)
        assert time.monotonic() - started < 1.5, "one deadline covers the backlog and the thread"
