"""Zeros-padded convolution as im2col over only the taps that read the input ("taps").

With a large dilation the padded input is mostly zeros (DeepLab's ASPP: a 3x3 kernel at
dilation 18 on a 33x33 map reads padding at 60% of its tap-pixel pairs). Per spatial
dim, the kernel taps whose input lies inside the unpadded input form one range per
output index, and consecutive outputs with the same range form a band (bands under
MIN_BAND outputs merge into a neighbour, their few padded taps gathered as zeros); a
product of bands is a region: a box of output pixels that all read the same box of
taps. For every region (in chunks of output lines within the workspace), one Numba
kernel gathers the columns of those taps only, one contiguous matrix per contiguous
block of the packed weight (taps outside the region's range in an inner kernel dim split
it); then NumPy's BLAS multiplies each by its block, the products of a region are summed
in float32/float64 (a rounding order of its own, within the conv tolerances), and one
Numba epilogue adds the bias and the activation while writing every region into the
output in the user's layout. A region whose taps all read padding gets the bias alone.

Layouts: contiguous channels-last input in the working dtype is read in place; anything
else (channels-first, non-contiguous, float16) is first copied to contiguous
channels-last in one parallel pass (0.7 ms single-threaded for ASPP's 2.2 MB input,
against about 20 ms of GEMMs). Gathering from channels-first directly was slower (41
against 34 ms single-threaded at rate 6): its columns come out transposed, and the GEMM
then reads the weight with a stride.

Threads: every step runs on fastconv's threads, the GEMMs through
:func:`fastconv.cpu.blas.gemm` (OpenBLAS on one thread per block; later blocks of a
region accumulate into its output with beta = 1). With OpenBLAS's own pool, calls
stalled for whole scheduler ticks while other processes were busy (ASPP 3-20x PyTorch's
time).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from numba import prange, uint64

from ..._arrays import working_dtype
from ..._workspace import chunks, workspace_limit
from ...dispatch import register
from ...kernels.activation import ACTIVATION_CODES, activate
from ...kernels.geometry import geometry3
from ...kernels.inline import inline_helper
from .._jit import parallel_kernel
from ..blas import gemm
from ..layout import bias_vector, channels_last_5d, contiguous_channels_last
from ..weights import all_finite

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


def regions(geom, min_band=MIN_BAND):
    """Products of the per-dim bands of a Geometry3: ((od0, od1, oh0, oh1, ow0, ow1), ((kd0, kd1), ...))."""
    per_dim = [tap_bands(i, k, s, d, p[0], o, min_band) for i, k, s, d, p, o in
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


# Columns of a piece (a chunk of one region's output lines), one row of the int64 piece table.
OD0, OW0, KD0, L0, N_P, RUN, COL_OFF, P_OFF, LINE_OFF, FIELDS = 0, 4, 6, 12, 13, 14, 15, 16, 17, 18


@inline_helper
def _piece_line(pieces, i, line):
    """(n, od, oh) of piece i's region line ``line`` (flat over n, od, oh)."""
    n_oh = pieces[i, 3] - pieces[i, 2]
    n_od_oh = (pieces[i, 1] - pieces[i, 0]) * n_oh
    n = line // n_od_oh
    q = line - n * n_od_oh
    return n, pieces[i, 0] + q // n_oh, pieces[i, 2] + q % n_oh


@inline_helper
def _line_origin(pieces, line_owner, li):
    """Output line li (of all pieces' lines): its piece's width, (n, od, oh), first column,
    and where its first pixel sits in the accumulator."""
    pi = line_owner[li]
    width = pieces[pi, 5] - pieces[pi, 4]
    local = li - pieces[pi, LINE_OFF]
    n, od, oh = _piece_line(pieces, pi, pieces[pi, L0] + local)
    return width, n, od, oh, pieces[pi, OW0], pieces[pi, P_OFF] + local * width


@parallel_kernel
def gather_nhwc(x, shape, geo, pieces, pix_owner, cols):
    """Per piece (a row of ``pieces``) and its pixel p (flat over its lines, then ow):
    cols[off + ((g*B + t // run)*n_p + p)*run*Cg + (t % run)*Cg + c] = x[n, id, ih, iw, g*Cg + c],
    or 0 where that reads padding, for its taps t (kd, kh, kw): each run of taps (one weight
    block) is its own contiguous (n_p, run*Cg) matrix. x (N, D, H, W, C) of ``shape``, flat."""
    in_d, in_h, in_w, c_n, groups = shape[1], shape[2], shape[3], shape[4], shape[5]
    cg = c_n // groups
    sd, sh, sw, dd, dh, dw, pd, ph, pw = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6], geo[7], geo[8]
    zero = cols.dtype.type(0)
    for pp in prange(pix_owner.size):
        pi = pix_owner[pp]
        kd0, kd1, kh0, kh1 = pieces[pi, 6], pieces[pi, 7], pieces[pi, 8], pieces[pi, 9]
        kw0, kw1 = pieces[pi, 10], pieces[pi, 11]
        width = pieces[pi, 5] - pieces[pi, 4]
        n_p = pieces[pi, N_P]
        run = pieces[pi, RUN]
        p = pp - pieces[pi, P_OFF]
        n, od, oh = _piece_line(pieces, pi, pieces[pi, L0] + p // width)
        ow = pieces[pi, OW0] + p % width
        n_taps = (kd1 - kd0) * (kh1 - kh0) * (kw1 - kw0)
        block = n_p * run * cg  # one weight block's matrix
        t = 0
        for kd in range(kd0, kd1):
            i_d = od * sd + kd * dd - pd
            for kh in range(kh0, kh1):
                i_h = oh * sh + kh * dh - ph
                for kw in range(kw0, kw1):
                    i_w = ow * sw + kw * dw - pw
                    b = t // run
                    dst = pieces[pi, COL_OFF] + b * block + (p * run + t - b * run) * cg
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
def scatter_nhwc(acc, bias, act, pieces, line_owner, out):
    """out[n, od, oh, ow, g*Kg + k] = act(acc[g, p, k] + bias) (out (N, OD, OH, OW, K)) for every
    pixel of every piece (acc (G, pixels of all pieces, Kg))."""
    groups, _, kg = acc.shape
    for li in prange(line_owner.size):
        width, n, od, oh, ow0, p = _line_origin(pieces, line_owner, li)
        for j in range(width):
            for g in range(groups):
                for k in range(kg):
                    out[n, od, oh, ow0 + j, g * kg + k] = activate(acc[g, p + j, k] + bias[g * kg + k], act)


@parallel_kernel
def scatter_nchw(acc, bias, act, pieces, line_owner, out):
    """out[n, g*Kg + k, od, oh, ow] = act(acc[g, p, k] + bias) (out (N, K, OD, OH, OW)), as
    scatter_nhwc; tasks of one line and 16 channels, so the line's (width, 16) block of acc
    stays in L1 while it is transposed."""
    groups, _, kg = acc.shape
    k_tiles = (kg + 15) // 16
    tiles = groups * k_tiles
    for task in prange(line_owner.size * tiles):
        li = task // tiles
        g = (task - li * tiles) // k_tiles
        k0 = (task - li * tiles - g * k_tiles) * 16
        width, n, od, oh, ow0, p = _line_origin(pieces, line_owner, li)
        for k in range(k0, min(k0 + 16, kg)):
            b = bias[g * kg + k]
            for j in range(width):
                out[n, g * kg + k, od, oh, ow0 + j] = activate(acc[g, p + j, k] + b, act)


def _batches(geom, n_img, c_n, budget):
    """Lists of pieces (region box, taps, first line, lines), each list's columns within
    ``budget`` elements (a single line over it is a batch of its own)."""
    batch, size = [], 0
    for box, taps in regions(geom):
        n_taps = math.prod(k1 - k0 for k0, k1 in taps)
        width = box[5] - box[4]
        line = max(width * n_taps * c_n, 1)
        for l0, l1 in chunks(n_img * (box[1] - box[0]) * (box[3] - box[2]), line, budget):
            cost = (l1 - l0) * line
            if batch and size + cost > budget:
                yield batch
                batch, size = [], 0
            batch.append((box, taps, l0, l1 - l0))
            size += cost
    if batch:
        yield batch


def _run_batch(batch, xflat, shape, geo, wp, bias, act, channels_last, out):
    """Gather every piece's columns (one parallel kernel), then every GEMM, then write every
    piece (one parallel kernel)."""
    g_n, kernel, cg, kg = wp.shape[0], wp.shape[1:4], wp.shape[4], wp.shape[5]
    dtype = wp.dtype
    table = np.zeros((len(batch), FIELDS), np.int64)
    work = []
    col_off = p_off = line_off = 0
    for i, (box, taps, l0, lines) in enumerate(batch):
        width = box[5] - box[4]
        n_p = lines * width
        n_taps = math.prod(k1 - k0 for k0, k1 in taps)
        run, blocks = weight_blocks(taps, kernel) if n_taps else (1, [])
        table[i, :12] = [*box, *(k for r in taps for k in r)]
        table[i, L0:] = [l0, n_p, run, col_off, p_off, line_off]
        work.append((n_p, n_taps, run, blocks, col_off, p_off))
        col_off += g_n * n_taps * cg * n_p
        p_off += n_p
        line_off += lines
    cols = np.empty(max(col_off, 1), dtype)
    gather_nhwc(xflat, shape, geo, table, np.repeat(np.arange(len(batch)), table[:, N_P]), cols)
    acc = np.empty((g_n, p_off, kg), dtype)
    for n_p, n_taps, run, blocks, c0, p0 in work:
        if not blocks:  # every tap reads padding: the bias alone
            acc[:, p0:p0 + n_p] = 0
            continue
        piece = cols[c0:c0 + g_n * n_taps * cg * n_p].reshape(g_n, len(blocks), n_p, run * cg)
        for g in range(g_n):
            for i, index in enumerate(blocks):
                wb = wp[g][index].reshape(-1, kg)  # a view: (run * Cg, Kg)
                gemm(piece[g, i], wb, acc[g, p0:p0 + n_p], accumulate=i > 0)
    line_owner = np.repeat(np.arange(len(batch)), [lines for *_, lines in batch])
    (scatter_nhwc if channels_last else scatter_nchw)(acc, bias, act, table, line_owner, out)


def _zeros_dilated(spec):
    if spec.padding_mode != "zeros":
        return "padding_mode must be 'zeros' (it skips the taps that read padding)"
    if all(d == 1 for d in spec.dilation):
        return "serves dilated convolutions only (dilation > 1), where many taps read padding"
    return None


@register("conv", "cpu", "taps", supports=_zeros_dilated,
          note="im2col over only the taps inside the input, per output region; GEMM on fastconv's threads")
def conv_taps(spec, x, weight, bias):
    if not all_finite(weight):
        # the taps that read padding are skipped; a NaN or inf weight must meet those zeros
        # (0 * inf is NaN, as in PyTorch and the reference): the direct kernel pads them
        from .direct.run import conv_direct

        return conv_direct(spec, x, weight, bias)
    dtype = working_dtype(np.dtype(spec.dtype))
    geom = geometry3(spec)
    cl = spec.channels_last
    g_n, cg, kg = spec.groups, spec.in_per_group, spec.out_per_group
    n = spec.batch
    lifted_out = (n, *geom.out_size, spec.out_channels) if cl else (n, spec.out_channels, *geom.out_size)
    if cl and x.dtype == dtype and x.flags.c_contiguous:
        xs = x
    else:  # one parallel pass to contiguous channels-last (0.7 ms single-threaded on ASPP's 2.2 MB input)
        xs = contiguous_channels_last(channels_last_5d(x, spec.nd, cl), dtype)
    out = np.empty(lifted_out, dtype)
    shape = np.array([n, *geom.in_size, spec.in_channels, g_n], np.int64)
    # (G, KD, KH, KW, Cg, Kg): a region's taps are row runs of wp[g], each a contiguous (run * Cg, Kg)
    # GEMM operand (as a transposed view of (Kg, run * Cg) rows the GEMMs took 5-10% longer)
    wp = np.empty((g_n, *geom.kernel, cg, kg), dtype)
    pack_weight(np.ascontiguousarray(weight, dtype=dtype).reshape(-1), g_n, cg, math.prod(geom.kernel),
                wp.reshape(-1))
    b = bias_vector(bias, spec, dtype)
    act = ACTIVATION_CODES[spec.activation]
    geo = np.array([*geom.stride, *geom.dilation, *(p[0] for p in geom.pads)], np.int64)
    budget = max(1, min(workspace_limit() // 2, CHUNK_BYTES) // dtype.itemsize)
    for batch in _batches(geom, n, g_n * cg, budget):
        _run_batch(batch, xs.reshape(-1), shape, geo, wp, b, act, cl, out)
    out = out.reshape(spec.output_shape)
    return out if dtype == spec.dtype else out.astype(spec.dtype)
