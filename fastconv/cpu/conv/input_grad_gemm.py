"""Input gradient of a 1x1 convolution as one GEMM in the user's layout (dispatch family
"conv_input_grad", algo "gemm"): ``x_grad (C, P) = W^T (C, K) @ grad_output (K, P)`` per
image channels-first, ``x_grad (N*P, C) = grad_output (N*P, K) @ W (K, C)`` channels-last.
With a stride the product lands on the pixels the forward read, the others are zero. GEMM
blocks (fastconv.cpu.blas.gemm) split the output, never a sum: the result is bitwise the
same on any number of threads.
"""

from __future__ import annotations

import math

import numpy as np

from ..._arrays import working_dtype
from ...dispatch import register
from ..blas import gemm
from .pointwise_operands import image_chunks, pointwise, strided_pixels


@register("conv_input_grad", "cpu", "gemm", supports=pointwise,
          note="1x1 input gradient as one GEMM in the user's layout (W^T @ grad_output)")
def conv_input_grad_gemm(spec, grad_output, weight):
    dtype = working_dtype(np.dtype(spec.dtype))
    groups, cg, kg = spec.groups, spec.in_per_group, spec.out_per_group
    w = np.ascontiguousarray(weight.reshape(spec.out_channels, cg), dtype=dtype)
    pixels = math.prod(spec.out_size)
    has_stride = any(s != 1 for s in spec.stride)
    # the product goes straight into the result, unless it must be spread over strided
    # pixels (the rest zero) or rounded to float16
    direct = not has_stride and dtype == np.dtype(spec.dtype)
    result = (np.empty if direct else np.zeros)(spec.input_shape, np.dtype(spec.dtype))
    dense = spec.output_shape[1:-1] + (spec.in_channels,) if spec.channels_last else \
        (spec.in_channels, *spec.output_shape[2:])
    operands = [(grad_output, spec.out_channels)] + ([] if direct else [(None, spec.in_channels)])
    for n0, n1 in image_chunks(spec.batch, operands, pixels, dtype):
        gs = np.ascontiguousarray(grad_output[n0:n1], dtype=dtype)
        n = n1 - n0
        out = result[n0:n1] if direct else np.empty((n, *dense), dtype)
        if spec.channels_last:
            rows, o = gs.reshape(n * pixels, spec.out_channels), out.reshape(n * pixels, spec.in_channels)
            for j in range(groups):
                gemm(rows[:, j * kg:(j + 1) * kg], w[j * kg:(j + 1) * kg], o[:, j * cg:(j + 1) * cg])
        else:
            planes, o = gs.reshape(n, spec.out_channels, pixels), out.reshape(n, spec.in_channels, pixels)
            for j in range(groups):
                gemm(w[j * kg:(j + 1) * kg].T, planes[:, j * kg:(j + 1) * kg], o[:, j * cg:(j + 1) * cg])
        if not direct:
            result[n0:n1][strided_pixels(spec, spec.out_size)] = out
        gs = rows = planes = out = o = None  # the next chunk's copies are not allocated while these live
    return result
