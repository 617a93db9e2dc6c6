"""Zeros-padded convolution as im2col over only the taps that read the input ("taps").

With a large dilation the padded input is mostly zeros (DeepLab's ASPP: a 3x3 kernel at
dilation 18 on a 33x33 map reads padding at 60% of its tap-pixel pairs). Per spatial
dim, the kernel taps whose input lies inside the unpadded input form one range per
output index, and consecutive outputs with the same range form a band (bands under
MIN_BAND outputs merge into a neighbour, their few padded taps gathered as zeros); a
product of bands is a region: a box of output pixels that all read the same box of
taps. Per region (and chunk of its output lines), a Numba kernel gathers the columns of
those taps only, one contiguous matrix per contiguous block of the packed weight (taps
outside the region's range in an inner kernel dim split it); NumPy's BLAS multiplies
each by its block, the products are summed in float32/float64 (a rounding order of its
own, within the conv tolerances), and a Numba epilogue adds the bias and the activation
while writing the region into the output in the user's layout. A region whose taps all
read padding gets the bias alone.

Layouts: contiguous channels-last input in the working dtype is read in place; anything
else (channels-first, non-contiguous, float16) is first copied to contiguous
channels-last in one parallel pass (0.7 ms single-threaded for ASPP's 2.2 MB input,
against about 20 ms of GEMMs). Gathering from channels-first directly was slower (41
against 34 ms single-threaded at rate 6): its columns come out transposed, and the GEMM
then reads the weight with a stride.
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
from .layout import ACTIVATION_CODES, activate, bias_vector, channels_last_5d, geometry3, padded_input

# Bands narrower than this merge into a neighbour (their taps' hull): fewer, larger GEMMs
# for a few products with padding (ASPP at dilation 18 on 33 rows: bands 15, 3, 15 -> 18, 15).
MIN_BAND = 4
# Columns per chunk at most (and half the workspace cap): the buffer is reused by every chunk.
CHUNK_BYTES = 32 << 20


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

    Returns the taps per run and, per run in the box's own tap order, its kernel-index
    slices: the dims inside the innermost partial one are whole, so each run is one
    contiguous block.
    """
    counts = [k1 - k0 for k0, k1 in taps]
    j = 2
    while j > 0 and counts[j] == kernel[j]:
        j -= 1
    outer = itertools.product(*(range(k0, k1) for k0, k1 in taps[:j]))
    return math.prod(counts[j:]), [tuple(o) + (slice(*taps[j]),) for o in outer]


@parallel_kernel
def pack_weight(w, groups, cg, taps, out):
    """out[g, t, c, k] = w[g*Kg + k, c, t]: (K, Cg, taps) to (G, taps, Cg, Kg), both flat, in tiles
    of 16 output channels: per input channel, the adjacent taps of 16 weight rows are read
    together and written as 16-wide runs."""
    kg = w.size // (groups * cg * taps)
    k_tiles = (kg + 15) // 16
    for task in prange(groups * k_tiles):
        g = task // k_tiles
        k0 = (task - g * k_tiles) * 16
        k1 = min(k0 + 16, kg)
        for c in range(cg):
            for t in range(taps):
                o = ((g * taps + t) * cg + c) * kg
                i = (g * kg * cg + c) * taps + t
                for k in range(k0, k1):
                    out[uint64(o + k)] = w[uint64(i + k * cg * taps)]


@parallel_kernel
def gather_nhwc(x, shape, region, taps, geo, l0, n_p, run, cols):
    """cols[g, t // run, p, (t % run)*Cg + c] = x[n, id, ih, iw, g*Cg + c], or 0 where that reads
    padding, for the region's output lines l0.. (flat over n, od, oh; p = line * width + ow)
    and its taps t (kd, kh, kw): each run of taps (one weight block) is its own contiguous
    matrix. x and cols are flat: x (N, D, H, W, C) of ``shape``, cols (G, T/run, n_p, run*Cg)."""
    in_d, in_h, in_w, c_n, groups = shape[1], shape[2], shape[3], shape[4], shape[5]
    cg = c_n // groups
    od0, od1, oh0, oh1, ow0, ow1 = region[0], region[1], region[2], region[3], region[4], region[5]
    kd0, kd1, kh0, kh1, kw0, kw1 = taps[0], taps[1], taps[2], taps[3], taps[4], taps[5]
    sd, sh, sw, dd, dh, dw, pd, ph, pw = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6], geo[7], geo[8]
    width = ow1 - ow0
    n_oh = oh1 - oh0
    n_od = od1 - od0
    n_taps = (kd1 - kd0) * (kh1 - kh0) * (kw1 - kw0)
    block = n_p * run * cg  # one weight block's matrix
    zero = cols.dtype.type(0)
    for p in prange(n_p):
        line = l0 + p // width
        ow = ow0 + p % width
        n = line // (n_od * n_oh)
        q = line - n * (n_od * n_oh)
        od = od0 + q // n_oh
        oh = oh0 + q % n_oh
        t = 0
        for kd in range(kd0, kd1):
            i_d = od * sd + kd * dd - pd
            for kh in range(kh0, kh1):
                i_h = oh * sh + kh * dh - ph
                for kw in range(kw0, kw1):
                    i_w = ow * sw + kw * dw - pw
                    b = t // run
                    dst = b * block + (p * run + t - b * run) * cg
                    if 0 <= i_d < in_d and 0 <= i_h < in_h and 0 <= i_w < in_w:
                        src = (((n * in_d + i_d) * in_h + i_h) * in_w + i_w) * c_n
                        for g in range(groups):
                            o = dst + g * n_taps * n_p * cg
                            i = src + g * cg
                            for c in range(cg):
                                cols[uint64(o + c)] = x[uint64(i + c)]
                    else:
                        for g in range(groups):
                            o = dst + g * n_taps * n_p * cg
                            for c in range(cg):
                                cols[uint64(o + c)] = zero
                    t += 1


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
    """out[n, g*Kg + k, od, oh, ow] = act(acc[g, p, k] + bias) (out (N, K, OD, OH, OW)) over the
    region's lines l0..; tiles of 16 channels, so a line's (width, 16) block of acc stays in L1."""
    groups, n_p, kg = acc.shape
    od0, od1, oh0, oh1, ow0, ow1 = region[0], region[1], region[2], region[3], region[4], region[5]
    width = ow1 - ow0
    n_oh = oh1 - oh0
    n_od = od1 - od0
    n_lines = n_p // width
    k_tiles = (kg + 15) // 16
    for task in prange(groups * k_tiles):
        g = task // k_tiles
        k0 = (task - g * k_tiles) * 16
        k1 = min(k0 + 16, kg)
        for li in range(n_lines):
            line = l0 + li
            n = line // (n_od * n_oh)
            q = line - n * (n_od * n_oh)
            od = od0 + q // n_oh
            oh = oh0 + q % n_oh
            for k in range(k0, k1):
                b = bias[g * kg + k]
                for j in range(width):
                    out[n, g * kg + k, od, oh, ow0 + j] = activate(acc[g, li * width + j, k] + b, act)


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
    lifted_out = (n, *geom.out_size, spec.out_channels) if cl else (n, spec.out_channels, *geom.out_size)
    if cl and x.dtype == dtype and x.flags.c_contiguous:
        xs = x
    else:  # one parallel pass to contiguous channels-last (0.7 ms single-threaded on ASPP's 2.2 MB input)
        xs = padded_input(channels_last_5d(x, spec.nd, cl), geom._replace(pads=((0, 0),) * 3), "zeros", 0.0, dtype)
    out = np.empty(lifted_out, dtype)
    xflat = xs.reshape(-1)
    shape = np.array([n, *geom.in_size, spec.in_channels, g_n], np.int64)
    # (G, KD, KH, KW, Cg, Kg): a region's taps are row runs of wp[g], each a contiguous (run * Cg, Kg)
    # GEMM operand (as a transposed view of (Kg, run * Cg) rows the GEMMs took 5-10% longer)
    wp = np.empty((g_n, *geom.kernel, cg, kg), dtype)
    pack_weight(np.ascontiguousarray(weight, dtype=dtype).reshape(-1), g_n, cg, math.prod(geom.kernel),
                wp.reshape(-1))
    b = bias_vector(bias, spec, dtype)
    act = ACTIVATION_CODES[spec.activation]
    geo = np.array([*geom.stride, *geom.dilation, *(p[0] for p in geom.pads)], np.int64)
    scatter = scatter_nhwc if cl else scatter_nchw
    plan = []
    for box, taps in regions(geom):
        n_lines = n * (box[1] - box[0]) * (box[3] - box[2])
        n_taps = math.prod(k1 - k0 for k0, k1 in taps)
        run, blocks = weight_blocks(taps, geom.kernel) if n_taps else (0, [])
        plan.append((np.array(box, np.int64), np.array([k for r in taps for k in r], np.int64), n_lines,
                     box[5] - box[4], n_taps, run, blocks))
    # One buffer each for columns and products, reused by every region: a fresh array per
    # region pays the page faults of its first touch again.
    line_elems = max(width * g_n * n_taps * cg for *_, width, n_taps, _, _ in plan)
    budget = max(1, min(workspace_limit() // 2, CHUNK_BYTES) // dtype.itemsize)
    lines = max(1, min(max(p[2] for p in plan), budget // max(line_elems, 1)))
    max_p = lines * max(p[3] for p in plan)
    cols_buf = np.empty(max(lines * line_elems, 1), dtype)
    acc_buf = np.empty(g_n * kg * max_p, dtype)
    tmp_buf = np.empty(kg * max_p, dtype)
    for region, tap_box, n_lines, width, n_taps, run, blocks in plan:
        step = max(1, budget // max(width * g_n * n_taps * cg, 1))
        for l0, l1 in chunks(n_lines, 1, min(step, lines)):
            n_p = (l1 - l0) * width
            acc = acc_buf[:g_n * kg * n_p].reshape(g_n, n_p, kg)
            if n_taps == 0:
                acc[...] = 0
                scatter(acc, b, act, region, l0, out)
                continue
            cols = cols_buf[:g_n * n_taps * cg * n_p]
            gather_nhwc(xflat, shape, region, tap_box, geo, l0, n_p, run, cols)
            cols = cols.reshape((g_n, len(blocks), n_p, run * cg))
            tmp = tmp_buf[:kg * n_p].reshape(n_p, kg)
            for g in range(g_n):
                for i, index in enumerate(blocks):
                    wb = wp[g][index].reshape(-1, kg)  # a view: (run * Cg, Kg)
                    if i == 0:
                        np.matmul(cols[g, i], wb, out=acc[g])
                    else:
                        np.matmul(cols[g, i], wb, out=tmp)
                        acc[g] += tmp
            scatter(acc, b, act, region, l0, out)
    out = out.reshape(spec.output_shape)
    return out if dtype == spec.dtype else out.astype(spec.dtype)
