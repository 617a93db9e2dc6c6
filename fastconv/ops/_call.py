"""What every op front end does around its kernel: pick the backend, add and remove
the batch axis of unbatched input, handle empty batches, move arrays between host
and device, check that the output can be allocated, dispatch on the resolved spec, run
small calls on one thread (fastconv/_small_calls.py), and remember what a call on NumPy
arrays resolved.

The call-plan cache. A call on NumPy arrays (conv, separable, pooling, adaptive pooling,
unfold, fold, max_unpool) is keyed by its op, each array's shape and dtype, and every
other argument with its type (:func:`host_key`). The key maps to a :class:`CallPlan`
(spec, implementation, runner) in the one byte-bounded cache of fastconv/_cache.py
(beside the backends' plans: one budget, one ``clear_caches``), and the next call with
that key runs the runner and nothing else: its checks passed on the first call and
depend on nothing the key leaves out. Calls with other arrays (CUDA) or arguments that
are not plain values resolve afresh each time (:func:`execute`). Errors are never kept:
a bad call raises every time.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .._arrays import FLOAT_DTYPES, backend_of, check_array, is_cuda_array, like_input, shape_of, to_host
from .._cache import CACHE
from .._small_calls import on_one_thread, serial
from ..dispatch import Implementation, choose


class CallPlan(NamedTuple):
    """What a repeated call needs: its spec, the implementation that served it, and
    ``run(*arrays)``, which runs it on arrays like the first call's. ``held``: what
    ``run`` keeps of the backend's plan (its arrays count in the cache's bytes)."""

    spec: object
    impl: Implementation | None
    run: Callable
    held: tuple = ()


call_plan = CACHE.get  # key -> the CallPlan kept under it, or None (a dict read, no Python frame)


def remember(key, plan: CallPlan) -> None:
    CACHE.put(key, plan)  # counted: ENTRY_BYTES plus the arrays in plan.held


class Uncacheable(Exception):
    pass


def key_of(value):
    """A user argument as part of a cache key, when its equality means "same call": ints,
    strings, None, tuples of ints or of int pairs, floats tagged as floats (2.0 must not
    find the plan of 2). Anything else (lists, NumPy scalars) raises Uncacheable."""
    kind = type(value)
    if kind is int or kind is str or value is None:
        return value
    if kind is float:
        return "float", value
    if kind is tuple:
        for item in value:
            t = type(item)
            if t is not int and not (t is tuple and all(type(v) is int for v in item)):
                raise Uncacheable
        return value
    raise Uncacheable


_KEY_TYPES = frozenset({int, float, bool, str, type(None), tuple})


def plain_types(args: tuple):
    """The types of ``args`` when each is a plain value (see :func:`key_of`), else None.
    A call-plan key holds the arguments with their types, so 2, 2.0 and True stay apart."""
    types = tuple(map(type, args))
    if not _KEY_TYPES.issuperset(types):
        return None
    if tuple in types:
        try:
            for value, kind in zip(args, types):
                if kind is tuple:
                    key_of(value)
        except Uncacheable:
            return None
    return types


def host_key(op: str, args: tuple, x, *more):
    """The call-plan key of a call on NumPy arrays: ``op``, ``args`` (every argument but
    the arrays that the result depends on) with their types, and the shape and dtype of
    the input ``x`` and of the ``more`` arrays (None stays None). None when an array is
    not a NumPy array or an argument is not a plain value: that call takes the full path."""
    if type(x) is not np.ndarray:
        return None
    types = plain_types(args)
    if types is None:
        return None
    if not more:
        return op, args, types, x.shape, x.dtype
    described = ()
    for a in more:
        if type(a) is np.ndarray:
            described += (a.shape, a.dtype)
        elif a is None:
            described += (None,)
        else:
            return None
    return op, args, types, x.shape, x.dtype, described


def host_plan(family: str, spec, algo, shapes=(), unbatched: bool = False, empty_result=None) -> CallPlan:
    """The CallPlan of a checked call on NumPy arrays resolved to ``spec`` (the caller
    checked that its output can be allocated). ``run(*arrays)`` takes the kernel's arrays
    as the user gave them; ``shapes``: per array, the shape the kernel reads it in (the
    batched shape of unbatched input) or None (also for arrays past its end); ``unbatched``: drop the batch axis of the
    result; ``empty_result``: builds the result when ``spec.batch == 0``."""
    impl = choose(family, "cpu", spec, algo)
    if empty_result is not None and spec.batch == 0:
        return CallPlan(spec, impl, lambda *arrays: empty_result())
    one_thread = serial(spec)
    if impl.bind is not None:
        run, held = (on_one_thread(impl.bind) if one_thread else impl.bind)(spec)
    else:
        run, held = functools.partial(impl.fn, spec), ()
    if one_thread:
        run = on_one_thread(run)
    if not any(s is not None for s in shapes):
        return CallPlan(spec, impl, run, held)
    kernel = run

    def run(*arrays):
        result = kernel(*(a if s is None else a.reshape(s) for a, s in itertools.zip_longest(arrays, shapes)))
        return _unbatch_host(result) if unbatched else result

    return CallPlan(spec, impl, run, held)


def _unbatch_host(result):
    if isinstance(result, tuple):
        return tuple(r.reshape(r.shape[1:]) for r in result)
    return result.reshape(result.shape[1:])


DTYPE_NAMES = {dt: dt.name for dt in FLOAT_DTYPES}  # np.dtype.name is slow to compute


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
    from ..cuda import streams

    arr = streams.as_device(x)
    if not arr.is_c_contiguous():
        arr = streams.copy(arr)
    return arr.reshape(*shape)


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
    impl = choose(family, backend, spec, algo)
    if spec.batch == 0:
        result = empty_result()
    elif backend == "cpu":
        result = (on_one_thread(impl.fn) if serial(spec) else impl.fn)(spec, *(to_host(a) for a in arrays))
    else:
        result = _run_cuda(impl, spec, arrays)
    result = _as_kind(result, x_user)
    return _unbatch(result) if unbatched else result


def _run_cuda(impl, spec, arrays):
    """The kernel on device copies of NumPy arrays and views of CUDA ones, queued on the
    current stream (:mod:`fastconv.cuda.streams`)."""
    from ..cuda import streams

    dev = [None if a is None else (streams.to_device(np.ascontiguousarray(a)) if isinstance(a, np.ndarray)
                                    else streams.as_device(a))
           for a in arrays]
    return streams.unbound(impl.fn(spec, *dev))


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
