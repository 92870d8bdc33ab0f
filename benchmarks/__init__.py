"""Benchmarks of the cache, run with ``python -m benchmarks`` (see README.md here).

Every speed figure is a ratio against a baseline measured in the same run,
because the machines this runs on are shared and noisy: one absolute number
means little, a ratio of interleaved medians means something. The modules,
one job each, are listed in README.md ("Extending").
"""
