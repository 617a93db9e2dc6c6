"""Numba-parallel CPU kernels for the window ops: unfold (im2col), fold (col2im),
max_unpool and fractional max pooling.

Every kernel works on channels-first planes: a batched (N, C, *spatial) array is seen
as P = N * C independent planes lifted to 3-D (D, H, W) with unit leading axes, in the
working dtype (float32 for float16/float32, float64 for float64), C-contiguous. Kernel
arguments are runtime ints, so each kernel compiles once per working dtype.

- unfold: one parallel task per output row (plane, kernel tap); the row holds the
  tap's sample at every block position, zero where the tap lies in padding. No padded
  copy of the input is made: the in-bounds block range is computed once per row.
  (``conv.im2col.im2col_ndhwc`` builds pixel-major, channel-innermost columns from a
  padded channels-last copy; PyTorch's layout is the transpose of that, so reusing it
  would cost a padded copy and a transposing copy.)
- fold: GATHER form. One parallel task per output row (plane, d, h); it sums into its
  own row every column entry that lands there, taps in ascending order per pixel (the
  order in which PyTorch's scatter col2im adds them). No two tasks write one element,
  so no races and no atomics.
- max_unpool: one task per plane; the plane is zeroed, then the values are written to
  their indices in input order (a repeated index: the last write wins, as in
  PyTorch's CPU kernel). An index outside the plane is never written; the first one
  is reported per plane so the front end can raise.
- fractional max pooling: one task per (plane, output row); the window starts come in
  precomputed (they need the input dtype's arithmetic, float16 included).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._arrays import working_dtype
from ..dispatch import register
from ..kernels.geometry import lift3
from ..kernels.inline import inline_helper
from ._jit import parallel_kernel


def working_c(x, dtype):
    """A C-contiguous, writable array of ``dtype``: ``x`` itself when it already is one.

    Read-only input is copied, so it does not compile a second specialisation.
    """
    if x.dtype == dtype and x.flags.c_contiguous and x.flags.writeable:
        return x
    out = np.empty(x.shape, dtype)
    np.copyto(out, x, casting="unsafe")
    return out


def to_user_dtype(out, dtype):
    return out if out.dtype == dtype else out.astype(dtype)


@inline_helper
def inside_range(a, stride, n, blocks):
    """[lo, hi): the blocks b in [0, blocks) with 0 <= b * stride - a < n."""
    lo = -(-a // stride) if a > 0 else 0
    last = n - 1 + a
    hi = last // stride + 1 if last >= 0 else 0
    if hi > blocks:
        hi = blocks
    if lo > hi:
        lo = hi
    return lo, hi


# ---- unfold -----------------------------------------------------------------------

@parallel_kernel
def unfold_planes(x, kd_n, kh_n, kw_n, sd, sh, sw, dd, dh, dw, pd, ph, pw, bd_n, bh_n, bw_n, out):
    """out[p * taps + tap, block] = x[p] under kernel tap ``tap`` of ``block`` (0 in padding).

    x (P, D, H, W); out (P * KD * KH * KW, BD * BH * BW); pd/ph/pw the begin pads.
    """
    planes, d_n, h_n, w_n = x.shape
    taps = kd_n * kh_n * kw_n
    for t in prange(planes * taps):
        p = t // taps
        tap = t - p * taps
        kd = tap // (kh_n * kw_n)
        q = tap - kd * (kh_n * kw_n)
        kh = q // kw_n
        kw = q - kh * kw_n
        a = pw - kw * dw  # input column of block bw: bw * sw - a
        lo, hi = inside_range(a, sw, w_n, bw_n)
        row = out[t]
        col = 0
        for bd in range(bd_n):
            iz = bd * sd - pd + kd * dd
            for bh in range(bh_n):
                iy = bh * sh - ph + kh * dh
                if iz < 0 or iz >= d_n or iy < 0 or iy >= h_n:
                    for bw in range(bw_n):
                        row[col + bw] = 0
                else:
                    src = x[p, iz, iy]
                    for bw in range(lo):
                        row[col + bw] = 0
                    for bw in range(lo, hi):
                        row[col + bw] = src[bw * sw - a]
                    for bw in range(hi, bw_n):
                        row[col + bw] = 0
                col += bw_n


@register("unfold", "cpu", "direct", note="row per (plane, tap), padding by index range (Numba)")
def unfold_cpu(spec, x):
    dtype = working_dtype(np.dtype(spec.dtype))
    planes = spec.batch * spec.channels
    xw = working_c(x, dtype).reshape((planes, *lift3(spec.image, 1)))
    taps = int(np.prod(spec.kernel))
    blocks = int(np.prod(spec.grid))
    out = np.empty((planes * taps, blocks), dtype)
    pads = lift3(spec.pads, (0, 0))
    unfold_planes(xw, *lift3(spec.kernel, 1), *lift3(spec.stride, 1), *lift3(spec.dilation, 1),
                  *(b for b, _ in pads), *lift3(spec.grid, 1), out)
    return to_user_dtype(out.reshape(spec.output_shape), np.dtype(spec.dtype))


# ---- fold -------------------------------------------------------------------------

@parallel_kernel
def fold_band(cols, r0, r1, kd_n, kh_n, kw_n, sd, sh, sw, dd, dh, dw, pd, ph, pw, bd_n, bh_n, bw_n, w_n, phased, out):
    """out[p, z, y, x] += cols[p, tap, (row - r0) * bw_n + bx] over the block rows r0 <= row < r1
    (row = bz * bh_n + by) and taps that land there.

    cols (P, KD * KH * KW, (r1 - r0) * BW); out (P, D, H, W) holding input column x at x, or,
    where ``phased``, (P, D, H, SW * WQ) holding it at (x % sw) * WQ + x // sw (the layout of
    conv.input_grad_columns: every tap of a strided layer then adds a contiguous run, where in
    column order its terms land sw apart); w_n the input's width W; pd/ph/pw the begin pads.
    Each task owns one output row and gathers into it every tap that reaches it, taps in
    ascending order per pixel, in either layout: with r0 = 0 and r1 = BD * BH, col2im (fold)
    onto zeros.
    """
    planes, d_n, h_n, wide = out.shape
    wq = wide // sw
    for t in prange(planes * d_n * h_n):
        p = t // (d_n * h_n)
        r = t - p * (d_n * h_n)
        z = r // h_n
        y = r - z * h_n
        src = cols[p]
        row = out[p, z, y]
        for kd in range(kd_n):
            pz = z + pd - kd * dd
            if pz < 0 or pz % sd != 0 or pz // sd >= bd_n:
                continue
            for kh in range(kh_n):
                py = y + ph - kh * dh
                if py < 0 or py % sh != 0 or py // sh >= bh_n:
                    continue
                block_row = (pz // sd) * bh_n + py // sh
                if block_row < r0 or block_row >= r1:
                    continue
                block0 = (block_row - r0) * bw_n
                for kw in range(kw_n):
                    a = pw - kw * dw  # input column of block bx: bx * sw - a
                    lo, hi = inside_range(a, sw, w_n, bw_n)
                    tap = (kd * kh_n + kh) * kw_n + kw
                    if phased:
                        phase = (-a) % sw
                        at = phase * wq + (-a - phase) // sw  # where block bx lands: at + bx
                        dst = row[at + lo:at + hi]  # indexed from 0: no negative-index wrap, so it vectorises
                        run = src[tap, block0 + lo:block0 + hi]
                        for i in range(hi - lo):
                            dst[i] += run[i]
                    else:
                        for bx in range(lo, hi):
                            row[bx * sw - a] += src[tap, block0 + bx]


@register("fold", "cpu", "gather", note="race-free gather col2im: each output pixel sums its taps (Numba)")
def fold_cpu(spec, cols):
    dtype = working_dtype(np.dtype(spec.dtype))
    planes = spec.batch * spec.channels
    taps = int(np.prod(spec.kernel))
    blocks = int(np.prod(spec.grid))
    cw = working_c(cols, dtype).reshape(planes, taps, blocks)
    out = np.zeros((planes, *lift3(spec.image, 1)), dtype)
    pads, grid = lift3(spec.pads, (0, 0)), lift3(spec.grid, 1)
    fold_band(cw, 0, grid[0] * grid[1], *lift3(spec.kernel, 1), *lift3(spec.stride, 1), *lift3(spec.dilation, 1),
              *(b for b, _ in pads), *grid, out.shape[3], False, out)
    return to_user_dtype(out.reshape(spec.output_shape), np.dtype(spec.dtype))


# ---- max_unpool -------------------------------------------------------------------

@parallel_kernel
def max_unpool_planes(x, indices, out, bad):
    """out[p] = zeros with out[p, indices[p, m]] = x[p, m] in order of m; indices outside
    [0, out.shape[1]) are skipped and the first such m is left in bad[p] (else -1).

    x, indices (P, M); out (P, Q); bad (P,).
    """
    planes, m_n = x.shape
    q_n = out.shape[1]
    for p in prange(planes):
        dst = out[p]
        for j in range(q_n):
            dst[j] = 0
        first_bad = -1
        for m in range(m_n):
            i = indices[p, m]
            if i < 0 or i >= q_n:
                if first_bad < 0:
                    first_bad = m
            else:
                dst[i] = x[p, m]
        bad[p] = first_bad


@register("max_unpool", "cpu", "direct", note="one task per plane: zero, then scatter in order (Numba)")
def max_unpool_cpu(spec, x, indices):
    dtype = working_dtype(np.dtype(spec.dtype))
    planes = spec.batch * spec.channels
    xw = working_c(x, dtype).reshape(planes, -1)
    iw = working_c(indices, np.dtype(np.int64)).reshape(planes, -1)
    out = np.empty((planes, int(np.prod(spec.image))), dtype)
    bad = np.empty(planes, np.int64)
    max_unpool_planes(xw, iw, out, bad)
    hits = np.flatnonzero(bad >= 0)
    if hits.size:
        p = int(hits[0])
        n, c = divmod(p, spec.channels)
        m = int(bad[p])
        pos = np.unravel_index(m, spec.grid)
        raise ValueError(
            f"{spec.op}: indices[{n}, {c}, {', '.join(map(str, pos))}]={int(iw[p, m])} is outside "
            f"the output plane of {out.shape[1]} elements (output size {spec.image}); "
            f"expected 0 <= index < {out.shape[1]}"
        )
    return to_user_dtype(out.reshape(spec.output_shape), np.dtype(spec.dtype))


# ---- fractional max pooling ---------------------------------------------------------

@parallel_kernel
def fractional_max_pool2d_planes(x, starts_h, starts_w, kh_n, kw_n, out, ind):
    """Max over the kh x kw window at (starts_h[p, i], starts_w[p, j]) of plane p.

    x (P, H, W); starts_h (P, OH); starts_w (P, OW); out, ind (P, OH, OW). As ATen: a
    tap wins if greater than the running max or NaN (the last NaN wins); a window of
    -inf keeps its first tap's index.
    """
    planes, h_n, w_n = x.shape
    oh_n = out.shape[1]
    ow_n = out.shape[2]
    for t in prange(planes * oh_n):
        p = t // oh_n
        i = t - p * oh_n
        h0 = starts_h[p, i]
        for j in range(ow_n):
            w0 = starts_w[p, j]
            best = -np.inf
            best_index = h0 * w_n + w0
            for h in range(h0, h0 + kh_n):
                for w in range(w0, w0 + kw_n):
                    v = x[p, h, w]
                    if v > best or v != v:
                        best = v
                        best_index = h * w_n + w
            out[p, i, j] = best
            ind[p, i, j] = best_index


@register("fractional_max_pool", "cpu", "direct", note="one task per (plane, output row) (Numba)")
def fractional_max_pool_cpu(spec, x, starts_h, starts_w):
    dtype = working_dtype(np.dtype(spec.dtype))
    planes = spec.batch * spec.channels
    xw = working_c(x, dtype).reshape(planes, *spec.image)
    sh = working_c(starts_h, np.dtype(np.int64)).reshape(planes, -1)
    sw = working_c(starts_w, np.dtype(np.int64)).reshape(planes, -1)
    out = np.empty((planes, *spec.grid), dtype)
    ind = np.empty((planes, *spec.grid), np.int64)
    fractional_max_pool2d_planes(xw, sh, sw, *spec.kernel, out, ind)
    values = to_user_dtype(out.reshape(spec.output_shape), np.dtype(spec.dtype))
    if spec.return_indices:
        return values, ind.reshape(spec.output_shape)
    return values
