"""The convolution kernels' epilogue: bias, activation, then the store into the
user's layout. One device function per (working type, layout), shared by the direct,
depthwise, GEMM, split-K reduction and transposed kernels."""

from __future__ import annotations

import functools

from numba import cuda

from ..kernels.activation import activate


@functools.cache
def conv_output_store(work, channels_last: bool):
    """``store(out, n, k, od, oh, ow, v, bias, has_bias, act)``: out at output channel k
    and position (n, od, oh, ow) = act(v + bias[k]); the bias is widened to ``work``
    (float16 bias with float32 accumulators) before the add."""
    cl = channels_last

    @cuda.jit(device=True, inline=True)
    def store(out, n, k, od, oh, ow, v, bias, has_bias, act):
        if has_bias:
            v += work(bias[k])
        v = activate(v, act)
        if cl:
            out[n, od, oh, ow, k] = v
        else:
            out[n, k, od, oh, ow] = v

    return store
