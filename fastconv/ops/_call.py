"""What every op front end does around its kernel: pick the backend, add and remove
the batch axis of unbatched input, handle empty batches, move arrays between host
and device, check that the output can be allocated, and dispatch on the resolved spec.

The call-plan cache. Conv, separable, pooling and window front ends keep what a call
resolved in the one byte-bounded cache of fastconv/_cache.py (with the backends' plans,
one budget, one ``clear_caches``):

- a repeated NumPy call's key (op, array shapes and dtypes, every other argument) ->
  :class:`CallPlan` (spec, implementation, runner): the next such call runs the runner
  and nothing else;
- a call's resolved spec by its arguments (``_spec_cache.cached_spec``), for calls
  that cannot take the first path (CUDA arrays, unbatched shapes in turn...);
- the implementation chosen for a spec object (:func:`choose_cached`).

Errors are never kept: a bad call raises every time.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .._arrays import backend_of, check_array, is_cuda_array, like_input, shape_of, to_host
from .._cache import CACHE
from ..dispatch import Implementation, choose


class CallPlan(NamedTuple):
    """What a repeated call needs: its spec, the implementation that served it, and
    ``run(*arrays)``, which runs it on arrays like the first call's."""

    spec: object
    impl: Implementation | None
    run: Callable


call_plan = CACHE.get  # key -> the CallPlan kept under it, or None (a dict read, no Python frame)


def remember(key, plan: CallPlan) -> None:
    CACHE.put(key, plan, 0)  # no arrays of its own: plans of the backends count apart


# ---- memory guard -----------------------------------------------------------------------

# Outputs up to this size are not checked: any machine running fastconv allocates them.
CHECK_OUTPUT_BYTES = 64 << 20


def check_output(op: str, shape, dtype, extra_itemsize: int = 0) -> None:
    """Fail at once, before any planning, when the output cannot be allocated.

    Bytes are counted in Python ints (no overflow). Above CHECK_OUTPUT_BYTES, the output
    cannot be allocated when (a) it is larger than the machine's RAM and swap together,
    which no overcommit setting can back (with overcommit "always", Linux's
    vm.overcommit_memory=1, the allocation itself succeeds and the process dies later
    filling it), or (b) allocating it fails: the output is allocated once and freed, so
    the allocator, with the process's address-space limit and the kernel's overcommit
    rule, judges (free memory does not: pages are committed lazily and other processes
    come and go). No page is touched, so a trial that succeeds costs an mmap and a
    munmap; the kernel then allocates the output itself. What this guards against is
    planning structures, working copies and a long kernel before a MemoryError.
    ``extra_itemsize``: bytes per output element of a second output (pooling indices).
    """
    elements = math.prod(int(n) for n in shape)
    itemsize = np.dtype(dtype).itemsize
    nbytes = elements * (itemsize + extra_itemsize)
    if nbytes <= CHECK_OUTPUT_BYTES:
        return
    try:
        if nbytes > machine_memory():
            raise MemoryError
        trial = np.empty(nbytes, np.uint8)
        del trial
    except (MemoryError, ValueError):
        raise MemoryError(
            f"{op}: cannot allocate the output of shape {tuple(int(n) for n in shape)} "
            f"({np.dtype(dtype).name}{' and int64 indices' if extra_itemsize else ''}): {nbytes} bytes "
            f"({nbytes / 2**30:.3g} GiB)"
        ) from None


def machine_memory() -> int:
    """Bytes of RAM plus swap (RAM alone where /proc/meminfo is missing); 2**63 if unknown."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**63
    swap = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("SwapTotal:"):
                    swap = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    return ram + swap


def batched(op: str, x, nd: int, device, names_and_arrays=()):
    """(backend, batched input, was_unbatched) for an input of nd + 1 or nd + 2 dims."""
    backend = backend_of(op, x, device)
    for name, arr in names_and_arrays:
        check_array(op, name, arr, backend)
    shape = shape_of(x)
    if len(shape) == nd + 1:
        return backend, _reshape(x, (1, *shape)), True
    if len(shape) != nd + 2:
        raise ValueError(
            f"{op}: input must have {nd + 2} dims (batched) or {nd + 1} (unbatched), got shape {tuple(shape)}"
        )
    return backend, x, False


def _reshape(x, shape):
    if isinstance(x, np.ndarray):
        return x.reshape(shape)
    if hasattr(x, "reshape") and not hasattr(x, "copy_to_host"):
        return x.reshape(shape)  # CuPy
    from numba import cuda

    arr = x if hasattr(x, "copy_to_host") else cuda.as_cuda_array(x)
    if not arr.is_c_contiguous():
        arr = _device_copy(arr)
    return arr.reshape(*shape)


def _device_copy(arr):
    from numba import cuda

    out = cuda.device_array(arr.shape, arr.dtype)
    out[...] = arr
    return out


def _unbatch(result):
    if isinstance(result, tuple):
        return tuple(_unbatch(r) for r in result)
    return _reshape(result, tuple(shape_of(result))[1:])


def execute(family: str, backend: str, spec, algo, x_user, arrays, unbatched: bool, empty_result):
    """Run ``spec`` on ``backend``; return a result of the same kind as ``x_user``.

    ``arrays`` are the kernel's array arguments (input first, None allowed);
    ``empty_result()`` builds the NumPy result of an empty batch.
    """
    check_output(spec.op, spec.output_shape, spec.dtype, 8 * bool(getattr(spec, "return_indices", False)))
    impl = choose_cached(family, backend, spec, algo)
    if spec.batch == 0:
        result = empty_result()
    elif backend == "cpu":
        result = impl.fn(spec, *(to_host(a) for a in arrays))
    else:
        result = _run_cuda(impl, spec, arrays)
    result = _as_kind(result, x_user)
    return _unbatch(result) if unbatched else result


def choose_cached(family, backend, spec, algo):
    """``choose``, remembered for the spec object: front ends that cache resolved specs
    pass the same object again, and then skip the table walk. The entry holds the spec,
    so its id is not reused while the entry lives."""
    key = ("choose", id(spec), family, backend, algo)
    hit = CACHE.get(key)
    if hit is not None and hit[0] is spec:
        return hit[1]
    impl = choose(family, backend, spec, algo)
    CACHE.put(key, (spec, impl), 0)
    return impl


def _run_cuda(impl, spec, arrays):
    from numba import cuda

    dev = [None if a is None else (cuda.to_device(np.ascontiguousarray(a)) if isinstance(a, np.ndarray)
                                    else a if hasattr(a, "copy_to_host") else cuda.as_cuda_array(a))
           for a in arrays]
    return impl.fn(spec, *dev)


def _as_kind(result, x_user):
    if isinstance(result, tuple):
        return tuple(_as_kind(r, x_user) for r in result)
    if isinstance(x_user, np.ndarray):
        return to_host(result)
    if is_cuda_array(x_user) and isinstance(result, np.ndarray):
        return like_input(result, x_user)
    if is_cuda_array(x_user) and type(x_user).__module__.startswith("cupy"):
        import cupy

        return cupy.asarray(result)
    return result
