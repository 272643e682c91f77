"""Signed jobs: the pure part (sign, verify, tamper, expiry, keys) and the round trip."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from glowlab.errors import ConfigurationError, InvalidJobError
from glowlab.job import Job, decode
from glowlab.signing import Keyring, key_id

RING = Keyring((b"s3cret-key",))


def test_signed_body_verifies_and_decodes_to_the_same_job():
    job = Job(cmd="echo", args=("a b", "$(x)"), tube="t", pri=7, env={"A": "1"})
    assert decode(job.encode(RING), RING) == job


@pytest.mark.parametrize("field,value", [("cmd", "rm"), ("args", ["-rf", "/"]), ("tube", "other"),
                                         ("env", {"LD_PRELOAD": "x"}), ("workdir", "/")])
def test_any_change_to_a_signed_body_is_refused(field, value):
    record = json.loads(Job(cmd="echo", tube="t").encode(RING))
    record[field] = value
    with pytest.raises(InvalidJobError, match="does not match"):
        decode(json.dumps(record), RING)


def test_unsigned_wrong_key_and_expired_jobs_are_refused():
    plain = Job(cmd="echo", tube="t").encode()
    with pytest.raises(InvalidJobError, match="unsigned"):
        decode(plain, RING)
    other = Keyring((b"another",))
    with pytest.raises(InvalidJobError, match="unknown key id"):
        decode(Job(cmd="echo", tube="t").encode(other), RING)
    short = Keyring((b"s3cret-key",), ttl=10)
    record = short.sign(Job(cmd="echo", tube="t").to_dict(), now=1000)
    with pytest.raises(InvalidJobError, match="expired"):
        RING.verify(record, now=1011)
    assert RING.verify(record, now=1009)["cmd"] == "echo"
    record["sig"]["exp"] = 99999999999  # pushing the expiry out breaks the MAC
    with pytest.raises(InvalidJobError, match="does not match"):
        RING.verify(record, now=1011)


def test_rotation_accepts_every_listed_key_and_signs_with_the_first(tmp_path: Path):
    path = tmp_path / "keys"
    path.write_text("# new key first\nnew-key\nold-key\n")
    os.chmod(path, 0o600)
    ring = Keyring.load(secret_file=str(path))
    old = Keyring((b"old-key",))
    assert decode(Job(cmd="ls", tube="t").encode(old), ring).cmd == "ls"
    assert json.loads(Job(cmd="ls", tube="t").encode(ring))["sig"]["kid"] == key_id(b"new-key")


def test_secret_file_problems_are_clear(tmp_path: Path):
    with pytest.raises(ConfigurationError, match="cannot read secret file"):
        Keyring.load(secret_file=str(tmp_path / "missing"))
    loose = tmp_path / "loose"
    loose.write_text("k\n")
    os.chmod(loose, 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        Keyring.load(secret_file=str(loose))


def test_secrets_never_appear_in_reprs_or_errors():
    ring = Keyring((b"very-secret-value",))
    assert "very-secret-value" not in repr(ring)
    from glowlab.settings import Settings

    shown = repr(Settings.from_env({"GLOW_SECRET": "very-secret-value"}))
    assert "very-secret-value" not in shown and "secret='<hidden>'" in shown
    try:
        decode(Job(cmd="x", tube="t").encode(), ring)
    except InvalidJobError as exc:
        assert "very-secret-value" not in str(exc)


def test_a_listener_without_a_secret_still_reads_signed_bodies():
    assert decode(Job(cmd="echo", tube="t").encode(RING)).cmd == "echo"


args_text = st.text(st.characters(blacklist_characters="\0"), max_size=30)  # surrogates too


@settings(max_examples=200, deadline=None)
@given(cmd=args_text.filter(bool), args=st.lists(args_text, max_size=6),
       pri=st.integers(0, 2**32 - 1), delay=st.integers(0, 10**6),
       env=st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True), args_text,
                           max_size=3))
def test_encoding_round_trips_any_job_byte_for_byte(cmd, args, pri, delay, env):
    job = Job(cmd=cmd, args=args, tube="t", pri=pri, delay=delay, env=env)
    assert decode(job.encode()) == job
    assert decode(job.encode(RING), RING) == job
    assert job.argv == [cmd, *args]


def test_non_utf8_argument_bytes_survive_the_queue_byte_for_byte():
    raw = b"caf\xe9-\xff"
    arg = os.fsdecode(raw)  # what Python's argv holds for these bytes
    job = decode(Job(cmd="printf", args=("%s", arg), tube="t").encode(RING), RING)
    assert os.fsencode(job.args[1]) == raw
