"""hookgate's benchmark suite: ``python -m bench`` (full) or ``python -m bench --quick`` (smoke).

Every figure is measured next to a bare baseline in the same run and reported as a ratio, because
the machines it runs on are shared and noisy. See ``docs/benchmarks.md`` for the latest table.
"""
