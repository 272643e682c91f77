"""Signed jobs: HMAC-SHA256 over a canonical encoding, so listeners run only what a key holder queued.

beanstalkd has no authentication: anyone who reaches its port can queue a
job. With ``GLOW_SECRET`` (or ``--secret-file``) set, submitters add a ``sig``
member to every body, and listeners check it, in constant time, before
anything else in the body is acted on.

The signature covers the whole job record (sorted keys, compact JSON) and an
optional expiry. It does not hide the body and does not stop a replay of a
captured body before it expires: see docs/security.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import ConfigurationError, InvalidJobError
from .job import SIG_KEY



def canonical(record: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: the record without ``sig``, keys sorted, compact."""
    body = {k: v for k, v in record.items() if k != SIG_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")


def key_id(secret: bytes) -> str:
    """A short public name for a secret, so listeners can hold several during a rotation."""
    return hashlib.sha256(b"glowlab-key-id:" + secret).hexdigest()[:12]


def _mac(secret: bytes, record: Mapping[str, Any], expires: int | None) -> str:
    message = canonical(record) + b"\n" + str(expires or "").encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Keyring:
    """The secrets this process signs with (the first) and accepts (all)."""

    secrets: tuple[bytes, ...]
    ttl: int | None = None
    """Seconds a signature stays valid after signing (None: no expiry)."""

    def __repr__(self) -> str:  # never show secrets in logs or tracebacks
        return f"Keyring(keys={[key_id(s) for s in self.secrets]}, ttl={self.ttl})"

    @classmethod
    def load(cls, secret: str | None = None, secret_file: str | None = None,
             ttl: int | None = None) -> "Keyring | None":
        """From ``GLOW_SECRET`` text and/or a file of one secret per line; None when neither."""
        secrets = [secret.encode()] if secret else []
        if secret_file:
            secrets += _read_secrets(secret_file)
        return cls(tuple(secrets), ttl) if secrets else None

    def sign(self, record: dict[str, Any], now: float | None = None) -> dict[str, Any]:
        """The record with a ``sig`` member added."""
        secret = self.secrets[0]
        expires = int((now or time.time()) + self.ttl) if self.ttl else None
        sig = {"kid": key_id(secret), "mac": _mac(secret, record, expires)}
        if expires:
            sig["exp"] = expires
        return {**record, SIG_KEY: sig}

    def verify(self, record: Any, now: float | None = None) -> dict[str, Any]:
        """The record without ``sig`` if its signature checks; else InvalidJobError saying why."""
        if not isinstance(record, dict):
            raise InvalidJobError("unsigned job: the body is not a JSON object")
        sig = record.get(SIG_KEY)
        if not isinstance(sig, dict) or not isinstance(sig.get("mac"), str):
            raise InvalidJobError("unsigned job: this listener runs only signed jobs")
        secret = next((s for s in self.secrets if key_id(s) == sig.get("kid")), None)
        if secret is None:
            raise InvalidJobError(f"job signed with unknown key id {str(sig.get('kid'))[:20]!r}")
        expires = sig.get("exp")
        if expires is not None and not isinstance(expires, int):
            raise InvalidJobError("job signature has a malformed expiry")
        if not hmac.compare_digest(_mac(secret, record, expires), sig["mac"]):
            raise InvalidJobError("job signature does not match: the body was changed or forged")
        if expires is not None and (now or time.time()) > expires:
            raise InvalidJobError("job signature expired")
        return {k: v for k, v in record.items() if k != SIG_KEY}


def _read_secrets(path: str) -> list[bytes]:
    try:
        with open(path, "rb") as fh:
            lines = [line.strip() for line in fh]
    except OSError as exc:
        raise ConfigurationError(f"cannot read secret file {path}: {exc.strerror}") from None
    secrets = [line for line in lines if line and not line.startswith(b"#")]
    if not secrets:
        raise ConfigurationError(f"secret file {path} holds no secret (one per line)")
    mode = os.stat(path).st_mode
    if mode & 0o077:
        raise ConfigurationError(f"secret file {path} is readable by others; run chmod 600 {path}")
    return secrets

