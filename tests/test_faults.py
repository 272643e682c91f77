"""The fault campaign (faults/, docs/reliability.md) at its quick size, inside the suite.

Real listeners, a real beanstalkd with its binlog, real ``kill -9``s, a real network
cut between two network namespaces: ``python -m faults --quick`` runs once for the
module, and each scenario's test fails when one of its targets is missed, with the
figures and notes that say how.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ["kill -9 listeners", "kill -9 beanstalkd", "network cut", "collector killed",
             "SMTP trouble", "chaos"]
CAMPAIGN_TIMEOUT = 420
"""Seconds the quick campaign may take here; it takes about two minutes on two idle cores."""

pytestmark = pytest.mark.timeout(CAMPAIGN_TIMEOUT + 120)


def test_network_namespaces_can_be_made() -> None:
    """The network-cut scenarios need them: CI runs as root. Without, this fails (never skips)."""
    assert shutil.which("ip"), "the fault campaign needs the 'ip' command: apt-get install iproute2"
    name = f"glf-probe-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    assert made.returncode == 0, (
        f"cannot make a network namespace ({made.stderr.strip()}): the fault campaign's network "
        "scenarios need root (CAP_NET_ADMIN and CAP_SYS_ADMIN); run the tests as root, as CI does")


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the quick campaign once; its results JSON, exit status and output."""
    work = tmp_path_factory.mktemp("faults")
    out = work / "results.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "faults", "--quick", "--out", str(out), "--work", str(work / "files")],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=CAMPAIGN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the campaign cleans up on TERM: namespaces, processes
        stdout, stderr = proc.communicate(timeout=60)
        pytest.fail(f"the quick campaign took over {CAMPAIGN_TIMEOUT} s:\n{stderr[-4000:]}")
    assert out.exists(), f"the campaign wrote no results (exit {proc.returncode}):\n{stderr[-4000:]}"
    return {**json.loads(out.read_text()), "returncode": proc.returncode, "stdout": stdout,
            "stderr": stderr, "files": str(work / "files")}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_meets_its_targets(campaign: dict, scenario: str) -> None:
    figures = [f for f in campaign["figures"] if f["scenario"] == scenario]
    assert figures, f"the campaign reported nothing for {scenario!r}:\n{campaign['stderr'][-4000:]}"
    missed = [f"{f['what']}: {f['value']} (target {f['target']}) {f['note']}".rstrip()
              for f in figures if f["met"] is False]
    assert not missed, (f"{scenario} missed targets (seed {campaign['seed']}; files in "
                        f"{campaign['files']}):\n" + "\n".join(missed))


def test_the_campaign_exits_1_exactly_when_a_target_is_missed(campaign: dict) -> None:
    assert campaign["returncode"] == (0 if campaign["passed"] else 1), campaign["stderr"][-4000:]
    assert "scenario" in campaign["stdout"] and "target" in campaign["stdout"], "no summary table"
