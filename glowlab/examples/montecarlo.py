"""Estimate pi by throwing random points at the unit square (the demo's job).

Run as ``python -m glowlab.examples.montecarlo --samples N --seed S``; writes
its metrics to ``$GLOWLAB_RESULT`` when a listener provides it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np


def estimate_pi(samples: int, seed: int) -> dict[str, float]:
    """The estimate, its absolute error and the time it took."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    inside = 0
    for chunk in range(0, samples, 1_000_000):
        n = min(1_000_000, samples - chunk)
        x, y = rng.random(n), rng.random(n)
        inside += int(np.count_nonzero(x * x + y * y <= 1.0))
    estimate = 4.0 * inside / samples
    return {"estimate": estimate, "abs_error": abs(estimate - math.pi),
            "compute_seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = estimate_pi(args.samples, args.seed)
    print(f"samples={args.samples} seed={args.seed} estimate={result['estimate']:.6f}")
    path = os.environ.get("GLOWLAB_RESULT")
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(result, fh)


if __name__ == "__main__":
    main()
