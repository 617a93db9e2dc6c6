"""Weight gradient through GEMM (algo "im2col"): for each group,
dW (Kg x taps*Cg) = grad_output^T (Kg x P) @ columns (P x taps*Cg), P the output pixels.

The columns are the forward im2col kernel's (cpu/conv/im2col.py), built for chunks of
pixels within half the workspace cap, per chunk of images (operands.weight_grad_chunks);
each chunk's product adds into the gradient (beta = 1) in pixel order. A chunk's pixel
sum is cut into pieces fixed by its length (blas.gemm_sum: a long sum with a small
gradient, as in early 3x3 layers, keeps every thread busy), else GEMM blocks split the
gradient's rows or columns; the result does not depend on the thread count. It does
depend on the chunking, so on the workspace cap.
"""

from __future__ import annotations

import math

import numpy as np

from ...._arrays import working_dtype
from ...._workspace import chunks, workspace_limit
from ....dispatch import register
from ....kernels.geometry import geometry3
from ...blas import gemm_sum
from ..im2col import im2col_ndhwc
from .operands import weight_grad_chunks


@register("conv_weight_grad", "cpu", "im2col",
          note="grad_output^T @ im2col columns on fastconv's GEMM threads, chunked over pixels in a fixed order")
def conv_weight_grad_im2col(spec, x, grad_output):
    dtype = working_dtype(np.dtype(spec.dtype))
    geom = geometry3(spec)
    groups, kg, cg = spec.groups, spec.out_per_group, spec.in_per_group
    taps = math.prod(spec.kernel)
    taps_c = taps * cg
    grad = np.zeros((groups, kg, taps_c), dtype)
    budget = workspace_limit() // 2
    for xp, g5 in weight_grad_chunks(spec, x, grad_output, share=0.5):
        rows = g5.reshape(-1, spec.out_channels)
        step = max(1, budget // max(groups * taps_c * dtype.itemsize, 1))
        buffer = np.empty(groups * min(step, rows.shape[0]) * taps_c, dtype)  # one chunk's columns, reused
        for r0, r1 in chunks(rows.shape[0], groups * taps_c * dtype.itemsize, budget):
            cols = buffer[:groups * (r1 - r0) * taps_c].reshape(groups, r1 - r0, taps_c)
            im2col_ndhwc(xp, r0, *g5.shape[1:4], *geom.kernel, *geom.stride, *geom.dilation, cols)
            for g in range(groups):
                gemm_sum(rows[r0:r1, g * kg:(g + 1) * kg].T, cols[g], grad[g], accumulate=True)
    w = grad.reshape(spec.out_channels, taps, cg).transpose(0, 2, 1).reshape(spec.weight_shape)
    return np.ascontiguousarray(w, dtype=np.dtype(spec.dtype))
