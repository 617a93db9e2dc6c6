"""Shared by tests/ and bench/: the op registry (``registry``: samples, error inputs,
references and tolerances per public op, filled by the ``*_samples`` family modules),
tolerances, and the workload suites (``workloads``, package data)."""
