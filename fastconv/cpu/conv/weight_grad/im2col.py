"""Weight gradient through GEMM (algo "im2col"): for each group,
dW (Kg x Cg*taps) = grad_output (Kg x P) @ columns (P x Cg*taps), P the output pixels.

Both operands stay in the caller's layout: the columns are built straight from the
unpadded input (columns.py: padding through index maps, no padded copy), and
grad_output is read in place, transposed through the GEMM's flags where it is
channels-last. Channels-first, the columns' rows are (c, tap), the weight's own order,
one image at a time; channels-last, (tap, c) over pixels of consecutive images.

Columns are built for chunks of output pixels within half the workspace cap; each
chunk's product adds into the gradient (beta = 1) in pixel order. A chunk's pixel sum is
cut into pieces fixed by its length (blas.gemm_sum: a long sum with a small gradient, as
in early 3x3 layers, keeps every thread busy), else GEMM blocks split the gradient's
rows or columns; the result does not depend on the thread count. It does depend on the
chunking, so on the workspace cap.
"""

from __future__ import annotations

import math

import numpy as np

from ...._arrays import working_dtype
from ...._workspace import chunks, workspace_limit
from ....dispatch import register
from ....kernels.geometry import geometry3
from ....kernels.padding_index import source_index
from ...blas import gemm_sum
from ...layout import kernel_array
from .columns import columns_ncdhw, columns_ndhwc


def _lift(shape, nd):
    return (1,) * (3 - nd) + tuple(shape)


@register("conv_weight_grad", "cpu", "im2col",
          note="grad_output @ im2col columns built from the unpadded input, both in the user's layout, "
               "on fastconv's GEMM threads, chunked over pixels in a fixed order")
def conv_weight_grad_im2col(spec, x, grad_output):
    dtype = working_dtype(np.dtype(spec.dtype))
    geom = geometry3(spec)
    nd, cl, batch = spec.nd, spec.channels_last, spec.batch
    groups, kg, cg = spec.groups, spec.out_per_group, spec.in_per_group
    c_n, k_n = spec.in_channels, spec.out_channels
    taps = math.prod(spec.kernel)
    # grad_output's own extent (a transposed conv's may stop short of spec.out_size)
    g_size = _lift(grad_output.shape[1:-1] if cl else grad_output.shape[2:], nd)
    pixels = math.prod(g_size)
    in5 = (batch, *geom.in_size, c_n) if cl else (batch, c_n, *geom.in_size)
    x5 = kernel_array(x.reshape(in5), dtype)  # a copy only for float16 or a non-contiguous input
    maps = [source_index(n, b, e, spec.padding_mode) for n, (b, e) in zip(geom.in_size, geom.pads)]
    fill = dtype.type(spec.padding_value)
    k3, s3, d3 = geom.kernel, geom.stride, geom.dilation
    budget = workspace_limit() // 2
    grad = np.zeros((groups, kg, cg * taps), dtype)
    if cl:
        rows = kernel_array(grad_output.reshape(batch * pixels, k_n), dtype)
        per_row = c_n * taps * dtype.itemsize
        buffer = np.empty(min(max(1, budget // per_row), rows.shape[0]) * c_n * taps, dtype)
        for r0, r1 in chunks(rows.shape[0], per_row, budget):
            cols = buffer[:(r1 - r0) * c_n * taps].reshape(groups, r1 - r0, taps * cg)
            columns_ndhwc(x5, r0, *g_size, *k3, *s3, *d3, *maps, fill, cols)
            for g in range(groups):
                gemm_sum(rows[r0:r1, g * kg:(g + 1) * kg].T, cols[g], grad[g], accumulate=True)
        w = grad.reshape(k_n, taps, cg).transpose(0, 2, 1)
    else:
        g3 = kernel_array(grad_output.reshape(batch, k_n, pixels), dtype)
        out_rows, ow_n = g_size[0] * g_size[1], g_size[2]
        per_row = c_n * taps * ow_n * dtype.itemsize  # one output row's columns
        buffer = np.empty(min(max(1, budget // per_row), out_rows) * c_n * taps * ow_n, dtype)
        for n in range(batch):
            for r0, r1 in chunks(out_rows, per_row, budget):
                cols = buffer[:c_n * taps * (r1 - r0) * ow_n].reshape(c_n * taps, (r1 - r0) * ow_n)
                columns_ncdhw(x5, n, r0, g_size[1], ow_n, *k3[1:], *s3, *d3, geom.pads[2][0], *maps, fill, cols)
                for g in range(groups):
                    gemm_sum(g3[n, g * kg:(g + 1) * kg, r0 * ow_n:r1 * ow_n], cols[g * cg * taps:(g + 1) * cg * taps].T,
                             grad[g], accumulate=True)
        w = grad
    return np.ascontiguousarray(w.reshape(spec.weight_shape), dtype=np.dtype(spec.dtype))
