"""Benchmarks of the drain on the local stack: ``make bench`` (``python -m bench``). See BENCHMARKS.md."""
