"""Placing per-level pooling results side by side on the device (spatial pyramid pooling)."""

from __future__ import annotations

import math

from numba import cuda

from . import streams

THREADS = 256


@cuda.jit
def place_level(src, dst, offset, channels_last):
    """dst[n, offset + c * P + p] = level value (n, c, p); src is (N, C, P) or (N, P, C)."""
    i = cuda.grid(1)
    if channels_last:
        p_n = src.shape[1]
        c_n = src.shape[2]
    else:
        c_n = src.shape[1]
        p_n = src.shape[2]
    per_image = c_n * p_n
    if i < dst.shape[0] * per_image:
        n = i // per_image
        r = i - n * per_image
        c = r // p_n
        p = r - c * p_n
        dst[n, offset + r] = src[n, p, c] if channels_last else src[n, c, p]


def concat_levels(levels, channels_last: bool):
    """(N, C * sum(P_l)) device array from device level outputs (N, C, *l) or (N, *l, C)."""
    n = levels[0].shape[0]
    flat = []
    for y in levels:
        y = streams.as_device(y)
        shape = tuple(y.shape)
        pixels = math.prod(shape[1:-1]) if channels_last else math.prod(shape[2:])
        channels = shape[-1] if channels_last else shape[1]
        flat.append(y.reshape(n, pixels, channels) if channels_last else y.reshape(n, channels, pixels))
    total = sum(math.prod(tuple(y.shape)[1:]) for y in flat)
    out = streams.device_array((n, total), flat[0].dtype)
    offset = 0
    for y in flat:
        count = math.prod(tuple(y.shape))
        if count:
            place_level[(count + THREADS - 1) // THREADS, THREADS, streams.current_stream()](y, out, offset,
                                                                                           channels_last)
        offset += math.prod(tuple(y.shape)[1:])
    return streams.unbound(out)
