"""A convolution's bias gradient on the GPU: grad_output summed over batch and space per channel.

It used to be summed on the host, which in a training step on PyTorch's stream meant a wait
for the stream at every layer with a bias. Each channel's sum runs in one block, in a fixed
order (per-thread strided partial sums, then a fixed shared-memory tree), so the result is
the same on every run; float16 sums in float32.

- channels-first: a block per channel, 256 threads along the contiguous pixels of each image;
- channels-last: a block per 32 channels, 32 x 8 threads (channels x pixel rows), so a warp
  reads 32 adjacent channels of one pixel.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from . import streams
from ._jit import STORE, SUFFIX, WORK, Kernel, Launch, array, ceil_div, i64, specialised
from .pad import contiguous

LANES = 32  # channels per block, channels-last
ROWS = 8  # pixel rows per block, channels-last
THREADS = 256


@specialised
def bias_grad_kernel(dtype: str, channels_last: bool) -> Kernel:
    work = WORK[dtype]
    store = STORE[dtype]
    cl = channels_last
    rows = ROWS if cl else THREADS

    def kernel(g, out, n_img, c_n, pixels):
        partial = cuda.shared.array(THREADS, work)
        t = cuda.threadIdx.x
        if cl:
            lane = t % LANES
            row = t // LANES
            c = cuda.blockIdx.x * LANES + lane
        else:
            lane = 0
            row = t
            c = cuda.blockIdx.x
        acc = work(0)
        if c < c_n:
            total = n_img * pixels
            j = row
            while j < total:
                if cl:
                    acc += work(g[j * c_n + c])
                else:
                    n = j // pixels
                    acc += work(g[(n * c_n + c) * pixels + (j - n * pixels)])
                j += rows
        partial[t] = acc
        cuda.syncthreads()
        half = rows // 2
        while half > 0:
            if row < half:
                partial[t] += partial[t + half * (LANES if cl else 1)]
            cuda.syncthreads()
            half //= 2
        if row == 0 and c < c_n:
            out[c] = store(partial[lane])

    name = f"bias_grad_{'nhwc' if cl else 'nchw'}_{SUFFIX[dtype]}"
    shared = THREADS * np.dtype(np.float64 if dtype == "float64" else np.float32).itemsize
    return Kernel(name, kernel, (array(dtype, 1), array(dtype, 1), i64, i64, i64), THREADS, shared)


def bias_grad_launch(channels: int, dtype: str, channels_last: bool) -> Launch:
    kernel = bias_grad_kernel(dtype, channels_last)
    return Launch(kernel, ceil_div(channels, LANES) if channels_last else channels, "bias gradient")


def bias_grad(grad_output, channels_last: bool):
    """(C,) device array: ``grad_output`` (a device array, (N, C, *spatial) or (N, *spatial, C))
    summed over every axis but the channels'."""
    shape = tuple(grad_output.shape)
    channels = shape[-1] if channels_last else shape[1]
    dtype = np.dtype(grad_output.dtype)
    out = streams.device_array(channels, dtype)
    if channels:
        size = math.prod(shape)
        flat = contiguous(grad_output).reshape(size) if size else streams.device_array(1, dtype)
        pixels = math.prod(shape[1:-1] if channels_last else shape[2:])
        bias_grad_launch(channels, dtype.name, channels_last)(flat, out, shape[0], channels, pixels)
    return out
