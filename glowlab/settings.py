"""Settings read from the environment, once, by the entry points."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Mapping, NamedTuple

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .signing import Keyring

DEFAULT_QUEUE = "0.0.0.0:11300"
DEFAULT_MAIL_FROM = "glow@example.com"


class Settings(NamedTuple):
    """What glowlab takes from the environment (the seed's variables and ours)."""

    # a NamedTuple, not a dataclass: every command reads settings, and importing
    # dataclasses (inspect with it) cost about 9 ms of a 45 ms ``glowlab submit``
    queue: str = DEFAULT_QUEUE
    smtp_server: str | None = None
    mail_from: str = DEFAULT_MAIL_FROM
    home: str = ".glowlab"
    secret: str | None = None
    secret_file: str | None = None
    secret_ttl: int | None = None
    allow_root: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        settings = cls(
            queue=env.get("GLOW_QUEUE") or DEFAULT_QUEUE,
            smtp_server=env.get("GLOW_SMTP_SERVER") or None,
            mail_from=env.get("GLOW_MAIL_FROM") or DEFAULT_MAIL_FROM,
            home=env.get("GLOWLAB_HOME") or ".glowlab",
            secret=env.get("GLOW_SECRET") or None,
            secret_file=env.get("GLOW_SECRET_FILE") or None,
            secret_ttl=_seconds(env.get("GLOW_SECRET_TTL"), "GLOW_SECRET_TTL"),
            allow_root=env.get("GLOWLAB_ALLOW_ROOT", "") not in ("", "0"),
        )
        parse_address(settings.queue, what="GLOW_QUEUE")
        if settings.smtp_server:
            parse_address(settings.smtp_server, what="GLOW_SMTP_SERVER")
        return settings

    def __repr__(self) -> str:  # never shows the secret
        shown = self._replace(secret="<hidden>") if self.secret else self
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in zip(self._fields, shown))})"

    def keyring(self, secret_file: str | None = None) -> "Keyring | None":
        """The signing keys from GLOW_SECRET / GLOW_SECRET_FILE (or ``secret_file``), if any."""
        if not (self.secret or secret_file or self.secret_file):
            return None  # the common case: do not even import hashing
        from .signing import Keyring

        return Keyring.load(self.secret, secret_file or self.secret_file, ttl=self.secret_ttl)


def _seconds(value: str | None, name: str) -> int | None:
    if not value:
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise ConfigurationError(f"{name} must be a whole number of seconds, not {value!r}")
    return int(value)


def parse_address(address: str, *, what: str = "address") -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` too) into its parts, or say what is wrong."""
    host, sep, port = address.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(
            f"{what} {address!r} is not host:port; use e.g. 127.0.0.1:11300"
        )
    return host, int(port)
