"""Numba helpers inlined into their callers, CPU and CUDA kernels alike."""

from __future__ import annotations

from numba import njit

from .._jit_cache import robust_cache


def inline_helper(fn):
    """Index helper inlined into its callers (usable from CPU and CUDA kernels alike)."""
    return robust_cache(njit(inline="always")(fn))
