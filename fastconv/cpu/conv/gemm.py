"""1x1 convolution as one GEMM in the input's own layout (no padding, no layout copy).

Channels-first: out[n] (K, P) = W (K, C) @ x[n] (C, P), P the pixels; channels-last:
out (N*P, K) = x (N*P, C) @ W.T. A stride is a strided view of the input, made
contiguous (it is 1/stride^d of the input). A Numba epilogue adds bias and the
activation in place (skipped when there is neither). Around the GEMM, a call costs
about 8 us of Python (no np.prod, no slicing when there is one group and no stride):
on a 100 us layer that is the margin against PyTorch.

The GEMM runs on fastconv's own threads (:func:`fastconv.cpu.blas.gemm`: OpenBLAS on one
thread per block), not on OpenBLAS's pool, whose calls waited for whole scheduler ticks
(8-32 ms) while another process kept a core busy.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ..._arrays import working_dtype
from ...dispatch import register
from ...kernels.activation import ACTIVATION_CODES, activate
from .._jit import parallel_kernel
from ..blas import gemm
from ..layout import bias_activation_rows, bias_vector, image_chunks
from .driver import ChunkedOutput


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


@register("conv", "cpu", "gemm", supports=_pointwise,
          note="1x1 conv as one GEMM in the input's layout (OpenBLAS per block on fastconv's threads)")
def conv_gemm(spec, x, weight, bias):
    dtype = working_dtype(np.dtype(spec.dtype))
    g, cg, kg = spec.groups, spec.in_per_group, spec.out_per_group
    if any(s != 1 for s in spec.stride):
        spatial = tuple(slice(None, None, s) for s in spec.stride)
        x = x[(slice(None),) + ((*spatial, slice(None)) if spec.channels_last else (slice(None), *spatial))]
    w = weight.reshape(spec.out_channels, cg)
    if w.dtype != dtype or not (w.flags.c_contiguous or w.flags.f_contiguous):  # a transposed one is read as such
        w = np.ascontiguousarray(w, dtype=dtype)
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
                gemm(rows, w.T, o)
            else:
                for j in range(g):
                    gemm(rows[:, j * cg:(j + 1) * cg], w[j * kg:(j + 1) * kg].T, o[:, j * kg:(j + 1) * kg])
            if b is not None:
                bias_activation_rows(o, b, act)
        else:
            planes, o = xs.reshape(n, spec.in_channels, pixels), out.reshape(n, spec.out_channels, pixels)
            if g == 1:
                gemm(w, planes, o)
            else:
                for j in range(g):
                    gemm(w[j * kg:(j + 1) * kg], planes[:, j * cg:(j + 1) * cg], o[:, j * kg:(j + 1) * kg])
            if b is not None:
                bias_activation_planes(o, b, act)
        xs = rows = planes = None  # the next chunk's copy is not allocated while this one lives
        result.store(n0, n1, out)
        out = o = None
    return result.out
