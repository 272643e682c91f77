"""The benchmarks run end to end in their quick mode, so `make bench` cannot rot unseen.

The figures of a quick run mean little (tiny sizes, one round, a busy machine):
this checks that every benchmark runs against its baseline and that the report,
the JSON and the docs section are written, not how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

sys.path.insert(0, str(ROOT))
from bench import report  # noqa: E402
from bench.run import BENCHMARKS  # noqa: E402

EXPECTED = {"batch.submit", "batch.sweep", "batch.sweep_binlog", "submit.one", "body.size",
            "dispatch.true", "dispatch.sleep", "pickup", "idle.commands.1", "idle.cpu.1",
            "collect", "scale.tubes", "scale.listeners"}


def test_quick_bench_measures_every_figure_and_writes_its_report(tmp_path: Path) -> None:
    page = tmp_path / "performance.md"
    page.write_text(f"# Performance\n\nMethod.\n\n{report.START}\nold figures\n{report.END}\n\nScaling.\n")
    out, plot = tmp_path / "results.json", tmp_path / "img" / "performance.png"
    run = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out), "--docs", str(page),
         "--plot", str(plot)],
        cwd=ROOT, capture_output=True, text=True, timeout=150, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr[-3000:]

    results = json.loads(out.read_text())
    figures = {f["key"]: f for f in results["figures"]}
    assert EXPECTED <= set(figures), f"missing figures: {EXPECTED - set(figures)}"
    for key, figure in figures.items():
        assert figure["value"] is not None and figure["value"] >= 0, key
        assert figure["met"] in (True, False), key
        if figure["baseline"]:
            assert figure["baseline_value"] > 0, key
    assert figures["submit.one"]["extra"]["heavy_imports"] == [], "submit or listen imported a heavy module"
    assert results["machine"]["nproc"] >= 1 and results["sizes"]["quick"] is True

    text = page.read_text()
    assert text.startswith("# Performance\n\nMethod.") and text.endswith("Scaling.\n")
    assert "old figures" not in text and text.count(report.START) == 1
    assert "| Figure | Measured |" in text and figures["collect"]["what"] in text
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "figure" in run.stdout.splitlines()[0] and len(run.stdout.splitlines()) == len(figures) + 1


def test_every_benchmark_is_in_the_quick_run() -> None:
    assert {"batch", "one", "body", "dispatch", "pickup", "idle", "collect", "scale"} == set(BENCHMARKS)
