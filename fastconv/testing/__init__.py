"""Shared by tests/ and bench/: tolerances, sample registries and workload loading."""
