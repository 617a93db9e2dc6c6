"""Weight gradient through GEMM (algo "im2col"): for each group,
dW (Kg x taps*Cg) = grad_output^T (Kg x P) @ columns (P x taps*Cg), P the output pixels.

The columns are the forward im2col kernel's (cpu/conv/im2col.py), built for chunks of
pixels within half the workspace cap; each chunk's product adds into the gradient
(beta = 1) in pixel order. GEMM blocks split the gradient's rows or columns, never the
pixel sum, so the result does not depend on the thread count; it does depend on the
chunking, so on the workspace cap.
"""

from __future__ import annotations

import math

import numpy as np

from ...._workspace import chunks, workspace_limit
from ....dispatch import register
from ....kernels.geometry import geometry3
from ...blas import gemm
from ..im2col import im2col_ndhwc
from .operands import weight_grad_operands


@register("conv_weight_grad", "cpu", "im2col",
          note="grad_output^T @ im2col columns on fastconv's GEMM threads, chunked over pixels in a fixed order")
def conv_weight_grad_im2col(spec, x, grad_output):
    xp, g5, dtype = weight_grad_operands(spec, x, grad_output)
    geom = geometry3(spec)
    groups, kg, cg = spec.groups, spec.out_per_group, spec.in_per_group
    taps = math.prod(spec.kernel)
    taps_c = taps * cg
    rows = g5.reshape(-1, spec.out_channels)
    grad = np.zeros((groups, kg, taps_c), dtype)
    budget = workspace_limit() // 2
    step = max(1, budget // max(groups * taps_c * dtype.itemsize, 1))
    buffer = np.empty(groups * min(step, rows.shape[0]) * taps_c, dtype)  # one chunk's columns, reused
    for r0, r1 in chunks(rows.shape[0], groups * taps_c * dtype.itemsize, budget):
        cols = buffer[:groups * (r1 - r0) * taps_c].reshape(groups, r1 - r0, taps_c)
        im2col_ndhwc(xp, r0, *g5.shape[1:4], *geom.kernel, *geom.stride, *geom.dilation, cols)
        for g in range(groups):
            gemm(rows[r0:r1, g * kg:(g + 1) * kg].T, cols[g], grad[g], accumulate=True)
    w = grad.reshape(spec.out_channels, taps, cg).transpose(0, 2, 1).reshape(spec.weight_shape)
    return np.ascontiguousarray(w, dtype=np.dtype(spec.dtype))
