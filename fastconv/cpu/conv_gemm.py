"""1x1 convolution as one GEMM in the input's own layout (no padding, no layout copy).

Channels-first: out[n] (K, P) = W (K, C) @ x[n] (C, P), P the pixels; channels-last:
out (N*P, K) = x (N*P, C) @ W.T. A stride is a strided view of the input, made
contiguous (it is 1/stride^d of the input). A Numba epilogue adds bias and the
activation in place (skipped when there is neither). Around the GEMM, a call costs
about 8 us of Python (no np.prod, no slicing when there is one group and no stride):
on a 100 us layer that is the margin against PyTorch.

OpenBLAS's own threads run the GEMM. On the 2-core project machine, 2 BLAS threads were
1.3-2x faster than 1 when the machine was otherwise idle; while another process kept
one core busy, calls took 8, 16 or 32 ms, whole multiples of the scheduler tick (6-150x
PyTorch's time on MobileNetV2/ResNet-50 1x1 layers; the waiting caller seems to spin in
sched_yield, so its worker is not moved to the core it leaves free). Numba's passive
OpenMP pool and PyTorch's slowed down to about one core's speed instead: algo="direct"
(the input read in place when channels-last) is the robust choice there, and
OPENBLAS_NUM_THREADS=1 removes the stalls at the cost of the second core.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .._arrays import working_dtype
from .._jit import parallel_kernel
from ..dispatch import register
from .conv_driver import ChunkedOutput
from .layout import ACTIVATION_CODES, activate, bias_activation_rows, bias_vector, image_chunks


@parallel_kernel
def bias_activation_planes(out, bias, act):
    """out (N, K, P) channels-first: out[n, k, :] += bias[k], then the activation; in place."""
    n_img, k_n, p_n = out.shape
    for t in prange(n_img * k_n):
        n = t // k_n
        k = t - n * k_n
        b = bias[k]
        for p in range(p_n):
            out[n, k, p] = activate(out[n, k, p] + b, act)


def _pointwise(spec):
    return None if spec.is_pointwise else "kernel must be 1x1 with no padding (pointwise)"


@register("conv", "cpu", "gemm", supports=_pointwise, note="1x1 conv as one BLAS GEMM in the input's layout")
def conv_gemm(spec, x, weight, bias):
    dtype = working_dtype(np.dtype(spec.dtype))
    g, cg, kg = spec.groups, spec.in_per_group, spec.out_per_group
    if any(s != 1 for s in spec.stride):
        spatial = tuple(slice(None, None, s) for s in spec.stride)
        x = x[(slice(None),) + ((*spatial, slice(None)) if spec.channels_last else (slice(None), *spatial))]
    w = np.ascontiguousarray(weight.reshape(spec.out_channels, cg), dtype=dtype)
    act = ACTIVATION_CODES[spec.activation]
    b = None if bias is None and not act else bias_vector(bias, spec, dtype)
    pixels = math.prod(spec.out_size)
    # Strided, non-contiguous or float16 input is copied, and a float16 output computed in
    # float32, one chunk of images at a time within the workspace cap.
    result = ChunkedOutput(spec, dtype, spec.channels_last)
    copy = not (x.dtype == dtype and x.flags.c_contiguous)
    per_image = (math.prod(x.shape[1:]) * dtype.itemsize if copy else 0) + result.bytes_per_image
    for n0, n1 in image_chunks(spec, per_image) if per_image else [(0, spec.batch)]:
        xs = np.ascontiguousarray(x[n0:n1], dtype=dtype)
        out = result.chunk(n0, n1)
        n = n1 - n0
        if spec.channels_last:
            rows, o = xs.reshape(n * pixels, spec.in_channels), out.reshape(n * pixels, spec.out_channels)
            if g == 1:
                np.matmul(rows, w.T, out=o)
            else:
                for j in range(g):
                    np.matmul(rows[:, j * cg:(j + 1) * cg], w[j * kg:(j + 1) * kg].T, out=o[:, j * kg:(j + 1) * kg])
            if b is not None:
                bias_activation_rows(o, b, act)
        else:
            planes, o = xs.reshape(n, spec.in_channels, pixels), out.reshape(n, spec.out_channels, pixels)
            if g == 1:
                np.matmul(w, planes, out=o)
            else:
                for j in range(g):
                    np.matmul(w[j * kg:(j + 1) * kg], planes[:, j * cg:(j + 1) * cg], out=o[:, j * kg:(j + 1) * kg])
            if b is not None:
                bias_activation_planes(o, b, act)
        xs = rows = planes = None  # the next chunk's copy is not allocated while this one lives
        result.store(n0, n1, out)
        out = o = None
    return result.out
