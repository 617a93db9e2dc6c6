"""The one place that sets Numba options for CPU kernels.

- on-disk cache: compiled kernels land in Numba's cache (__pycache__ or NUMBA_CACHE_DIR),
  as with ``cache=True``, through :func:`fastconv._jit_cache.robust_cache`: a damaged or
  unwritable cache means a compile in memory and one warning, never a failed call.
- ``error_model="numpy"``: no Python exception checks in arithmetic.
- ``fastmath={"contract"}``: FMA contraction only; no reassociation, so NaN/inf and
  summation order stay as written (max pooling must see NaN).
- ``boundscheck`` follows NUMBA_BOUNDSCHECK, so a checked run of the suite is possible.

Generated kernels (a factory builds one per static parameter set, e.g. the direct
convolution's register tile) get their name from the factory and are compiled eagerly
for explicit signatures with :func:`specialised_kernel`, so compile time is paid (or
the on-disk cache is read) when the factory runs, not inside a timed call.

:func:`simd` says what vector registers the code is compiled for; kernels that emit
explicit vectors size their register tiles from it.

Importing this module (it happens on the first CPU kernel call, not on ``import
fastconv``) starts Numba's worker threads on fastconv's thread runtime, Numba's TBB
layer: see :mod:`fastconv._threads`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from numba import njit

from .._jit_cache import robust_cache
from .._threads import start as start_threads

FASTMATH = frozenset({"contract"})

_COMMON = dict(cache=False, error_model="numpy", nogil=True)  # the disk cache comes from robust_cache


def parallel_kernel(fn=None, **overrides):
    """A CPU kernel parallelised with ``prange`` over independent output work."""
    options = dict(_COMMON, parallel=True, fastmath=set(FASTMATH))
    options.update(overrides)
    if fn is None:
        return lambda f: robust_cache(njit(**options)(f))
    return robust_cache(njit(**options)(fn))


def serial_kernel(fn=None, **overrides):
    options = dict(_COMMON, fastmath=set(FASTMATH))
    options.update(overrides)
    if fn is None:
        return lambda f: robust_cache(njit(**options)(f))
    return robust_cache(njit(**options)(fn))


def specialised_kernel(fn, name: str, signatures, parallel: bool = True):
    """Compile a factory-made kernel now, for ``signatures``, under ``name``.

    The name becomes the function's ``__name__``/``__qualname__``: it shows in
    profiles and names the kernel's file in Numba's on-disk cache (one file per
    specialisation; the factory's static parameters are closure constants, which Numba
    folds into the cache key). Explicit signatures mean a call with any other argument
    types is an error rather than a silent recompile.
    """
    fn.__name__ = fn.__qualname__ = name
    dispatcher = (parallel_kernel if parallel else serial_kernel)(fn)
    for sig in signatures:
        dispatcher.compile(sig)
    dispatcher.disable_compile()
    return dispatcher


class Simd(NamedTuple):
    vector_bytes: int  # widest vector register LLVM may use: 64 (AVX-512), 32 (AVX), 16
    registers: int  # how many of them: 32 with AVX-512, else 16


@functools.lru_cache(maxsize=1)
def simd() -> Simd:
    """The vector registers of the target Numba compiles for.

    Read the way Numba's own code generator reads it: ``NUMBA_CPU_FEATURES`` when set,
    else the host's features. 512-bit vectors need AVX-512F and, on LLVM's AVX10
    model, EVEX512 (off on AVX10/256 parts).
    """
    import llvmlite.binding as ll
    from numba.core import config

    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else ll.get_host_cpu_features().flatten()
    enabled = {f[1:] for f in features.split(",") if f.startswith("+")}
    disabled = {f[1:] for f in features.split(",") if f.startswith("-")}
    if "avx512f" in enabled and "evex512" not in disabled:
        return Simd(64, 32)
    if "avx" in enabled:
        return Simd(32, 16)
    return Simd(16, 16)


THREADS = start_threads()
