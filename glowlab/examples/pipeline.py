"""A two-stage pipeline for the notebooks: ``prepare`` writes a case's data, ``solve`` reads it.

Both are function jobs (``glowlab.examples.pipeline:prepare``); they take the
sweep's columns ``case`` and ``seconds`` and exchange files in the job's
workdir, so ``solve`` fails if it ever runs before ``prepare`` of its case.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from pathlib import Path


def prepare(case: int, seconds: float) -> dict[str, int]:
    """Draw the case's data (1,000 numbers) into ``case-N.json``."""
    rng = random.Random(case)
    points = [rng.gauss(case, 1.0) for _ in range(1000)]
    Path(f"case-{case}.json").write_text(json.dumps(points), encoding="utf-8")
    return {"points": len(points)}


def solve(case: int, seconds: float) -> dict[str, float]:
    """Summarise the case's data; ``seconds`` stands for work that grows with the case."""
    points = json.loads(Path(f"case-{case}.json").read_text(encoding="utf-8"))
    time.sleep(seconds)
    return {"mean": round(statistics.fmean(points), 4), "spread": round(statistics.stdev(points), 4)}
