"""Benchmarks of fractal_jupyter against fractal-server 2.6.4 (see docs/benchmarks.md)."""
