"""Small real workloads used by the demo, the notebooks and the benchmarks."""
