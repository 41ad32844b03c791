"""Benchmarks run by `make bench` (`python -m benchmarks [NAME ...]`); not tests, they measure."""
