"""Reproducible measurements that write JSON results (see README, "Benchmarks")."""
