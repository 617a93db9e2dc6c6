"""im2col columns built straight from the unpadded input, in the input's own layout.

The forward's builder (cpu/conv/im2col.py) reads a padded channels-last copy. A weight
gradient reads each input element once per tap, so that copy (and, for a channels-first
caller, its transposition) cost as much as the columns themselves: here every padded
position is looked up in the padding maps of kernels.padding_index instead (-1: the fill
value), which covers every padding mode.

- :func:`columns_ncdhw`: rows (c, tap), a weight's own order, one column per output
  pixel of one image; a task owns a row and streams along the input's W axis.
- :func:`columns_ndhwc`: the forward's (group, pixel, tap * Cg + c) columns, pixels flat
  over (n, od, oh, ow); :func:`columns_ndhwc_rows` the same for one group of few channels.
"""

from __future__ import annotations

from numba import prange, uint64

from ....kernels.element_index import pixel_position
from ..._jit import parallel_kernel, serial_kernel


@parallel_kernel
def columns_ncdhw(x, n, row0, oh_n, ow_n, kh_n, kw_n, sd, sh, sw, dd, dh, dw, pw, map_d, map_h, map_w, fill, cols):
    """cols[c * taps + tap, j] = padded x[n, c] under tap ``tap`` of pixel j of the output rows
    row0, row0 + 1, ... (flat over (od, oh)) of image n; x is (N, C, D, H, W), ``pw`` its W
    axis' leading pad. Between the borders a row is a strided (at stride 1 contiguous) copy.
    Indices are flat and unsigned: small images' rows are short, so per-row work counts, and
    unsigned indices skip the check for negative ones, so the copy vectorises."""
    rows, n_cols = cols.shape
    c_n, d_n, h_n, w_n = x.shape[1:]
    xf = x.reshape(-1)
    cf = cols.reshape(-1)
    taps = rows // c_n
    n_out_rows = n_cols // ow_n
    for t in prange(rows):
        c = t // taps
        tap = t - c * taps
        kd = tap // (kh_n * kw_n)
        kh = (tap // kw_n) - kd * kh_n
        kw = tap - (tap // kw_n) * kw_n
        off = kw * dw - pw  # input column of output column 0 under this tap
        lo = 0 if off >= 0 else min((sw - 1 - off) // sw, ow_n)  # first output column inside the input
        hi = max(lo, min((w_n - off + sw - 1) // sw, ow_n)) if w_n > off else lo  # and past the last one
        plane = (n * c_n + c) * d_n
        for r in range(n_out_rows):
            row = row0 + r
            od = row // oh_n
            oh = row - od * oh_n
            i_d = map_d[od * sd + kd * dd]
            i_h = map_h[oh * sh + kh * dh]
            dst = t * n_cols + r * ow_n
            if i_d < 0 or i_h < 0:
                for ow in range(ow_n):
                    cf[uint64(dst + ow)] = fill
                continue
            src = ((plane + i_d) * h_n + i_h) * w_n
            for ow in range(lo):
                i_w = map_w[ow * sw + kw * dw]
                cf[uint64(dst + ow)] = fill if i_w < 0 else xf[uint64(src + i_w)]
            for ow in range(lo, hi):
                cf[uint64(dst + ow)] = xf[uint64(src + ow * sw + off)]
            for ow in range(hi, ow_n):
                i_w = map_w[ow * sw + kw * dw]
                cf[uint64(dst + ow)] = fill if i_w < 0 else xf[uint64(src + i_w)]


@serial_kernel
def pixel_columns(xf, shape, p, od_n, oh_n, ow_n, kd_n, kh_n, kw_n, sd, sh, sw, dd, dh, dw, map_d, map_h, map_w,
                  fill, cf, dst, groups, group_step):
    """cf[dst + g * group_step + tap * Cg + c] = padded x[n, ..., g * Cg + c] under tap ``tap`` of
    output pixel p (flat over (n, od, oh, ow)); xf is the flat (N, D, H, W, C) input of ``shape``
    (D, H, W, C). Flat unsigned indices, so each tap's channels copy as vectors."""
    d_n, h_n, w_n, c_n = shape
    cg = c_n // groups
    n, od, oh, ow = pixel_position(p, od_n, oh_n, ow_n)
    for kd in range(kd_n):
        i_d = map_d[od * sd + kd * dd]
        for kh in range(kh_n):
            i_h = map_h[oh * sh + kh * dh]
            for kw in range(kw_n):
                i_w = map_w[ow * sw + kw * dw]
                tap_at = dst + ((kd * kh_n + kh) * kw_n + kw) * cg
                inside = i_d >= 0 and i_h >= 0 and i_w >= 0
                src = (((n * d_n + i_d) * h_n + i_h) * w_n + i_w) * c_n
                for g in range(groups):
                    at = tap_at + g * group_step
                    if inside:
                        for c in range(cg):
                            cf[uint64(at + c)] = xf[uint64(src + g * cg + c)]
                    else:
                        for c in range(cg):
                            cf[uint64(at + c)] = fill


@parallel_kernel
def columns_ndhwc(x, row0, od_n, oh_n, ow_n, kd_n, kh_n, kw_n, sd, sh, sw, dd, dh, dw, map_d, map_h, map_w, fill,
                  cols):
    """cols[g, r, tap * Cg + c] = padded x[n, ..., g * Cg + c] under tap ``tap`` of output pixel
    row0 + r (flat over (n, od, oh, ow)); x is (N, D, H, W, C): one :func:`pixel_columns` a row."""
    groups, n_rows, taps_c = cols.shape
    xf = x.reshape(-1)
    cf = cols.reshape(-1)
    shape = x.shape[1:]
    for r in prange(n_rows):
        pixel_columns(xf, shape, row0 + r, od_n, oh_n, ow_n, kd_n, kh_n, kw_n, sd, sh, sw, dd, dh, dw, map_d, map_h,
                      map_w, fill, cf, r * taps_c, groups, n_rows * taps_c)


@parallel_kernel
def columns_ndhwc_rows(x, row0, od_n, oh_n, ow_n, kd_n, kh_n, kw_n, sd, sh, sw, dd, dh, pw, map_d, map_h, map_w, fill,
                       cols):
    """:func:`columns_ndhwc` for one group, no W dilation: a window row inside the input is one
    copy of KW * C elements (ResNet-50's 7x7 layer on 3 channels: 21 elements where each tap
    has 3, 5.5x faster). On many channels the per-tap copies are as long; there, folded into
    :func:`columns_ndhwc`, the row copies measured 1.3-2.5x slower. ``pw``: W's leading pad."""
    _, n_rows, taps_c = cols.shape
    _, d_n, h_n, w_n, c_n = x.shape
    xf = x.reshape(-1)
    cf = cols.reshape(-1)
    for r in prange(n_rows):
        p = row0 + r
        n, od, oh, ow = pixel_position(p, od_n, oh_n, ow_n)
        w0 = ow * sw - pw  # input column of the window's first tap
        row_inside = w0 >= 0 and w0 + kw_n <= w_n
        for kd in range(kd_n):
            i_d = map_d[od * sd + kd * dd]
            for kh in range(kh_n):
                i_h = map_h[oh * sh + kh * dh]
                line = r * taps_c + (kd * kh_n + kh) * kw_n * c_n
                if row_inside and i_d >= 0 and i_h >= 0:
                    src = (((n * d_n + i_d) * h_n + i_h) * w_n + w0) * c_n
                    for e in range(kw_n * c_n):
                        cf[uint64(line + e)] = xf[uint64(src + e)]
                    continue
                for kw in range(kw_n):
                    i_w = map_w[ow * sw + kw]
                    dst = line + kw * c_n
                    if i_d >= 0 and i_h >= 0 and i_w >= 0:
                        src = (((n * d_n + i_d) * h_n + i_h) * w_n + i_w) * c_n
                        for c in range(c_n):
                            cf[uint64(dst + c)] = xf[uint64(src + c)]
                    else:
                        for c in range(c_n):
                            cf[uint64(dst + c)] = fill
