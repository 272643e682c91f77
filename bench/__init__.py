"""glowlab's benchmarks: each figure measured beside a baseline in the same run.

Run ``python -m bench.run`` (``--quick`` for a smoke run); see docs/performance.md.
"""
