"""Benchmarks: each ``bench/bench_*.py`` has a ``main()`` and writes one section of docs/benchmarks.md."""
