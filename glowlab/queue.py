"""The one place that speaks beanstalkd.

greenstalk does the protocol; the pipelined batch ``put`` (many commands
written before their replies are read) is ours, on a connection of its own.
Every socket operation has a timeout and every failure becomes a
:class:`~glowlab.errors.GlowlabError` that names the address.
"""

from __future__ import annotations

import select
import socket
from typing import TYPE_CHECKING, Any, Callable, Iterable, NamedTuple, Sequence

import greenstalk

from .errors import InvalidJobError, QueueError, QueueUnreachableError
from .job import Job, check_tube, gc_paused
from .settings import Settings, parse_address

if TYPE_CHECKING:
    from .signing import Keyring

IO_TIMEOUT = 10.0
"""Seconds any one reply may take (a reserve waits this much beyond its own timeout)."""

IDLE_TUBE = "glowlab.idle"
"""Watched when there is nothing to watch; the ``glowlab.`` prefix keeps listeners from running it."""

_WINDOW = 512
"""Puts written before their replies are read (two windows at most are in flight);
small enough that neither side's buffers fill."""


class Reserved(NamedTuple):
    """A job reserved by this connection: beanstalkd's id and the raw body."""

    id: int
    body: bytes


def connect(address: str | None = None) -> "Queue":
    """A connection to the beanstalkd at ``address`` (default ``GLOW_QUEUE``).

    Jobs it submits are signed when ``GLOW_SECRET`` or ``GLOW_SECRET_FILE`` is set.
    """
    settings = Settings.from_env()
    return Queue(address or settings.queue, keyring=settings.keyring())


def unreachable(address: str, reason: object) -> QueueUnreachableError:
    return QueueUnreachableError(
        f"cannot reach beanstalkd at {address} ({reason}); start it with "
        f"'beanstalkd -l 127.0.0.1 -p PORT', or run 'glowlab up' and set GLOW_QUEUE as it says"
    )


class Queue:
    """A beanstalkd connection with glowlab's vocabulary: submit, reserve, settle."""

    def __init__(self, address: str, *, timeout: float = IO_TIMEOUT, keyring: "Keyring | None" = None):
        self.address = address
        self.keyring = keyring
        self._host, self._port = parse_address(address, what="queue address")
        self._timeout = timeout
        self._client: greenstalk.Client[bytes] | None = None
        self._batch: _Pipeline | None = None
        self._max_job_size: int | None = None
        self._watching: set[str] = {"default"}
        self._watch_asked: object = None
        self._sock_timeout = timeout

    # -- connection ---------------------------------------------------------
    def _socket(self) -> socket.socket:
        # an ASCII host as bytes: a str would load the idna codec, a few ms of every start-up
        host = self._host.encode() if self._host.isascii() else self._host
        try:
            sock = socket.create_connection((host, self._port), timeout=self._timeout)
        except OSError as exc:
            raise unreachable(self.address, exc.strerror or exc) from None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    @property
    def client(self) -> "greenstalk.Client[bytes]":
        if self._client is None:
            self._client = greenstalk.Client(self._socket(), encoding=None)
            self._watching = {"default"}
            self._watch_asked = None
            self._sock_timeout = self._timeout
        return self._client

    def is_open(self) -> bool:
        """False once the server has closed the main connection (a restart, a crash).

        Checked locally, nothing is sent: beanstalkd never speaks unasked, so a
        readable idle socket means end-of-file (or a reply out of step: as bad).
        """
        if self._client is None:
            return False
        try:
            readable, _, _ = select.select([self._client._sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def close(self) -> None:
        """Close both connections; reserved jobs return to ready."""
        for conn in (self._client, self._batch):
            if conn is not None:
                try:
                    conn.close()
                except OSError:
                    pass
        self._client = self._batch = None
        self._watch_asked = None

    def __enter__(self) -> "Queue":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, *args: Any, wait: float = 0.0, timeout: float | None = None) -> Any:
        """Run one greenstalk call, mapping socket failures to our errors.

        ``timeout`` replaces the usual reply timeout for this one call."""
        client = self.client
        try:
            self._set_timeout(client, (self._timeout if timeout is None else timeout) + wait)
            return getattr(client, method)(*args)
        except greenstalk.TimedOutError:
            raise
        except greenstalk.NotFoundError:
            raise
        except (OSError, greenstalk.UnknownResponseError, AssertionError) as exc:
            self.close()
            raise unreachable(self.address, exc) from None
        except greenstalk.BeanstalkdError as exc:
            raise QueueError(f"beanstalkd at {self.address} refused {method}: {type(exc).__name__}") from None

    def _set_timeout(self, client: "greenstalk.Client[bytes]", seconds: float) -> None:
        if seconds != self._sock_timeout:  # settimeout is a system call: only when it changes
            client._sock.settimeout(seconds)
            self._sock_timeout = seconds

    # -- submitting ---------------------------------------------------------
    @property
    def max_job_size(self) -> int:
        """The server's ``max-job-size`` in bytes (asked once)."""
        if self._max_job_size is None:  # asked on the connection that puts: one connection per submit
            self._max_job_size = int(self._piped("stats")["max-job-size"])
        return self._max_job_size

    def submit(self, job: Job) -> Job:
        """Queue one job; returns it (its ``id`` is the one to track)."""
        return self.submit_many([job])[0]

    def submit_many(
        self, jobs: Iterable[Job], *, progress: Callable[[int], None] | None = None
    ) -> list[Job]:
        """Queue many jobs in pipelined windows; nothing is sent if any is invalid.

        Sizes are checked first (cheaply: see :meth:`Job.size_bound`); bodies are
        encoded a window at a time while beanstalkd takes in the window before.
        """
        with gc_paused():  # many small objects, no cycles
            jobs = list(jobs)
            self.check_sizes(jobs)
            bodies: list[bytes] = []
            self.put_bodies([(j.tube, j.pri, j.delay, j.ttr) for j in jobs], bodies, progress=progress,
                            prepare=lambda w: bodies.extend(j.encode(self.keyring) for j in jobs[w.start:w.stop]))
        return jobs

    def check_sizes(self, jobs: Sequence[Job]) -> None:
        """Raise if a body of ``jobs`` is over the server's size limit; only bodies
        that might be are encoded to find out."""
        limit = self.max_job_size if jobs else 0
        for index, job in enumerate(jobs):
            if job.size_bound() > limit:
                self._check_size(job.encode(self.keyring), limit, index, len(jobs))

    def encode_all(self, jobs: Sequence[Job]) -> list[bytes]:
        """Bodies of ``jobs``, each checked against the server's size limit."""
        limit = self.max_job_size if jobs else 0
        bodies = [job.encode(self.keyring) for job in jobs]
        for index, body in enumerate(bodies):
            self._check_size(body, limit, index, len(jobs))
        return bodies

    @staticmethod
    def _check_size(body: bytes, limit: int, index: int, count: int) -> None:
        if len(body) > limit:
            raise InvalidJobError(
                f"body is {len(body)} bytes, over the server's max-job-size of {limit}; "
                "pass large data through files, or start beanstalkd with a larger -z",
                field="body",
                index=index if count > 1 else None,
            )

    def put_bodies(
        self,
        heads: Sequence[tuple[str, int, int, int]],
        bodies: Sequence[bytes],
        *,
        progress: Callable[[int], None] | None = None,
        prepare: Callable[[range], None] | None = None,
    ) -> list[int]:
        """Put raw bodies with (tube, pri, delay, ttr) heads; returns beanstalkd ids.

        ``prepare(window)`` is called with each window of indices just before it
        is sent, while beanstalkd still works on the window before: work done
        there (encoding those bodies, a journal's rows) costs no time of its own.
        ``bodies`` is read window by window, so ``prepare`` may fill it.
        """
        return self._piped("put", heads, bodies, progress, prepare)

    def take(self, tube: str, *, limit: int = _WINDOW, wait: int = 0) -> list[Reserved]:
        """Reserve up to ``limit`` jobs of ``tube`` at once, waiting up to ``wait`` s for the first.

        Used by collectors of result tubes; settle them with :meth:`delete_many`.
        """
        return self._piped("take", tube, limit, wait)

    def delete_many(self, ids: Sequence[int]) -> None:
        """Delete jobs reserved by :meth:`take` (pipelined)."""
        self._piped("delete", ids)

    def _piped(self, method: str, *args: Any) -> Any:
        if self._batch is None:
            self._batch = _Pipeline(self._socket(), self.address)
        try:
            return getattr(self._batch, method)(*args)
        except OSError as exc:
            self.close()
            raise unreachable(self.address, exc) from None
        except BaseException:  # a refusal, or an error in ``prepare``, or Ctrl-C
            self._batch.close()  # replies still in flight would be read out of step
            self._batch = None
            raise

    def put(self, tube: str, body: bytes, *, pri: int = 0, delay: int = 0, ttr: int = 60) -> int:
        """Put one raw body (messages such as GLOW_ERRORS reports)."""
        check_tube(tube)
        return self.put_bodies([(tube, pri, delay, ttr)], [body])[0]

    # -- reserving and settling --------------------------------------------
    def watch_only(self, tubes: Iterable[str]) -> None:
        """Make the watch list exactly ``tubes``; none means a tube nobody fills.

        beanstalkd keeps at least one watched tube; falling back to ``default``
        would run jobs of a tube the caller had excluded. The very object given
        last time (which must not have been changed since) costs nothing: a
        listener asks before every job, with a thousand tubes.
        """
        if tubes is self._watch_asked:
            return
        wanted = set(tubes) or {IDLE_TUBE}
        self.client
        for tube in sorted(wanted - self._watching):
            self._call("watch", tube)
        for tube in sorted(self._watching - wanted):
            self._call("ignore", tube)
        self._watching = wanted
        self._watch_asked = tubes

    def reserve(self, timeout: int) -> Reserved | None:
        """Wait up to ``timeout`` seconds for a job from the watched tubes."""
        return self._reserve(timeout)[1]

    def delete_and_reserve(self, job_id: int, timeout: int) -> tuple[bool, Reserved | None]:
        """Delete a finished job and wait up to ``timeout`` s for the next, in one round trip.

        Returns whether the delete found the job (see :meth:`delete`) and the job
        reserved, or None. Both commands are written at once; beanstalkd answers
        the delete at once and the reserve when it has a job.
        """
        return self._reserve(timeout, delete=job_id)

    def _reserve(self, timeout: int, *, delete: int | None = None) -> tuple[bool, Reserved | None]:
        """``reserve-with-timeout``, after a ``delete`` when given (whose answer comes first)."""
        client = self.client
        try:
            self._set_timeout(client, self._timeout + timeout)
            command = b"reserve-with-timeout %d\r\n" % timeout
            if delete is not None:
                command = b"delete %d\r\n" % delete + command
            client._sock.sendall(command)
            deleted = delete is not None and _reply(client._reader.readline(),
                                                    {b"DELETED": True, b"NOT_FOUND": False})
            head = client._reader.readline()
            if not _reply(head, {b"RESERVED": True, b"TIMED_OUT": False, b"DEADLINE_SOON": False}):
                return deleted, None
            _, reserved_id, size = head.split()
            body = client._reader.read(int(size) + 2)
            if len(body) != int(size) + 2 or not body.endswith(b"\r\n"):
                raise OSError("connection closed in the middle of a job body")
        except (OSError, ValueError) as exc:
            self.close()
            raise unreachable(self.address, exc) from None
        return deleted, Reserved(int(reserved_id), body[:-2])

    def delete(self, job_id: int) -> bool:
        """Delete a job; False when it no longer exists (or is not ours)."""
        return self._settle("delete", job_id)

    def release(self, job_id: int, pri: int, delay: int = 0) -> bool:
        return self._settle("release", greenstalk.Job(job_id, b""), pri, delay)

    def bury(self, job_id: int, pri: int) -> bool:
        return self._settle("bury", greenstalk.Job(job_id, b""), pri)

    def touch(self, job_id: int, *, timeout: float | None = None) -> bool:
        """Renew a reservation; ``timeout`` bounds the wait for the reply (a TTR is short)."""
        return self._settle("touch", greenstalk.Job(job_id, b""), timeout=timeout)

    def _settle(self, method: str, *args: Any, timeout: float | None = None) -> bool:
        try:
            self._call(method, *args, timeout=timeout)
        except greenstalk.NotFoundError:
            return False
        return True

    # -- looking ------------------------------------------------------------
    def tubes(self) -> list[str]:
        return [t for t in self._call("tubes")]

    def stats(self) -> dict[str, Any]:
        return dict(self._call("stats"))

    def stats_tube(self, tube: str) -> dict[str, Any] | None:
        try:
            return dict(self._call("stats_tube", tube))
        except greenstalk.NotFoundError:
            return None

    def stats_job(self, job_id: int) -> dict[str, Any] | None:
        try:
            return dict(self._call("stats_job", job_id))
        except greenstalk.NotFoundError:
            return None

    def peek_body(self, job_id: int) -> bytes | None:
        """The body of job ``job_id`` whatever its state, or None if it is gone."""
        try:
            return self._call("peek", job_id).body
        except greenstalk.NotFoundError:
            return None

    def pause_tube(self, tube: str, seconds: int) -> bool:
        """Stop reservations from ``tube`` for ``seconds`` (0 resumes); False if no such tube."""
        return self._settle("pause_tube", check_tube(tube), seconds)

    # -- operating (glowlab stats, drain, kick, peek, errors) ------------------
    def peek_ready(self, tube: str) -> Reserved | None:
        """The job of ``tube`` a listener would reserve next, or None (not reserved)."""
        return self._peek("peek_ready", tube)

    def peek_delayed(self, tube: str) -> Reserved | None:
        """The delayed job of ``tube`` that becomes ready first, or None."""
        return self._peek("peek_delayed", tube)

    def peek_buried(self, tube: str) -> Reserved | None:
        """The oldest buried job of ``tube``, or None."""
        return self._peek("peek_buried", tube)

    def _peek(self, method: str, tube: str) -> Reserved | None:
        self._call("use", check_tube(tube))  # peek-* and kick act on the used tube
        try:
            job = self._call(method)
        except greenstalk.NotFoundError:
            return None
        return Reserved(job.id, job.body)

    def reserve_job(self, job_id: int) -> Reserved | None:
        """Reserve job ``job_id`` (ready, delayed or buried); None if gone or reserved elsewhere."""
        try:
            job = self._call("reserve_job", job_id)
        except greenstalk.NotFoundError:
            return None
        return Reserved(job.id, job.body)

    def kick(self, tube: str, bound: int) -> int:
        """Kick up to ``bound`` buried jobs of ``tube`` (delayed ones if none is buried)."""
        self._call("use", check_tube(tube))
        return int(self._call("kick", bound))

    def kick_job(self, job_id: int) -> bool:
        """Make one buried or delayed job ready; False if it is in neither state."""
        return self._settle("kick_job", job_id)


def _reply(line: bytes, expected: dict[bytes, Any]) -> Any:
    """What a reply line of one of the ``expected`` kinds stands for; anything else
    (an error, end of file) breaks the connection's step with the server."""
    kind = line.split(b" ", 1)[0].rstrip(b"\r\n")
    if kind not in expected or not line.endswith(b"\r\n"):
        raise OSError(f"unexpected reply {line[:60]!r}" if line else "connection closed")
    return expected[kind]


class _Pipeline:
    """A raw connection that writes ``put`` commands in windows, then reads replies."""

    def __init__(self, sock: socket.socket, address: str):
        self._sock = sock
        self._reader = sock.makefile("rb")
        self._address = address
        self._tube = "default"
        self._watched = "default"

    def close(self) -> None:
        self._reader.close()
        self._sock.close()

    def put(self, heads, bodies, progress, prepare) -> list[int]:
        # Two windows in flight: beanstalkd works on one while we prepare, send or read another.
        ids: list[int] = []
        in_flight: list[int] = []  # replies awaited, per window
        for start in range(0, len(heads), _WINDOW):
            window = range(start, min(start + _WINDOW, len(heads)))
            if prepare:
                prepare(window)
            in_flight.append(self._send(heads, bodies, window) + len(window))
            if len(in_flight) == 2:
                self._collect(in_flight.pop(0), ids, progress)
        for replies in in_flight:
            self._collect(replies, ids, progress)
        return ids

    def _collect(self, replies: int, ids: list[int], progress) -> None:
        ids.extend(self._inserted(replies, done=len(ids)))
        if progress:
            progress(len(ids))

    def _send(self, heads, bodies, window: range) -> int:
        """Write the puts of ``window``; returns how many ``use`` commands went with them."""
        out = bytearray()
        uses = 0
        for i in window:
            tube, pri, delay, ttr = heads[i]
            if tube != self._tube:
                out += b"use %b\r\n" % tube.encode()
                self._tube = tube
                uses += 1
            out += b"put %d %d %d %d\r\n%b\r\n" % (pri, delay, ttr, len(bodies[i]), bodies[i])
        self._sock.sendall(out)
        return uses

    def _inserted(self, replies: int, done: int) -> list[int]:
        """Read ``replies`` replies to puts and uses; the ids of the jobs inserted."""
        ids = []
        for _ in range(replies):
            status, *values = self._reader.readline().split() or [b""]
            if status == b"INSERTED":
                ids.append(int(values[0]))
            elif status != b"USING":
                raise self._refused(status, done + len(ids))
        return ids

    def stats(self) -> dict[str, str]:
        """The server's ``stats`` (values as text)."""
        self._sock.sendall(b"stats\r\n")
        line = self._reader.readline()
        self._expect(line, b"OK")
        text = self._reader.read(int(line.split()[1]) + 2).decode()
        return dict(item.split(": ", 1) for item in text.splitlines() if ": " in item)

    def take(self, tube: str, limit: int, wait: int) -> list[Reserved]:
        if tube != self._watched:
            self._sock.sendall(b"watch %b\r\nignore %b\r\n" % (tube.encode(), self._watched.encode()))
            for _ in range(2):
                self._expect(self._reader.readline(), b"WATCHING")
            self._watched = tube
        self._sock.settimeout(IO_TIMEOUT + wait)
        self._sock.sendall(b"reserve-with-timeout %d\r\n" % wait)
        first = self._reserved()
        self._sock.settimeout(IO_TIMEOUT)
        if first is None:
            return []
        self._sock.sendall(b"reserve-with-timeout 0\r\n" * (limit - 1))
        taken = [first] + [self._reserved() for _ in range(limit - 1)]
        return [r for r in taken if r is not None]

    def _reserved(self) -> Reserved | None:
        line = self._reader.readline()
        status, *values = line.split()
        if status in (b"TIMED_OUT", b"DEADLINE_SOON"):
            return None
        self._expect(line, b"RESERVED")
        size = int(values[1])
        body = self._reader.read(size + 2)[:size]
        return Reserved(int(values[0]), body)

    def delete(self, ids: Sequence[int]) -> None:
        for start in range(0, len(ids), _WINDOW):
            chunk = ids[start:start + _WINDOW]
            self._sock.sendall(b"".join(b"delete %d\r\n" % i for i in chunk))
            for _ in chunk:
                line = self._reader.readline()
                if not line.startswith((b"DELETED", b"NOT_FOUND")):
                    self._expect(line, b"DELETED")

    def _expect(self, line: bytes, status: bytes) -> None:
        if not line:
            raise OSError("connection closed")
        if not line.startswith(status):
            raise QueueError(f"beanstalkd at {self._address} answered {line.strip().decode(errors='replace')!r}"
                             f" where {status.decode()} was expected")

    def _refused(self, status: bytes, queued: int) -> Exception:
        if not status:
            return OSError("connection closed")
        return QueueError(
            f"beanstalkd at {self._address} refused a put with {status.decode(errors='replace')} "
            f"after {queued} jobs were queued"
        )
