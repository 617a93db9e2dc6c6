"""The one place that sets Numba options for CPU kernels.

- ``cache=True``: compiled kernels land in Numba's on-disk cache (__pycache__).
- ``error_model="numpy"``: no Python exception checks in arithmetic.
- ``fastmath={"contract"}``: FMA contraction only; no reassociation, so NaN/inf and
  summation order stay as written (max pooling must see NaN).
- ``boundscheck`` follows NUMBA_BOUNDSCHECK, so a checked run of the suite is possible.
"""

from __future__ import annotations

from numba import njit

FASTMATH = frozenset({"contract"})

_COMMON = dict(cache=True, error_model="numpy", nogil=True)


def parallel_kernel(fn=None, **overrides):
    """A CPU kernel parallelised with ``prange`` over independent output work."""
    options = dict(_COMMON, parallel=True, fastmath=set(FASTMATH))
    options.update(overrides)
    if fn is None:
        return lambda f: njit(**options)(f)
    return njit(**options)(fn)


def serial_kernel(fn=None, **overrides):
    options = dict(_COMMON, fastmath=set(FASTMATH))
    options.update(overrides)
    if fn is None:
        return lambda f: njit(**options)(f)
    return njit(**options)(fn)


def inline_helper(fn):
    """Index helper inlined into its callers (usable from CPU and CUDA kernels alike)."""
    return njit(inline="always", cache=True)(fn)
