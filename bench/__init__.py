"""Benchmark of evaluate() against business-rules' own engine; `make bench` runs `python -m bench.run`."""
