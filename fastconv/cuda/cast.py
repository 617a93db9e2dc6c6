"""Elementwise dtype conversion (and absolute value) on the device.

What used to be host round trips of the GPU gradient paths (a float16 weight widened to
float32, ``|x|`` for Lp pooling's p = inf routing, float16 input widened for the Lp
gradient): a round trip reads values on the host and so waits for the stream, where
this kernel is queued on it like every other.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from . import streams
from ._jit import STORE, SUFFIX, WORK, Kernel, array, elementwise, specialised
from .pad import contiguous


@specialised
def cast_kernel(source: str, target: str, absolute: bool) -> Kernel:
    """out[i] = target(|x[i]|) or target(x[i]) over flat contiguous arrays (|x| taken in the
    source's working dtype: exact, and float16 needs no half-precision abs)."""
    to = STORE[target]
    work = WORK[source]

    def kernel(x, out):
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        while i < out.size:
            out[i] = to(abs(work(x[i]))) if absolute else to(x[i])
            i += step

    name = f"{'abs_' if absolute else ''}cast_{SUFFIX[source]}_to_{SUFFIX[target]}"
    return Kernel(name, kernel, (array(source, 1), array(target, 1)), 256, 0)


def converted(arr, dtype, absolute: bool = False):
    """A new C-contiguous device array: ``arr`` (a device array) as ``dtype``, of absolute
    values if ``absolute``, computed on the current stream."""
    arr = contiguous(arr)
    shape, size = tuple(arr.shape), math.prod(arr.shape)
    out = streams.device_array(shape, np.dtype(dtype))
    if size:
        kernel = cast_kernel(np.dtype(arr.dtype).name, np.dtype(dtype).name, bool(absolute))
        elementwise(kernel, size, "cast")(arr.reshape(size), out.reshape(size))
    return out
