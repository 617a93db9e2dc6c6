"""Input gradient as columns folded back (dispatch family "conv_input_grad", algo "columns").

Per image and group, ``cols (Cg * taps, P) = W^T (Cg * taps, Kg) @ grad_output (Kg, P)``: each
column holds what every tap of one output pixel sends back to the input, and every input
pixel then gathers the columns of the taps that read it. The GEMM's rows are the input
channels times the taps, so a layer of few input channels (a stem: 3 channels, 7x7 taps, 147
rows) still runs a well-shaped product, where the adjoint conv's output has only those 3
channels to vectorise over. The output rows are taken in bands whose columns fit in L2
(BAND_BYTES): a band's GEMM, then windows.fold_band (``phased``) adds its columns onto the input rows
they reach (a task per input row: no two tasks write one pixel), rows stored by column phase
so that each tap adds a contiguous run (one thread, thread CPU time, against the same fold in
column order: ResNet-50's stem input gradient 7.1-7.6 to 4.9-5.4 ms, MobileNetV2's 1.3-1.7 to
0.8-1.1; the same sums). Channels-last grad_output is read in place as a transposed operand; the
planes are put back in column order in the user's layout once (:func:`unsplit_phases`).

Each input pixel adds its terms band by band, taps in ascending order within a band; the
bands and GEMM blocks (fastconv.cpu.blas.gemm, counted for GEMM_THREADS threads whatever
the actual count) are fixed by the shapes: the result is bitwise the same on any number of
threads. float16 computes in float32 and rounds once. Zeros and constant padding only (the
pads' gradient is dropped); other padding modes fold back onto the pixels a padded copy
read, which the adjoint does.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ..._arrays import working_dtype
from ..._workspace import chunks
from ...dispatch import register
from ...kernels.geometry import geometry3
from .._jit import parallel_kernel
from ..blas import gemm
from ..windows import fold_band
from .input_grad_gemm import GEMM_THREADS

BAND_BYTES = 2 * 1024 * 1024  # a band's columns: about L2 (2 MB on the project machine)


def supports_columns(spec):
    if spec.transposed:
        return "a transposed convolution's input gradient is a forward convolution (adjoint)"
    if spec.is_pointwise:
        return "a 1x1 layer's columns are grad_output itself (algo 'gemm')"
    if spec.padding_mode not in ("zeros", "constant"):
        return "padding_mode must be zeros or constant (other pads fold back onto the pixels they copied)"
    return None


@parallel_kernel
def unsplit_phases(planes, sw, channels_last, out):
    """out = planes (N * C, D, H, SW * WQ) in column order (fold_band's phased layout undone), out
    (N, C, D, H, W) or, where ``channels_last``, (N, D, H, W, C)."""
    wq = planes.shape[3] // sw
    if channels_last:
        n_img, d_n, h_n, w_n, c_n = out.shape
    else:
        n_img, c_n, d_n, h_n, w_n = out.shape
    for t in prange(n_img * d_n * h_n):
        n = t // (d_n * h_n)
        r = t - n * (d_n * h_n)
        z = r // h_n
        y = r - z * h_n
        for c in range(c_n):
            src = planes[n * c_n + c, z, y]
            dst = out[n, z, y, :, c] if channels_last else out[n, c, z, y]
            for phase in range(min(sw, w_n)):
                part = src[phase * wq:phase * wq + (w_n - phase + sw - 1) // sw]
                cols = dst[phase::sw]
                for m in range(part.size):
                    cols[m] = part[m]


@register("conv_input_grad", "cpu", "columns", supports=supports_columns,
          note="W^T @ grad_output per group into (channels x taps, pixels) columns, then a race-free gather "
               "fold onto the input (few input channels: stems)")
def conv_input_grad_columns(spec, grad_output, weight):
    dtype = working_dtype(np.dtype(spec.dtype))
    groups, cg, kg = spec.groups, spec.in_per_group, spec.out_per_group
    geom = geometry3(spec)
    taps, pixels = math.prod(geom.kernel), math.prod(spec.out_size)
    result = np.empty(spec.input_shape, np.dtype(spec.dtype))
    if result.size == 0:
        return result
    w = np.ascontiguousarray(weight, dtype=dtype).reshape(groups, kg, cg * taps)
    out_rows, row_pixels = pixels // geom.out_size[2], geom.out_size[2]
    sw = geom.stride[2]
    lifted = (spec.batch, *geom.in_size, spec.in_channels) if spec.channels_last else \
        (spec.batch, spec.in_channels, *geom.in_size)
    result5 = result.reshape(lifted)
    image_cols = spec.in_channels * taps * pixels * dtype.itemsize
    for n0, n1 in chunks(spec.batch, image_cols, BAND_BYTES):  # whole images while their columns fit
        n = n1 - n0
        g = np.asarray(grad_output[n0:n1], dtype=dtype)
        if spec.channels_last:
            g = g.reshape(n, pixels, spec.out_channels).transpose(0, 2, 1)
        else:
            g = g.reshape(n, spec.out_channels, pixels)
        planes = np.zeros((n * spec.in_channels, *geom.in_size[:2], sw * -(-geom.in_size[2] // sw)), dtype)
        band = max(1, BAND_BYTES // (n * spec.in_channels * taps * row_pixels * dtype.itemsize))
        cols = np.empty((n, groups, cg * taps, min(band, out_rows) * row_pixels), dtype)
        for r0 in range(0, out_rows, band):
            r1 = min(r0 + band, out_rows)
            p0, p1 = r0 * row_pixels, r1 * row_pixels
            part = cols[..., :p1 - p0]
            for j in range(groups):
                gemm(w[j].T, g[:, j * kg:(j + 1) * kg, p0:p1], part[:, j], threads=GEMM_THREADS)
            fold_band(part.reshape(n * spec.in_channels, taps, p1 - p0), r0, r1, *geom.kernel, *geom.stride,
                      *geom.dilation, *(b for b, _ in geom.pads), *geom.out_size, geom.in_size[2], True, planes)
        images = result5[n0:n1] if result.dtype == dtype else np.empty((n, *result5.shape[1:]), dtype)
        unsplit_phases(planes, sw, spec.channels_last, images)
        if result.dtype != dtype:
            result5[n0:n1] = images
    return result
