"""`glowlab demo` end to end: a real sweep on a private cluster, a table, result files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd


def test_demo_runs_a_sweep_and_writes_its_results(tmp_path: Path):
    out = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k not in ("GLOW_QUEUE", "GLOWLAB_HOME")}
    proc = subprocess.run([sys.executable, "-m", "glowlab", "demo", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pi by Monte-Carlo" in proc.stdout and "0 failed" in proc.stdout
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 16 and (results["status"] == "done").all()
    assert results["estimate"].between(2.5, 3.8).all()
    summary = pd.read_csv(out / "summary.csv")
    assert summary["abs_error"].iloc[-1] < summary["abs_error"].iloc[0]  # more samples, less error
    assert (out / "error.png").stat().st_size > 10_000
