"""Benchmark suites, the runner and the reports: python -m benchmarks.run --suite NAME."""
