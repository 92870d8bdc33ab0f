"""Benchmarks of the cache, run with ``python -m benchmarks``.

benchmarks/README.md says what a run measures, why every speed figure is a
ratio to a baseline of the same run, and which module does which job.
"""
