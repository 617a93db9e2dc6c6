"""Zeros-padded convolution as im2col over only the taps that read the input ("taps").

With a large dilation the padded input is mostly zeros (DeepLab's ASPP: a 3x3 kernel at
dilation 18 on a 33x33 map reads padding at 60% of its tap-pixel pairs). Per spatial
dim, the kernel taps whose input lies inside the unpadded input form one range per
output index, and consecutive outputs with the same range form a band; a product of
bands is a region: a box of output pixels that all read the same box of taps. Per
region (and chunk of its output lines), a Numba kernel gathers the columns of those
taps only from the user's unpadded input, NumPy's BLAS multiplies them by the matching
rows of the packed weight (one GEMM per contiguous weight block: taps outside the
region's range in an inner kernel dim split it), and a Numba epilogue adds the bias and
the activation while writing the region into the output. No padded copy, no layout
conversion: channels-last input gives columns (pixels, taps*C/G) and out = cols @ W;
channels-first input gives (taps*C/G, pixels) and out = W.T @ cols, each read and
written in the user's layout. A region whose taps all read padding gets the bias alone.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from numba import prange, uint64

from .._arrays import working_dtype
from .._jit import parallel_kernel
from .._workspace import chunks, workspace_limit
from ..dispatch import register
from .layout import ACTIVATION_CODES, activate, bias_vector, geometry3

# Bands narrower than this merge into a neighbour (their taps' hull): fewer, larger GEMMs
# for a few products with padding (ASPP at dilation 18 on 33 rows: bands 15, 3, 15 -> 18, 15).
MIN_BAND = 4


def tap_bands(in_n, k_n, s, d, pad, out_n, min_band=MIN_BAND):
    """[(o0, o1, k0, k1)]: outputs o0 <= o < o1 read the input with taps k0 <= k < k1 (k0 == k1: none);
    any other tap of those outputs reads padding. Bands under min_band outputs are merged."""
    bands = []
    for o in range(out_n):
        base = o * s - pad  # input index of tap 0
        k0 = -(base // d) if base < 0 else 0
        k1 = min(k_n, (in_n - 1 - base) // d + 1) if in_n - 1 >= base else 0
        if k1 <= k0:
            k0 = k1 = 0
        if bands and bands[-1][2:] == (k0, k1):
            bands[-1] = (bands[-1][0], o + 1, k0, k1)
        else:
            bands.append((o, o + 1, k0, k1))
    while len(bands) > 1:
        i = min(range(len(bands)), key=lambda j: bands[j][1] - bands[j][0])
        if bands[i][1] - bands[i][0] >= min_band:
            break
        options = []
        for j in (i - 1, i + 1):
            if 0 <= j < len(bands):
                a, b = sorted((bands[i], bands[j]))
                taps = [t for t in (a, b) if t[3] > t[2]]
                k0, k1 = (min(t[2] for t in taps), max(t[3] for t in taps)) if taps else (0, 0)
                extra = sum((t[1] - t[0]) * ((k1 - k0) - (t[3] - t[2])) for t in (a, b))
                options.append((extra, j, (a[0], b[1], k0, k1)))
        _, j, merged = min(options)
        bands[min(i, j)] = merged
        del bands[max(i, j)]
    return bands


def regions(geom):
    """Products of the per-dim bands of a Geometry3: ((od0, od1, oh0, oh1, ow0, ow1), ((kd0, kd1), ...))."""
    per_dim = [tap_bands(i, k, s, d, p[0], o) for i, k, s, d, p, o in
               zip(geom.in_size, geom.kernel, geom.stride, geom.dilation, geom.pads, geom.out_size)]
    for bd, bh, bw in itertools.product(*per_dim):
        yield bd[:2] + bh[:2] + bw[:2], (bd[2:], bh[2:], bw[2:])


def weight_blocks(taps, kernel):
    """Contiguous runs of the packed (KD, KH, KW) tap order within a box of taps.

    Yields (offset in the box's own tap order, kernel-index slices) per run: the dims
    inside the innermost partial one are whole, so each run is one contiguous block.
    """
    counts = [k1 - k0 for k0, k1 in taps]
    j = 2
    while j > 0 and counts[j] == kernel[j]:
        j -= 1
    run = math.prod(counts[j:])
    for outer in itertools.product(*(range(k0, k1) for k0, k1 in taps[:j])):
        rel = [o - k0 for o, (k0, _) in zip(outer, taps)]
        offset = 0
        for r, c in zip(rel, counts):
            offset = offset * c + r
        yield offset * run, tuple(outer) + (slice(*taps[j]),)


@parallel_kernel
def gather_nhwc(x, shape, region, taps, geo, l0, n_p, cols):
    """cols[g, p, t*Cg + c] = x[n, id, ih, iw, g*Cg + c], or 0 where that reads padding, for the
    region's output lines l0.. (flat over n, od, oh; p = line * width + ow) and its taps t
    (kd, kh, kw). x and cols are flat: x (N, D, H, W, C) of ``shape``, cols (G, n_p, T*Cg)."""
    in_d, in_h, in_w, c_n, groups = shape[1], shape[2], shape[3], shape[4], shape[5]
    cg = c_n // groups
    od0, od1, oh0, oh1, ow0, ow1 = region[0], region[1], region[2], region[3], region[4], region[5]
    kd0, kd1, kh0, kh1, kw0, kw1 = taps[0], taps[1], taps[2], taps[3], taps[4], taps[5]
    sd, sh, sw, dd, dh, dw, pd, ph, pw = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6], geo[7], geo[8]
    width = ow1 - ow0
    n_oh = oh1 - oh0
    n_od = od1 - od0
    row = (kd1 - kd0) * (kh1 - kh0) * (kw1 - kw0) * cg
    zero = cols.dtype.type(0)
    for p in prange(n_p):
        line = l0 + p // width
        ow = ow0 + p % width
        n = line // (n_od * n_oh)
        q = line - n * (n_od * n_oh)
        od = od0 + q // n_oh
        oh = oh0 + q % n_oh
        dst = p * row
        for kd in range(kd0, kd1):
            i_d = od * sd + kd * dd - pd
            for kh in range(kh0, kh1):
                i_h = oh * sh + kh * dh - ph
                for kw in range(kw0, kw1):
                    i_w = ow * sw + kw * dw - pw
                    if 0 <= i_d < in_d and 0 <= i_h < in_h and 0 <= i_w < in_w:
                        src = (((n * in_d + i_d) * in_h + i_h) * in_w + i_w) * c_n
                        for g in range(groups):
                            o = dst + g * n_p * row
                            i = src + g * cg
                            for c in range(cg):
                                cols[uint64(o + c)] = x[uint64(i + c)]
                    else:
                        for g in range(groups):
                            o = dst + g * n_p * row
                            for c in range(cg):
                                cols[uint64(o + c)] = zero
                    dst += cg


@parallel_kernel
def gather_nchw(x, shape, region, taps, geo, l0, n_p, cols):
    """cols[g, t*Cg + c, p] = x[n, g*Cg + c, id, ih, iw] (x (N, C, D, H, W) of ``shape``, flat),
    or 0 where that reads padding: as gather_nhwc, transposed, so each row copies runs of
    one input row."""
    in_d, in_h, in_w, c_n, groups = shape[1], shape[2], shape[3], shape[4], shape[5]
    cg = c_n // groups
    od0, od1, oh0, oh1, ow0, ow1 = region[0], region[1], region[2], region[3], region[4], region[5]
    kd0, kd1, kh0, kh1, kw0, kw1 = taps[0], taps[1], taps[2], taps[3], taps[4], taps[5]
    sd, sh, sw, dd, dh, dw, pd, ph, pw = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6], geo[7], geo[8]
    width = ow1 - ow0
    n_oh = oh1 - oh0
    n_od = od1 - od0
    n_kh = kh1 - kh0
    n_kw = kw1 - kw0
    n_rows = (kd1 - kd0) * n_kh * n_kw * cg
    n_lines = n_p // width
    zero = cols.dtype.type(0)
    for task in prange(groups * n_rows):
        g = task // n_rows
        r = task - g * n_rows
        t = r // cg
        c = g * cg + r - t * cg
        kd = kd0 + t // (n_kh * n_kw)
        kh = kh0 + (t // n_kw) % n_kh
        kw = kw0 + t % n_kw
        i_w0 = ow0 * sw + kw * dw - pw
        # columns j0 <= j < j1 of a line read inside the input row
        j0 = min(width, (-i_w0 + sw - 1) // sw) if i_w0 < 0 else 0
        j1 = max(j0, min(width, (in_w - i_w0 + sw - 1) // sw)) if in_w > i_w0 else j0
        for li in range(n_lines):
            line = l0 + li
            n = line // (n_od * n_oh)
            q = line - n * (n_od * n_oh)
            i_d = (od0 + q // n_oh) * sd + kd * dd - pd
            i_h = (oh0 + q % n_oh) * sh + kh * dh - ph
            dst = task * n_p + li * width
            if 0 <= i_d < in_d and 0 <= i_h < in_h:
                src = (((n * c_n + c) * in_d + i_d) * in_h + i_h) * in_w + i_w0
                for j in range(j0):
                    cols[uint64(dst + j)] = zero
                if sw == 1:
                    for j in range(j0, j1):
                        cols[uint64(dst + j)] = x[uint64(src + j)]
                else:
                    for j in range(j0, j1):
                        cols[uint64(dst + j)] = x[uint64(src + j * sw)]
                for j in range(j1, width):
                    cols[uint64(dst + j)] = zero
            else:
                for j in range(width):
                    cols[uint64(dst + j)] = zero


@parallel_kernel
def scatter_nhwc(acc, bias, act, region, l0, out):
    """out[n, od, oh, ow, g*Kg + k] = act(acc[g, p, k] + bias) (out (N, OD, OH, OW, K)) over the region's lines l0.."""
    groups, n_p, kg = acc.shape
    od0, od1, oh0, oh1, ow0, ow1 = region[0], region[1], region[2], region[3], region[4], region[5]
    width = ow1 - ow0
    n_oh = oh1 - oh0
    n_od = od1 - od0
    for li in prange(n_p // width):
        line = l0 + li
        n = line // (n_od * n_oh)
        q = line - n * (n_od * n_oh)
        od = od0 + q // n_oh
        oh = oh0 + q % n_oh
        for j in range(width):
            for g in range(groups):
                for k in range(kg):
                    out[n, od, oh, ow0 + j, g * kg + k] = activate(acc[g, li * width + j, k] + bias[g * kg + k], act)


@parallel_kernel
def scatter_nchw(acc, bias, act, region, l0, out):
    """out[n, g*Kg + k, od, oh, ow] = act(acc[g, k, p] + bias) (out (N, K, OD, OH, OW)) over the region's lines l0.."""
    groups, kg, n_p = acc.shape
    od0, od1, oh0, oh1, ow0, ow1 = region[0], region[1], region[2], region[3], region[4], region[5]
    width = ow1 - ow0
    n_oh = oh1 - oh0
    n_od = od1 - od0
    n_lines = n_p // width
    for task in prange(groups * kg):
        g = task // kg
        k = task - g * kg
        b = bias[task]
        for li in range(n_lines):
            line = l0 + li
            n = line // (n_od * n_oh)
            q = line - n * (n_od * n_oh)
            od = od0 + q // n_oh
            oh = oh0 + q % n_oh
            for j in range(width):
                out[n, task, od, oh, ow0 + j] = activate(acc[g, k, li * width + j] + b, act)


def _zeros_dilated(spec):
    if spec.padding_mode != "zeros":
        return "padding_mode must be 'zeros' (it skips the taps that read padding)"
    if all(d == 1 for d in spec.dilation):
        return "serves dilated convolutions only (dilation > 1), where many taps read padding"
    return None


@register("conv", "cpu", "taps", supports=_zeros_dilated,
          note="im2col over only the taps inside the input, per output region; NumPy BLAS GEMM")
def conv_taps(spec, x, weight, bias):
    dtype = working_dtype(np.dtype(spec.dtype))
    geom = geometry3(spec)
    cl = spec.channels_last
    g_n, cg, kg = spec.groups, spec.in_per_group, spec.out_per_group
    n = spec.batch
    lifted_in = (n, *geom.in_size, spec.in_channels) if cl else (n, spec.in_channels, *geom.in_size)
    lifted_out = (n, *geom.out_size, spec.out_channels) if cl else (n, spec.out_channels, *geom.out_size)
    xs = np.ascontiguousarray(x, dtype=dtype).reshape(lifted_in)
    out = np.empty(lifted_out, dtype)
    xflat = xs.reshape(-1)
    shape = np.array([n, *geom.in_size, spec.in_channels, g_n], np.int64)
    # (G, Kg, KD, KH, KW, Cg): a region's taps are column runs of wp[g]; K stays outermost
    # (moving it innermost, as pack_conv_weight does, costs 6x more: 4.3 against 0.7 ms on ASPP's 4.7 MB)
    wp = np.ascontiguousarray(np.asarray(weight).reshape(g_n, kg, cg, *geom.kernel).transpose(0, 1, 3, 4, 5, 2),
                              dtype=dtype)
    b = bias_vector(bias, spec, dtype)
    act = ACTIVATION_CODES[spec.activation]
    geo = np.array([*geom.stride, *geom.dilation, *(p[0] for p in geom.pads)], np.int64)
    gather = gather_nhwc if cl else gather_nchw
    scatter = scatter_nhwc if cl else scatter_nchw
    budget = workspace_limit()
    for box, taps in regions(geom):
        width = box[5] - box[4]
        n_lines = n * (box[1] - box[0]) * (box[3] - box[2])
        n_taps = math.prod(k1 - k0 for k0, k1 in taps)
        region = np.array(box, np.int64)
        tap_box = np.array([k for r in taps for k in r], np.int64)
        line_bytes = width * g_n * (n_taps * cg + 2 * kg) * dtype.itemsize
        for l0, l1 in chunks(n_lines, line_bytes, budget):
            n_p = (l1 - l0) * width
            if n_taps == 0:
                acc = np.zeros((g_n, n_p, kg) if cl else (g_n, kg, n_p), dtype)
                scatter(acc, b, act, region, l0, out)
                continue
            cols = np.empty((g_n, n_p, n_taps * cg) if cl else (g_n, n_taps * cg, n_p), dtype)
            gather(xflat, shape, region, tap_box, geo, l0, n_p, cols.reshape(-1))
            acc = np.empty((g_n, n_p, kg) if cl else (g_n, kg, n_p), dtype)
            tmp = None
            for g in range(g_n):
                for i, (offset, index) in enumerate(weight_blocks(taps, geom.kernel)):
                    wb = wp[g][(slice(None),) + index].reshape(kg, -1)  # a view: (Kg, run * Cg)
                    lo, hi = offset * cg, offset * cg + wb.shape[1]
                    a, bm = (cols[g][:, lo:hi], wb.T) if cl else (wb, cols[g][lo:hi])
                    if i == 0:
                        np.matmul(a, bm, out=acc[g])
                    else:
                        if tmp is None:
                            tmp = np.empty(acc.shape[1:], dtype)
                        np.matmul(a, bm, out=tmp)
                        acc[g] += tmp
            scatter(acc, b, act, region, l0, out)
    out = out.reshape(spec.output_shape)
    return out if dtype == spec.dtype else out.astype(spec.dtype)
