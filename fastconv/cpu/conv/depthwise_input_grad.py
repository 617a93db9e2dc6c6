"""Input gradient of a strided depthwise convolution on the CPU (multiplier 1, zeros padding).

The input gradient is the depthwise transposed conv of grad_output: input pixel i gets
grad_output[o] * w[t] for every tap t with o * stride + t * dilation - pad == i. The
phase decomposition of the generic transposed conv runs each phase as its own forward
conv and interleaves the results (prod(stride) kernel specialisations and an extra copy);
here a task owns rows of the input gradient and sums the taps reaching each element in
the fixed order (kd, kh, kw) (channels-last: each pixel written once; channels-first: in a
scratch row, phase by phase): no atomics, no copies beyond a float16 or non-contiguous
operand, and the user's layout read and written as it is. Channels-first 3x3 stride-2 planes skip
the scratch row: narrow ones as four phase planes of flat loops (phase_plane), wider rows two
columns a step (plane_rows).
Stride 1 layers take the forward depthwise kernel with the flipped weight instead
(input_grad.py).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ..._arrays import working_dtype
from ..._threads import balanced, restore
from ...kernels.geometry import geometry3, lift3
from ...kernels.inline import inline_helper
from .._jit import parallel_kernel
from ..layout import as_working, channels_last_5d
from .depthwise.common import u

PHASE_WIDTH = 32  # phase_plane's grad_output rows at most this wide (wider rows vectorize along the row)
PHASE_STEP = 16  # phase_plane's flat loops run a multiple of this long (no scalar remainder)
PLANE_TASKS = 64  # rows (channels-last) or planes (channels-first) in at most this many tasks, each allocating
# its scratch once


@inline_helper
def source_rows(n, k_n, s, d, p, o_n):
    """table[i * k_n + k]: the grad_output row that tap k brings to input row i (i + p - k * d
    == o * s), or -1. Built once per call: floor divisions per row and tap would cost more
    than a short row's adds."""
    table = np.full(n * k_n, -1, np.int64)
    for i in range(n):
        for k in range(k_n):
            q = i + p - k * d
            if q >= 0 and q % s == 0 and q // s < o_n:
                table[i * k_n + k] = q // s
    return table


@inline_helper
def _column_ranges(w_n, kw_n, sw, dw, pw, ow_n):
    """(lo, hi, off) per kw: the output columns [lo, hi) whose input column ow * sw + off,
    off = kw * dw - pw, lies in the row."""
    table = np.zeros((kw_n, 3), np.int64)
    for kw in range(kw_n):
        off = kw * dw - pw
        lo = 0 if off >= 0 else (sw - 1 - off) // sw
        hi = min(ow_n, (w_n - 1 - off) // sw + 1) if w_n - 1 - off >= 0 else 0
        table[kw, 0] = lo
        table[kw, 1] = max(lo, hi)
        table[kw, 2] = off
    return table


@inline_helper
def pixel_row(gf, wf, of, t, k0, k1, scratch, d_n, h_n, w_n, c_n, od_n, oh_n, ow_n, kd_n, kh_n, kw_n, rows_d, rows_h,
              cols):
    """Input-gradient row t (n, d, h) of depthwise_input_grad_ndhwc, channels [k0, k1); gf, wf, of flat,
    ``scratch`` (4, KD * KH * KW) int64."""
    zero = of.dtype.type(0)
    n = t // (d_n * h_n)
    r = t - n * (d_n * h_n)
    i_d = r // h_n
    i_h = r - i_d * h_n
    orow = t * w_n * c_n
    grows, wrows, gs, ws = scratch[0], scratch[1], scratch[2], scratch[3]  # the grad_output rows reaching
    n_rows = 0  # this row and their taps; per pixel, the grad_output pixels and their taps
    for kd in range(kd_n):
        o_d = rows_d[i_d * kd_n + kd]
        if o_d < 0:
            continue
        for kh in range(kh_n):
            o_h = rows_h[i_h * kh_n + kh]
            if o_h < 0:
                continue
            grows[n_rows] = ((n * od_n + o_d) * oh_n + o_h) * ow_n * c_n
            wrows[n_rows] = (kd * kh_n + kh) * kw_n
            n_rows += 1
    for iw in range(w_n):
        m = 0
        for j in range(n_rows):
            for kw in range(kw_n):
                ow = cols[iw * kw_n + kw]
                if ow >= 0:
                    gs[m] = grows[j] + ow * c_n
                    ws[m] = (wrows[j] + kw) * c_n
                    m += 1
        ob = orow + iw * c_n
        if m == 1:
            g0, w0 = gs[0], ws[0]
            for c in range(k0, k1):
                of[u(ob + c)] = zero + gf[u(g0 + c)] * wf[u(w0 + c)]
        elif m == 2:
            g0, w0, g1, w1 = gs[0], ws[0], gs[1], ws[1]
            for c in range(k0, k1):
                of[u(ob + c)] = zero + gf[u(g0 + c)] * wf[u(w0 + c)] + gf[u(g1 + c)] * wf[u(w1 + c)]
        elif m == 4:
            g0, w0, g1, w1, g2, w2, g3, w3 = gs[0], ws[0], gs[1], ws[1], gs[2], ws[2], gs[3], ws[3]
            for c in range(k0, k1):
                of[u(ob + c)] = (zero + gf[u(g0 + c)] * wf[u(w0 + c)] + gf[u(g1 + c)] * wf[u(w1 + c)]
                                 + gf[u(g2 + c)] * wf[u(w2 + c)] + gf[u(g3 + c)] * wf[u(w3 + c)])
        else:
            for c in range(k0, k1):
                of[u(ob + c)] = zero
            for j in range(m):
                g0, w0 = gs[j], ws[j]
                for c in range(k0, k1):
                    of[u(ob + c)] += gf[u(g0 + c)] * wf[u(w0 + c)]


@parallel_kernel
def depthwise_input_grad_ndhwc(g, wt, out, sd, sh, sw, dd, dh, dw, pd, ph, pw):
    """out (N, D, H, W, C) = the input gradient from g (N, OD, OH, OW, C) and the weight as
    wt (KD, KH, KW, C). A task owns a run of output rows (n, d, h). Each pixel lists the taps that
    reach it, in the order (kd, kh, kw), and its channels are written once as their sum (up to four
    taps in one vectorized loop, a 3x3 stride-2 layer's most): no zeroing pass, no adds into
    memory."""
    n_img, d_n, h_n, w_n, c_n = out.shape
    od_n, oh_n, ow_n = g.shape[1], g.shape[2], g.shape[3]
    kd_n, kh_n, kw_n = wt.shape[0], wt.shape[1], wt.shape[2]
    gf = g.reshape(-1)
    wf = wt.reshape(-1)
    of = out.reshape(-1)
    rows_d = source_rows(d_n, kd_n, sd, dd, pd, od_n)
    rows_h = source_rows(h_n, kh_n, sh, dh, ph, oh_n)
    cols = source_rows(w_n, kw_n, sw, dw, pw, ow_n)
    n_rows = n_img * d_n * h_n
    n_tasks = min(n_rows, PLANE_TASKS)
    previous = balanced(n_tasks)
    for task in prange(n_tasks):
        scratch = np.empty((4, kd_n * kh_n * kw_n), np.int64)
        for t in range(task * n_rows // n_tasks, (task + 1) * n_rows // n_tasks):
            pixel_row(gf, wf, of, t, 0, c_n, scratch, d_n, h_n, w_n, c_n, od_n, oh_n, ow_n, kd_n, kh_n, kw_n, rows_d,
                      rows_h, cols)
    restore(previous)


@inline_helper
def plane_tables(d_n, h_n, w_n, od_n, oh_n, ow_n, kd_n, kh_n, kw_n, sd, sh, sw, dd, dh, dw, pd, ph, pw):
    """(wq, rows_d, rows_h, cols, starts) that plane_rows reads: the places per phase of a scratch
    row, the grad_output depths and rows each input depth and row gets per tap, the output columns
    each kw reaches, and where kw's columns start in the scratch row."""
    wq = (w_n + sw - 1) // sw  # places per phase
    rows_d = source_rows(d_n, kd_n, sd, dd, pd, od_n)
    rows_h = source_rows(h_n, kh_n, sh, dh, ph, oh_n)
    cols = _column_ranges(w_n, kw_n, sw, dw, pw, ow_n)
    starts = np.empty(kw_n, np.int64)  # row[starts[kw] + ow] is input column ow * sw + off
    for kw in range(kw_n):
        off = cols[kw, 2]
        starts[kw] = off % sw * wq + (off - off % sw) // sw
    return wq, rows_d, rows_h, cols, starts


@inline_helper
def _three_taps_stride2(gf, wf, of, orow, grow, wb, first, w_n, ow_n, pw):
    """Input row ``orow`` (+)= one grad_output row's taps kw = 0, 1, 2 (stride 2, dilation 1; weights
    wf[wb:wb + 3]), ``first``: the row's first grad_output row (written on zero). Column iw gets
    its taps in kw order, as plane_rows' scratch row sums them; the columns whose taps all lie in
    the grad_output row go two at a time (each pair: the phase with one tap and the one with two),
    a loop the vectorizer takes; the border columns one by one."""
    zero = of.dtype.type(0)
    w0, w1, w2 = wf[u(wb)], wf[u(wb + 1)], wf[u(wb + 2)]
    h = pw // 2  # pw odd: column 2m gets kw 1 at m + h, 2m + 1 kw 0 at m + h + 1 and kw 2 at m + h;
    # pw even: column 2m gets kw 0 at m + h and kw 2 at m + h - 1, 2m + 1 kw 1 at m + h
    if pw % 2:
        m0 = max(0, -h)
        m1 = max(m0, min(ow_n - h - 1, w_n // 2))
    else:
        m0 = max(0, 1 - h)
        m1 = max(m0, min(ow_n - h, w_n // 2))
    for j in range(w_n - 2 * (m1 - m0)):
        iw = j if j < 2 * m0 else j + 2 * (m1 - m0)
        acc = zero if first else of[u(orow + iw)]
        for kw in range(3):
            q = iw + pw - kw
            if q >= 0 and q % 2 == 0 and q // 2 < ow_n:
                acc += gf[u(grow + q // 2)] * wf[u(wb + kw)]
        of[u(orow + iw)] = acc
    g = grow + h
    o = orow + 2 * m0
    if pw % 2:
        if first:
            for m in range(m1 - m0):
                of[u(o + 2 * m)] = zero + gf[u(g + m0 + m)] * w1
                of[u(o + 2 * m + 1)] = zero + gf[u(g + m0 + m + 1)] * w0 + gf[u(g + m0 + m)] * w2
        else:
            for m in range(m1 - m0):
                of[u(o + 2 * m)] += gf[u(g + m0 + m)] * w1
                of[u(o + 2 * m + 1)] = of[u(o + 2 * m + 1)] + gf[u(g + m0 + m + 1)] * w0 + gf[u(g + m0 + m)] * w2
    elif first:
        for m in range(m1 - m0):
            of[u(o + 2 * m)] = zero + gf[u(g + m0 + m)] * w0 + gf[u(g + m0 + m - 1)] * w2
            of[u(o + 2 * m + 1)] = zero + gf[u(g + m0 + m)] * w1
    else:
        for m in range(m1 - m0):
            of[u(o + 2 * m)] = of[u(o + 2 * m)] + gf[u(g + m0 + m)] * w0 + gf[u(g + m0 + m - 1)] * w2
            of[u(o + 2 * m + 1)] += gf[u(g + m0 + m)] * w1


@inline_helper
def phase_scratch(d_n, h_n, w_n, od_n, oh_n, ow_n, kd_n, kh_n, kw_n, sh, sw, dh, dw, ph, pw):
    """(rows, pitch) of phase_plane's zero-bordered grad_output plane, rows 0 where it does not
    apply: 2-D, a 3x3 window at stride 2, dilation 1, pads at most 2, rows at most PHASE_WIDTH wide."""
    if not (d_n == 1 and od_n == 1 and kd_n == 1 and kh_n == 3 and kw_n == 3 and sh == 2 and sw == 2 and dh == 1
            and dw == 1 and 0 <= ph <= 2 and 0 <= pw <= 2 and ow_n <= PHASE_WIDTH):
        return 0, 0
    return max(oh_n, (h_n + 1) // 2) + 2, max(ow_n, (w_n + 1) // 2) + 2


@inline_helper
def phase_plane(gf, wf, of, gp, ys, t, c_n, h_n, w_n, oh_n, ow_n, ph, pw, pitch):
    """Input-gradient plane t (n, c) of a phase_scratch layer whose channel has a finite weight (the
    border's zeros then add nothing), False (nothing written) for another weight. The grad_output
    plane goes into the scratch ``gp`` (pixel (i, j) at (i + 1, j + 1), a border of zeros); the
    input-gradient pixels (2i + a, 2j + b) of a phase (a, b) are then one flat loop over (i, j), its
    one, two or four taps at fixed offsets (vectorized), summed in plane_rows' order; the two
    column phases of a row are interleaved into the plane. ``ys`` holds two phases."""
    wb = (t % c_n) * 9
    for k in range(9):
        if not wf[u(wb + k)] - wf[u(wb + k)] == 0:
            return False
    zero = of.dtype.type(0)
    gb = t * oh_n * ow_n
    for i in range(oh_n):
        for j in range(ow_n):
            gp[u((i + 1) * pitch + j + 1)] = gf[u(gb + i * ow_n + j)]
    half = ys.size // 2
    for a in range(2):
        hi_n = (h_n - a + 1) // 2
        n_flat = (hi_n * pitch + PHASE_STEP - 1) // PHASE_STEP * PHASE_STEP
        for b in range(2):
            m = 0
            o0 = o1 = o2 = o3 = 0
            v0 = v1 = v2 = v3 = zero
            for kh in range(3):
                if (a + ph - kh) % 2:
                    continue
                for kw in range(3):
                    if (b + pw - kw) % 2:
                        continue
                    o = (1 + (a + ph - kh) // 2) * pitch + 1 + (b + pw - kw) // 2
                    v = wf[u(wb + kh * 3 + kw)]
                    if m == 0:
                        o0, v0 = o, v
                    elif m == 1:
                        o1, v1 = o, v
                    elif m == 2:
                        o2, v2 = o, v
                    else:
                        o3, v3 = o, v
                    m += 1
            yb = b * half
            if m == 1:
                for q in range(n_flat):
                    ys[u(yb + q)] = zero + gp[u(q + o0)] * v0
            elif m == 2:
                for q in range(n_flat):
                    ys[u(yb + q)] = zero + gp[u(q + o0)] * v0 + gp[u(q + o1)] * v1
            else:
                for q in range(n_flat):
                    ys[u(yb + q)] = (zero + gp[u(q + o0)] * v0 + gp[u(q + o1)] * v1 + gp[u(q + o2)] * v2
                                     + gp[u(q + o3)] * v3)
        for i in range(hi_n):
            orow = (t * h_n + 2 * i + a) * w_n
            for j in range(w_n // 2):
                of[u(orow + 2 * j)] = ys[u(i * pitch + j)]
                of[u(orow + 2 * j + 1)] = ys[u(half + i * pitch + j)]
            if w_n % 2:
                of[u(orow + w_n - 1)] = ys[u(i * pitch + w_n // 2)]
    return True


@inline_helper
def phase_buffers(rows, pitch, h_n, dtype):
    """phase_plane's scratch (zero-bordered plane, its tail read by the flat loops' last vectors; two
    phases' sums), one element each where it does not apply."""
    half = ((h_n + 1) // 2 * pitch + PHASE_STEP - 1) // PHASE_STEP * PHASE_STEP
    return np.zeros(rows * pitch + 2 * PHASE_STEP if rows else 1, dtype), np.empty(2 * half if rows else 2, dtype)


@inline_helper
def plane_rows(gf, wf, of, row, t, c_n, d_n, h_n, w_n, od_n, oh_n, ow_n, kd_n, kh_n, kw_n, sw, wq, rows_d, rows_h,
                cols, starts):
    """Input-gradient plane t (n, c, d) of depthwise_input_grad_ncdhw, each row built in the scratch
    ``row``; gf, wf, of flat (see plane_tables for the rest). Three taps a row at stride 2 and
    dilation 1 (a MobileNet's strided layers) go straight into the plane, two columns at a time."""
    plane = t // d_n  # n * C + c
    c = plane % c_n
    i_d = t - plane * d_n
    if sw == 2 and kw_n == 3 and cols[1, 2] - cols[0, 2] == 1 and cols[2, 2] - cols[1, 2] == 1:
        for i_h in range(h_n):
            orow = (t * h_n + i_h) * w_n
            first = True
            for kd in range(kd_n):
                o_d = rows_d[i_d * kd_n + kd]
                if o_d < 0:
                    continue
                for kh in range(kh_n):
                    o_h = rows_h[i_h * kh_n + kh]
                    if o_h < 0:
                        continue
                    _three_taps_stride2(gf, wf, of, orow, ((plane * od_n + o_d) * oh_n + o_h) * ow_n,
                                        ((c * kd_n + kd) * kh_n + kh) * 3, first, w_n, ow_n, -cols[0, 2])
                    first = False
            if first:
                for iw in range(w_n):
                    of[u(orow + iw)] = 0
    else:
            _scratch_rows(gf, wf, of, row, t, plane, c, i_d, c_n, d_n, h_n, w_n, od_n, oh_n, ow_n, kd_n, kh_n, kw_n, sw,
                      wq, rows_d, rows_h, cols, starts)


@inline_helper
def _scratch_rows(gf, wf, of, row, t, plane, c, i_d, c_n, d_n, h_n, w_n, od_n, oh_n, ow_n, kd_n, kh_n, kw_n, sw, wq,
                  rows_d, rows_h, cols, starts):
    """plane_rows' general case: each row built phase-major in ``row``, then interleaved into the plane."""
    for i_h in range(h_n):
        for i in range(sw * wq):
            row[u(i)] = 0
        for kd in range(kd_n):
            o_d = rows_d[i_d * kd_n + kd]
            if o_d < 0:
                continue
            for kh in range(kh_n):
                o_h = rows_h[i_h * kh_n + kh]
                if o_h < 0:
                    continue
                grow = ((plane * od_n + o_d) * oh_n + o_h) * ow_n
                for kw in range(kw_n):
                    lo, hi, rb = cols[kw, 0], cols[kw, 1], starts[kw]
                    wv = wf[u(((c * kd_n + kd) * kh_n + kh) * kw_n + kw)]
                    for ow in range(lo, hi):
                        row[u(rb + ow)] += gf[u(grow + ow)] * wv
        orow = (t * h_n + i_h) * w_n
        if sw == 2:  # both phases in one loop: an interleaving store the loop vectorizer takes
            for j in range(w_n // 2):
                of[u(orow + 2 * j)] = row[u(j)]
                of[u(orow + 2 * j + 1)] = row[u(wq + j)]
            if w_n % 2:
                of[u(orow + w_n - 1)] = row[u(wq - 1)]
            continue
        for phase in range(sw):
            for j in range(wq):
                if j * sw + phase < w_n:
                    of[u(orow + j * sw + phase)] = row[u(phase * wq + j)]


@parallel_kernel
def depthwise_input_grad_ncdhw(g, w, out, sd, sh, sw, dd, dh, dw, pd, ph, pw):
    """out (N, C, D, H, W) = the input gradient from g (N, C, OD, OH, OW) and the weight w
    (C, KD, KH, KW). A task owns a run of planes (n, c, d), one scratch row for all. A tap
    with column offset off writes the input columns ow * sw + off: one phase (off mod sw) of
    the row, at consecutive places of that phase. So each row is built phase-major in a
    scratch row (contiguous, the adds vectorize along ow), then interleaved into out."""
    n_img, c_n, d_n, h_n, w_n = out.shape
    od_n, oh_n, ow_n = g.shape[2], g.shape[3], g.shape[4]
    kd_n, kh_n, kw_n = w.shape[1], w.shape[2], w.shape[3]
    gf = g.reshape(-1)
    wf = w.reshape(-1)
    of = out.reshape(-1)
    wq, rows_d, rows_h, cols, starts = plane_tables(d_n, h_n, w_n, od_n, oh_n, ow_n, kd_n, kh_n, kw_n, sd, sh, sw, dd,
                                                    dh, dw, pd, ph, pw)
    n_planes = n_img * c_n * d_n
    n_tasks = min(n_planes, PLANE_TASKS)
    previous = balanced(n_tasks)
    rows, pitch = phase_scratch(d_n, h_n, w_n, od_n, oh_n, ow_n, kd_n, kh_n, kw_n, sh, sw, dh, dw, ph, pw)
    for task in prange(n_tasks):
        row = np.empty(sw * wq, out.dtype)
        gp, ys = phase_buffers(rows, pitch, h_n, out.dtype)
        for t in range(task * n_planes // n_tasks, (task + 1) * n_planes // n_tasks):
            if not (rows and phase_plane(gf, wf, of, gp, ys, t, c_n, h_n, w_n, oh_n, ow_n, ph, pw, pitch)):
                plane_rows(gf, wf, of, row, t, c_n, d_n, h_n, w_n, od_n, oh_n, ow_n, kd_n, kh_n, kw_n, sw, wq, rows_d,
                           rows_h, cols, starts)
    restore(previous)


def depthwise_input_grad(spec, grad_output, weight):
    """The input gradient of the depthwise conv ``spec`` (groups == channels, one out-channel
    per group, zeros or constant padding) in the user's layout and the spec's dtype."""
    dtype = working_dtype(np.dtype(spec.dtype))
    geom = geometry3(spec)
    w = as_working(np.asarray(weight), dtype).reshape(spec.out_channels, *geom.kernel)
    pads = tuple(b for b, _ in geom.pads)
    steps = (*geom.stride, *geom.dilation, *pads)
    if spec.channels_last:
        g5 = np.ascontiguousarray(as_working(channels_last_5d(grad_output, spec.nd, True), dtype), dtype)
        out = np.empty((spec.batch, *geom.in_size, spec.in_channels), dtype)
        depthwise_input_grad_ndhwc(g5, np.ascontiguousarray(np.moveaxis(w, 0, -1), dtype), out, *steps)
    else:
        g = np.ascontiguousarray(as_working(grad_output, dtype), dtype)
        g5 = g.reshape(g.shape[0], g.shape[1], *lift3(g.shape[2:], 1))
        out = np.empty((spec.batch, spec.in_channels, *geom.in_size), dtype)
        depthwise_input_grad_ncdhw(g5, np.ascontiguousarray(w, dtype), out, *steps)
    return np.ascontiguousarray(out.reshape(spec.input_shape), dtype=np.dtype(spec.dtype))
