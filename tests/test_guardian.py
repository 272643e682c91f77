"""The guardian finds a dead listener's jobs by their mark, even ones it was never told of."""

from __future__ import annotations

import os
import subprocess

from glowlab.guardian import LISTENER_MARK, _started_by


def test_unregistered_jobs_of_a_listener_are_found_by_their_mark():
    env = {**os.environ, LISTENER_MARK: "424242"}
    job = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], env=env, start_new_session=True)
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        groups = _started_by(424242)
        assert job.pid in groups, "the marked job (and its child's group) is found"
        assert other.pid not in groups, "an unmarked process is left alone"
    finally:
        for proc in (job, other):
            os.killpg(proc.pid, 9)
            proc.wait()
