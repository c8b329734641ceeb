"""Benchmarks for prelude-stepup-hook: ``make bench`` runs :mod:`bench.run` (docs/benchmarks.md)."""
