"""Weight gradient through GEMM (algo "im2col"): for each group,
dW (Kg x Cg*taps) = grad_output (Kg x P) @ columns (P x Cg*taps), P the output pixels.

Both operands stay in the caller's layout: the columns are built straight from the
unpadded input (columns.py: padding through index maps, no padded copy), and
grad_output is read in place, transposed through the GEMM's flags where it is
channels-last. Channels-first, the columns' rows are (c, tap), the weight's own order,
one image at a time; channels-last, (tap, c) over pixels of consecutive images (and so
for channels-first images with narrow output rows, from a channels-last copy of the input:
see CHANNEL_ROWS_MIN_WIDTH).

A channels-last layer of one group whose pixel sum is long (ResNet-50's 56x56 3x3 layer)
runs through fused.py: each piece of the sum builds its columns in cache. Otherwise
columns are built for chunks of output pixels within half the workspace cap; each
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
from ...blas import LIBRARY, MAX_PIECES, MIN_PIECE, gemm_sum
from ...layout import kernel_array
from .columns import columns_ncdhw, columns_ndhwc, columns_ndhwc_rows
from .fused import fused_pieces


def _lift(shape, nd):
    return (1,) * (3 - nd) + tuple(shape)


# Channels-first images with output rows narrower than this are copied channels-last first:
# the channel-row columns do per-row work (tap offsets, borders) for a few elements at a time,
# where the pixel-row builder copies all channels of a tap at once (ResNet-50's 28x28, 14x14
# and 7x7 3x3 layers: the copy and the pixel-row columns took 0.2-0.7x the channel-row columns'
# time, the 56x56 layer 1.3x; the dilated suite's 33x33 ASPP layers ran 1.1-1.2x slower in
# channel rows than before either existed).
CHANNEL_ROWS_MIN_WIDTH = 48
# Channels-last columns of one group with fewer channels than this copy whole window rows.
FEW_CHANNELS = 16
# Where a group's gradient has this many elements, GEMM blocks over it keep every thread busy;
# if, besides, its pixel sum is too short for blas.gemm_sum to cut into pieces, columns are
# built in chunks of COLUMN_CHUNK_BYTES, which stay in cache from their build to the GEMM's
# packing (ResNet-50's 28x28 3x3 layers: 0.85x the time of one chunk). Otherwise chunks take
# half the workspace cap: a long sum in one piece per thread ran faster than cache-sized
# chunks whose GEMMs split the gradient (its 56x56 layer: 0.75x).
SPLIT_GRADIENT = 1 << 14
COLUMN_CHUNK_BYTES = 1 << 20


def _column_budget(grad, pixels):
    """Bytes of columns per chunk, for a (G, rows, cols) gradient summed over ``pixels``."""
    cap = workspace_limit() // 2
    cached = grad[0].size >= SPLIT_GRADIENT and pixels < 2 * MIN_PIECE
    return min(cap, COLUMN_CHUNK_BYTES) if cached else cap


@register("conv_weight_grad", "cpu", "im2col",
          note="grad_output @ im2col columns built from the unpadded input, both in the user's layout, "
               "on fastconv's GEMM threads, chunked over pixels in a fixed order")
def conv_weight_grad_im2col(spec, x, grad_output):
    dtype = working_dtype(np.dtype(spec.dtype))
    geom = geometry3(spec)
    nd, cl, batch = spec.nd, spec.channels_last, spec.batch
    groups, cg, taps = spec.groups, spec.in_per_group, math.prod(spec.kernel)
    c_n, k_n = spec.in_channels, spec.out_channels
    # grad_output's own extent (a transposed conv's may stop short of spec.out_size)
    g_size = _lift(grad_output.shape[1:-1] if cl else grad_output.shape[2:], nd)
    pixels = math.prod(g_size)
    x5 = x.reshape((batch, *geom.in_size, c_n) if cl else (batch, c_n, *geom.in_size))
    maps = [source_index(n, b, e, spec.padding_mode) for n, (b, e) in zip(geom.in_size, geom.pads)]
    fill = dtype.type(spec.padding_value)
    grad = np.zeros((groups, spec.out_per_group, cg * taps), dtype)
    if cl:
        rows = kernel_array(grad_output.reshape(batch * pixels, k_n), dtype)
        x5 = kernel_array(x5, dtype)
        if _by_pieces(spec, x5, rows, g_size, maps, fill, grad):
            return _from_pixel_rows(grad, spec)
        _by_pixel_rows(spec, x5, g_size, maps, fill, grad,
                       [(0, batch * pixels, lambda r0, r1, ks: rows[r0:r1, ks].T)])
        return _from_pixel_rows(grad, spec)
    g3 = kernel_array(grad_output.reshape(batch, k_n, pixels), dtype)
    if g_size[2] >= CHANNEL_ROWS_MIN_WIDTH:
        grad_t = np.zeros((groups, cg * taps, spec.out_per_group), dtype)
        _by_channel_rows(spec, kernel_array(x5, dtype), g3, g_size, maps, fill, grad_t)
        w = grad_t.transpose(0, 2, 1).reshape(spec.weight_shape)
        return np.ascontiguousarray(w, dtype=np.dtype(spec.dtype))
    xl = np.empty((batch, *geom.in_size, c_n), dtype)
    np.copyto(xl, np.moveaxis(x5, 1, -1), casting="unsafe")
    images = [(n * pixels, (n + 1) * pixels, lambda r0, r1, ks, n=n: g3[n, ks, r0 - n * pixels:r1 - n * pixels])
              for n in range(batch)]
    _by_pixel_rows(spec, xl, g_size, maps, fill, grad, images)
    return _from_pixel_rows(grad, spec)


def _by_pixel_rows(spec, x5, g_size, maps, fill, grad, spans):
    """Columns (group, pixel, tap * Cg + c) of channels-last x5 over each span (start, stop,
    operand) of pixels flat over (n, od, oh, ow), in chunks; ``operand(r0, r1, ks)`` is
    grad_output's (Kg, r1 - r0) matrix of out-channels ``ks`` over those pixels."""
    dtype, geom = grad.dtype, geometry3(spec)
    groups, kg, taps_c = grad.shape
    per_row = groups * taps_c * dtype.itemsize
    longest = max((p1 - p0 for p0, p1, _ in spans), default=0)
    budget = _column_budget(grad, longest)
    rows_at_once = groups == 1 and geom.dilation[2] == 1 and spec.in_channels < FEW_CHANNELS
    buffer = np.empty(min(max(1, budget // per_row), longest) * groups * taps_c, dtype)
    for p0, p1, operand in spans:
        for r0, r1 in chunks(p1 - p0, per_row, budget):
            cols = buffer[:(r1 - r0) * groups * taps_c].reshape(groups, r1 - r0, taps_c)
            if rows_at_once:
                columns_ndhwc_rows(x5, p0 + r0, *g_size, *geom.kernel, *geom.stride, *geom.dilation[:2],
                                   geom.pads[2][0], *maps, fill, cols)
            else:
                columns_ndhwc(x5, p0 + r0, *g_size, *geom.kernel, *geom.stride, *geom.dilation, *maps, fill, cols)
            for g in range(groups):
                gemm_sum(operand(p0 + r0, p0 + r1, slice(g * kg, (g + 1) * kg)), cols[g], grad[g], accumulate=True)


def _by_pieces(spec, x5, rows, g_size, maps, fill, grad):
    """One group's long pixel sum through fused.py (columns built in cache, per piece), where
    it applies: returns whether it ran."""
    dtype, geom = grad.dtype, geometry3(spec)
    groups, kg, taps_c = grad.shape
    total = rows.shape[0]
    if not (LIBRARY.ok and groups == 1 and spec.in_channels >= FEW_CHANNELS and grad[0].size >= SPLIT_GRADIENT
            and total >= 2 * MIN_PIECE):
        return False
    pieces = 1
    while pieces < MAX_PIECES and total // (2 * pieces) >= MIN_PIECE:
        pieces *= 2  # as blas.gemm_sum
    step = min(max(1, COLUMN_CHUNK_BYTES // (taps_c * dtype.itemsize)), -(-total // pieces))
    if (pieces * (step + kg) * taps_c) * dtype.itemsize > workspace_limit() // 2:
        return False
    cols = np.empty((pieces, step, taps_c), dtype)
    partials = np.zeros((pieces, kg, taps_c), dtype)
    with LIBRARY:
        fused_pieces(x5, 0, total, pieces, step, *g_size, *geom.kernel, *geom.stride, *geom.dilation, *maps, fill,
                     cols, cols.ctypes.data, rows.ctypes.data, rows.shape[1], partials.ctypes.data, kg)
    for j in range(pieces):
        grad[0] += partials[j]
    return True


def _from_pixel_rows(grad, spec):
    """(G, Kg, taps * Cg) -> the weight (K, Cg, *kernel) in the spec's dtype."""
    w = grad.reshape(spec.out_channels, -1, spec.in_per_group).transpose(0, 2, 1)
    return np.ascontiguousarray(w.reshape(spec.weight_shape), dtype=np.dtype(spec.dtype))


def _by_channel_rows(spec, x5, g3, g_size, maps, fill, grad_t):
    """Columns ((c, tap), pixel) of channels-first x5, one image at a time, in chunks of
    output rows; grad_output g3 (N, K, pixels) read in place. The gradient comes transposed,
    (G, Cg * taps, Kg): columns @ grad_output^T ran 1.2x faster than grad_output @ columns^T
    (OpenBLAS, ResNet-50's 56x56 3x3 layer)."""
    dtype, geom = grad_t.dtype, geometry3(spec)
    groups, taps_c, kg = grad_t.shape
    out_rows, ow_n = g_size[0] * g_size[1], g_size[2]
    budget = _column_budget(grad_t, out_rows * ow_n)
    per_row = groups * taps_c * ow_n * dtype.itemsize  # one output row's columns
    buffer = np.empty(min(max(1, budget // per_row), out_rows) * groups * taps_c * ow_n, dtype)
    for n in range(g3.shape[0]):
        for r0, r1 in chunks(out_rows, per_row, budget):
            cols = buffer[:groups * taps_c * (r1 - r0) * ow_n].reshape(groups, taps_c, (r1 - r0) * ow_n)
            columns_ncdhw(x5, n, r0, g_size[1], ow_n, *geom.kernel[1:], *geom.stride, *geom.dilation,
                          geom.pads[2][0], *maps, fill, cols.reshape(groups * taps_c, -1))
            for g in range(groups):
                gemm_sum(cols[g], g3[n, g * kg:(g + 1) * kg, r0 * ow_n:r1 * ow_n].T, grad_t[g], accumulate=True)
