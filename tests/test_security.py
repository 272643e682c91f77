"""Signed jobs end to end, root refusal and the open-queue warning."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import glowlab, glowlab_env, tube_counts
from glowlab.cli.jobs import _check_trust
from glowlab.cluster import Beanstalkd
from glowlab.listener import ListenerOptions, is_loopback
from glowlab.queue import Queue
from glowlab.signing import Keyring
from listening import Start, errors, sh, wait_job

SECRET = "correct horse battery staple"


@pytest.fixture
def server(own_server: Beanstalkd) -> Beanstalkd:
    return own_server


def test_a_signing_listener_runs_signed_jobs_and_buries_the_rest(
        address, queue, tube, start_listener: Start, tmp_path: Path):
    listener = start_listener(env=glowlab_env(address, GLOW_SECRET=SECRET))
    signed = Queue(address, keyring=Keyring((SECRET.encode(),)))
    wrong = Queue(address, keyring=Keyring((b"not the secret",)))
    expired = Keyring((SECRET.encode(),), ttl=1).sign(sh("touch PWNED-expired", tube).to_dict(), now=1000)
    tampered = json.loads(sh(f"touch {tmp_path}/fine", tube).encode(signed.keyring))
    tampered["args"] = ["-c", f"touch {tmp_path}/PWNED-tampered"]

    queue.submit(sh(f"touch {tmp_path}/PWNED-unsigned", tube))
    wrong.submit(sh(f"touch {tmp_path}/PWNED-wrong-key", tube))
    queue.put(tube, json.dumps(expired).encode())
    queue.put(tube, json.dumps(tampered).encode())
    wait_job(lambda: tube_counts(queue, tube)["buried"] == 4, listener, "four refused jobs buried")
    reasons = sorted(r["error"] for r in errors(queue, 4))
    assert any("unsigned" in r for r in reasons)
    assert any("unknown key id" in r for r in reasons)
    assert any("expired" in r for r in reasons)
    assert any("does not match" in r for r in reasons)
    assert not list(tmp_path.glob("PWNED*")), "a refused job ran"
    assert SECRET not in Path(listener.log_path).read_text()

    signed.submit(sh(f"touch {tmp_path}/ran", tube))
    wait_job((tmp_path / "ran").exists, listener, "the signed job")


def test_glowlab_submit_signs_with_glow_secret(address, queue, tube, start_listener: Start,
                                               tmp_path: Path):
    env = glowlab_env(address, GLOW_SECRET=SECRET)
    listener = start_listener(env=env)
    done = subprocess.run([sys.executable, "-m", "glowlab", "submit", "--tube", tube, "--", "touch",
                           str(tmp_path / "ran")], env=env, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    wait_job((tmp_path / "ran").exists, listener, "the job signed by glowlab submit")


def test_the_listener_refuses_root_unless_allowed(address):
    env = {k: v for k, v in glowlab_env(address).items() if k != "GLOWLAB_ALLOW_ROOT"}
    proc = subprocess.Popen([sys.executable, "-m", "glowlab", "listen"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if os.geteuid() == 0:
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 2
        assert b"refusing to run jobs as root" in err and b"--allow-root" in err
    else:  # an unprivileged user is exactly what we want: it listens
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=2)
        proc.terminate()
        proc.wait(20)


@pytest.mark.parametrize("address,loopback", [
    ("127.0.0.1:11300", True), ("0.0.0.0:11300", True), ("localhost:1", True),
    ("[::1]:11300", True), ("10.0.0.4:11300", False), ("beanstalk.lab:11300", False),
])
def test_loopback_addresses(address, loopback):
    assert is_loopback(address) is loopback


def test_unsigned_listener_on_a_network_address_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="glowlab"):
        _check_trust(ListenerOptions(address="10.0.0.4:11300"), allow_root=True)
    assert "not signed" in caplog.text and "GLOW_SECRET" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glowlab"):
        _check_trust(ListenerOptions(address="10.0.0.4:11300", keyring=Keyring((b"k",))),
                     allow_root=True)
        _check_trust(ListenerOptions(address="127.0.0.1:11300"), allow_root=True)
    assert caplog.text == ""


def test_a_bad_secret_file_is_one_clear_line(address, tmp_path: Path):
    proc = glowlab("listen", "--secret-file", str(tmp_path / "nope"), address=address, timeout=30)
    assert proc.returncode == 2 and b"cannot read secret file" in proc.stderr
    assert b"Traceback" not in proc.stderr
