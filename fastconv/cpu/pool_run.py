"""Running a pooling kernel on the user's array, in the user's layout.

The kernels read 5-D, C-contiguous arrays in the working dtype (float32 for
float16/float32, float64 for float64), 1-D and 2-D calls lifted with unit D (and H)
axes: ``(N, C, D, H, W)`` for channels-first calls, ``(N, D, H, W, C)`` for
channels-last ones. A writeable C-contiguous input in the working dtype is read in
place (a reshape, no copy); any other input (read-only ones too: Numba would compile
each kernel again for them) is copied into that form a chunk of images at a
time, within the workspace cap. The output is allocated in the user's layout and
returned as is (float16 results are cast once at the end).

Every kernel exists twice (:func:`twin`): parallel, and serial for calls too small to
repay waking the worker threads.
"""

from __future__ import annotations

import math
import types
from typing import NamedTuple

import numpy as np

from .._arrays import working_dtype
from .._jit import parallel_kernel, serial_kernel
from .._workspace import chunks, workspace_limit

INDEX_DTYPE = np.dtype(np.int64)

# Below this many element visits (input taps read + outputs written) a call runs serially:
# waking the worker threads costs 10-40 us, the time of ~250K vectorized visits on one
# core (measured: 125K visits 35 us serial, 49 us parallel; 920K 196 us and 181 us).
SERIAL_WORK = 1 << 18


class Twin(NamedTuple):
    parallel: object
    serial: object

    def pick(self, work: int):
        return self.serial if work < SERIAL_WORK else self.parallel


def twin(fn) -> Twin:
    """``fn`` compiled as a parallel and as a serial kernel (``prange`` runs as ``range``).

    Each copy has its own qualified name, hence its own file in Numba's on-disk cache
    (the cache key does not include the compile options).
    """
    made = []
    for suffix, jit in (("parallel", parallel_kernel), ("serial", serial_kernel)):
        copy = types.FunctionType(fn.__code__, fn.__globals__, f"{fn.__name__}_{suffix}",
                                  fn.__defaults__, fn.__closure__)
        copy.__qualname__ = copy.__name__
        copy.__module__ = fn.__module__
        copy.__doc__ = fn.__doc__
        made.append(jit(copy))
    return Twin(*made)


def lifted(values, fill):
    return (fill,) * (3 - len(values)) + tuple(values)


def _working_shape(batch, channels, size, channels_last):
    size = lifted(size, 1)
    return (batch, *size, channels) if channels_last else (batch, channels, *size)


def run_pool(spec, x, kernel_call, with_indices: bool):
    """Call ``kernel_call(xw, out, idx)`` on working-form chunks of ``x``; return the
    result in the user's layout and dtype (and int64 indices when ``with_indices``).

    ``out`` and ``idx`` are 5-D views of the results; ``idx`` is a (1, 1, 1, 1, 1)
    dummy when no indices are wanted.
    """
    dtype = np.dtype(spec.dtype)
    wdtype = working_dtype(dtype)
    in_shape = _working_shape(spec.batch, spec.channels, spec.in_size, spec.channels_last)
    out_shape = _working_shape(spec.batch, spec.channels, spec.out_size, spec.channels_last)
    out = np.empty(out_shape, wdtype)
    idx = np.empty(out_shape if with_indices else (1, 1, 1, 1, 1), INDEX_DTYPE)
    if x.dtype == wdtype and x.flags.c_contiguous and x.flags.aligned and x.flags.writeable:
        kernel_call(x.reshape(in_shape), out, idx)
    else:
        per_image = max(1, math.prod(in_shape[1:])) * wdtype.itemsize
        for n0, n1 in chunks(spec.batch, per_image, workspace_limit()):
            xw = np.empty((n1 - n0, *in_shape[1:]), wdtype)
            np.copyto(xw.reshape(x[n0:n1].shape), x[n0:n1], casting="unsafe")
            kernel_call(xw, out[n0:n1], idx[n0:n1] if with_indices else idx)
    values = out.reshape(spec.output_shape)
    if wdtype != dtype:
        values = values.astype(dtype)
    if with_indices:
        return values, idx.reshape(spec.output_shape)
    return values
