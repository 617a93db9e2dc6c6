"""A weight flipped along its spatial axes, on the device.

Stride-1 depthwise input gradients run the forward depthwise conv with the flipped weight
(conv_input_grad.py). Flipping it on the host read the weight back, which waits for the
stream the call runs on; this kernel is queued on it like every other.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from . import streams
from ._jit import SUFFIX, Kernel, Launch, array, elementwise, specialised
from .pad import lift_weight


@specialised
def flip_kernel(dtype: str) -> Kernel:
    """out[a, b, d, h, w] = w[a, b, KD-1-d, KH-1-h, KW-1-w] over (A, B, KD, KH, KW) arrays."""

    def kernel(w, out):
        a_n, b_n, kd, kh, kw = out.shape
        total = a_n * b_n * kd * kh * kw
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        while i < total:
            x = i % kw
            r = i // kw
            y = r % kh
            r = r // kh
            z = r % kd
            r = r // kd
            b = r % b_n
            a = r // b_n
            out[a, b, z, y, x] = w[a, b, kd - 1 - z, kh - 1 - y, kw - 1 - x]
            i += step

    return Kernel(f"flip_weight_{SUFFIX[dtype]}", kernel, (array(dtype, 5), array(dtype, 5)), 256, 0)


def flip_launch(weight_shape, dtype: str) -> Launch:
    return elementwise(flip_kernel(dtype), math.prod(weight_shape), "flip weight")


def flipped(weight, nd: int):
    """A new contiguous device array: ``weight`` (A, B, *kernel) reversed along its ``nd``
    spatial axes, computed on the current stream."""
    shape = tuple(weight.shape)
    out = streams.device_array(shape, np.dtype(weight.dtype))
    if math.prod(shape):
        w5 = lift_weight(weight, nd)
        flip_launch(shape, np.dtype(weight.dtype).name)(w5, out.reshape(*w5.shape))
    return out
