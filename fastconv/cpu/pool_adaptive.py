"""Adaptive average and max pooling on the CPU (global pooling is output size 1).

Output cell i of a dim with input n and output o reads [floor(i n / o), ceil((i+1) n / o)),
as PyTorch. The user's array is read in its own layout (:mod:`fastconv.cpu.pool_run`).
Max follows PyTorch CPU: the first maximum wins, a NaN wins and a later NaN takes its
index, a window of -inf values gives its first position; indices are flat over the
channel's input plane.

Routes, each giving the same bits in both layouts (taps summed in (d, h, w) order,
one division by the count):
- every output size divides its input size: the windows are those of a window pool
  with kernel = stride = n / o, so the window kernels of :mod:`fastconv.cpu.pool_window`
  run (channels-last global pooling included);
- channels-first global pooling: each plane is read in order;
- otherwise the general kernels here: one task per output row (and channel block when
  channels-last), window bounds per output column.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .._jit import inline_helper
from ..dispatch import register
from .pool_run import lifted, make_plan, run_pool, spec_memo, twin
from .pool_window import avg_pool_ndhwc, channel_block, max_pool_ndhwc
from .pool_window_nchw import avg_pool_nchw, max_pool_nchw


@inline_helper
def adaptive_start(i, n, o):
    return (i * n) // o


@inline_helper
def adaptive_end(i, n, o):
    return ((i + 1) * n + o - 1) // o


@inline_helper
def adaptive_bounds(n, o):
    """[start, end) of each of the o output cells of a dim of n inputs."""
    bounds = np.empty((o, 2), np.int64)
    for i in range(o):
        bounds[i, 0] = adaptive_start(i, n, o)
        bounds[i, 1] = adaptive_end(i, n, o)
    return bounds


@inline_helper
def max_step(v, at, best, best_at):
    """One tap of a max scan in index order: a greater value or a NaN takes."""
    if (v > best) | (v != v):
        return v, at
    return best, best_at


@inline_helper
def max_merge(va, ia, vb, ib):
    """Merge two scans of interleaved taps as one scan in index order would end: the
    last NaN, else the first maximum (ia or ib < 0: that scan saw no tap)."""
    if ib < 0:
        return va, ia
    if ia < 0:
        return vb, ib
    a_nan = va != va
    b_nan = vb != vb
    if a_nan or b_nan:
        if a_nan and b_nan:
            return (va, ia) if ia > ib else (vb, ib)
        return (va, ia) if a_nan else (vb, ib)
    if va > vb or (va == vb and ia < ib):
        return va, ia
    return vb, ib


# ---- channels-first kernels ----------------------------------------------------------

def _global_avg_nchw(x, out):
    """out[n, c] = mean of plane x[n, c], summed in order (out-of-order execution overlaps
    the planes' dependency chains)."""
    n_img, c_n, in_d, in_h, in_w = x.shape
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    size = in_d * in_h * in_w
    count = out.dtype.type(size)
    zero = out.dtype.type(0)
    for q in prange(n_img * c_n):
        b = np.uint64(q * size)
        a = zero
        for i in range(size):
            a += xf[b + np.uint64(i)]
        of[q] = a / count


def _adaptive_nchw(x, out, idx, is_max, want_idx):
    """General adaptive avg / max of (N, C, D, H, W) input: one task per output row."""
    n_img, c_n, in_d, in_h, in_w = x.shape
    od_n, oh_n, ow_n = out.shape[2], out.shape[3], out.shape[4]
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    jf = idx.reshape(idx.size)
    plane = in_d * in_h * in_w
    zero = out.dtype.type(0)
    ninf = out.dtype.type(-np.inf)
    cols = adaptive_bounds(in_w, ow_n)
    for t in prange(n_img * c_n * od_n * oh_n):
        oh = t % oh_n
        p = t // oh_n
        od = p % od_n
        x0 = (p // od_n) * plane
        d0 = adaptive_start(od, in_d, od_n)
        d1 = adaptive_end(od, in_d, od_n)
        h0 = adaptive_start(oh, in_h, oh_n)
        h1 = adaptive_end(oh, in_h, oh_n)
        for ow in range(ow_n):
            w0 = cols[ow, 0]
            w1 = cols[ow, 1]
            o = np.uint64(t * ow_n + ow)
            if is_max:
                # four independent chains (taps i_w % 4 == lane of each row), merged after;
                # a chain that saw only -inf keeps index -1
                b0 = b1 = b2 = b3 = ninf
                k0 = k1 = k2 = k3 = -1
                for i_d in range(d0, d1):
                    for i_h in range(h0, h1):
                        row = (i_d * in_h + i_h) * in_w
                        i_w = w0
                        while i_w + 4 <= w1:
                            b0, k0 = max_step(xf[np.uint64(x0 + row + i_w)], row + i_w, b0, k0)
                            b1, k1 = max_step(xf[np.uint64(x0 + row + i_w + 1)], row + i_w + 1, b1, k1)
                            b2, k2 = max_step(xf[np.uint64(x0 + row + i_w + 2)], row + i_w + 2, b2, k2)
                            b3, k3 = max_step(xf[np.uint64(x0 + row + i_w + 3)], row + i_w + 3, b3, k3)
                            i_w += 4
                        while i_w < w1:
                            b0, k0 = max_step(xf[np.uint64(x0 + row + i_w)], row + i_w, b0, k0)
                            i_w += 1
                b0, k0 = max_merge(b0, k0, b1, k1)
                b2, k2 = max_merge(b2, k2, b3, k3)
                b0, k0 = max_merge(b0, k0, b2, k2)
                if k0 < 0:  # a window of -inf: its first tap, as PyTorch
                    k0 = (d0 * in_h + h0) * in_w + w0
                of[o] = b0
                if want_idx:
                    jf[o] = k0
            else:
                acc = zero
                for i_d in range(d0, d1):
                    for i_h in range(h0, h1):
                        row = x0 + (i_d * in_h + i_h) * in_w
                        for i_w in range(w0, w1):
                            acc += xf[np.uint64(row + i_w)]
                of[o] = acc / out.dtype.type((d1 - d0) * (h1 - h0) * (w1 - w0))


# ---- channels-last kernel ------------------------------------------------------------

def _adaptive_ndhwc(x, out, idx, is_max, want_idx, cblock):
    """General adaptive avg / max of (N, D, H, W, C) input: one task per output row and
    channel block, contiguous channels innermost."""
    n_img, in_d, in_h, in_w, c_n = x.shape
    od_n, oh_n, ow_n = out.shape[1], out.shape[2], out.shape[3]
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    jf = idx.reshape(idx.size)
    zero = out.dtype.type(0)
    n_cb = (c_n + cblock - 1) // cblock
    cols = adaptive_bounds(in_w, ow_n)
    for t in prange(n_img * od_n * oh_n * n_cb):
        cb = t % n_cb
        r = t // n_cb
        oh = r % oh_n
        od = (r // oh_n) % od_n
        n = r // (oh_n * od_n)
        c0 = cb * cblock
        width = min(cblock, c_n - c0)
        d0 = adaptive_start(od, in_d, od_n)
        d1 = adaptive_end(od, in_d, od_n)
        h0 = adaptive_start(oh, in_h, oh_n)
        h1 = adaptive_end(oh, in_h, oh_n)
        for ow in range(ow_n):
            w0 = cols[ow, 0]
            w1 = cols[ow, 1]
            o = np.uint64((r * ow_n + ow) * c_n + c0)
            for c in range(width):
                of[o + np.uint64(c)] = -np.inf if is_max else zero
            first = True
            for i_d in range(d0, d1):
                for i_h in range(h0, h1):
                    row = (i_d * in_h + i_h) * in_w
                    for i_w in range(w0, w1):
                        flat = row + i_w
                        xs = np.uint64((n * in_d * in_h * in_w + flat) * c_n + c0)
                        if not is_max:
                            for c in range(width):
                                uc = np.uint64(c)
                                of[o + uc] += xf[xs + uc]
                        elif first:  # the first tap is taken whatever it holds, as in PyTorch
                            first = False
                            for c in range(width):
                                uc = np.uint64(c)
                                of[o + uc] = xf[xs + uc]
                            if want_idx:
                                for c in range(width):
                                    jf[o + np.uint64(c)] = flat
                        elif want_idx:
                            for c in range(width):
                                uc = np.uint64(c)
                                v = xf[xs + uc]
                                m = of[o + uc]
                                take = (v > m) | (v != v)
                                of[o + uc] = v if take else m
                                jf[o + uc] = flat if take else jf[o + uc]
                        else:
                            for c in range(width):
                                uc = np.uint64(c)
                                v = xf[xs + uc]
                                m = of[o + uc]
                                of[o + uc] = v if (v > m) | (v != v) else m
            if not is_max:
                count = out.dtype.type((d1 - d0) * (h1 - h0) * (w1 - w0))
                for c in range(width):
                    of[o + np.uint64(c)] = of[o + np.uint64(c)] / count


global_avg_nchw = twin(_global_avg_nchw)
adaptive_nchw = twin(_adaptive_nchw)
adaptive_ndhwc = twin(_adaptive_ndhwc)


# ---- registered entry point ----------------------------------------------------------

def _make_plan(spec):
    if spec.mode not in ("avg", "max"):
        raise ValueError(f"{spec.op}: unknown adaptive pooling mode {spec.mode!r}")
    is_max = spec.mode == "max"
    cl = spec.channels_last
    work = spec.batch * spec.channels * (math.prod(spec.in_size) + math.prod(spec.out_size))
    tail = (channel_block(spec.channels, spec.batch * math.prod(spec.out_size[:-1])),) if cl else ()
    if not cl and all(o == 1 for o in spec.out_size):  # a plane per task, read in order
        # one dependency chain per plane, not vectorized: ~4x the time per visit
        if is_max:
            return make_plan(spec, adaptive_nchw, (True, spec.return_indices), True, 4 * work)
        return make_plan(spec, global_avg_nchw, (), False, 4 * work)
    if all(n % o == 0 for n, o in zip(spec.in_size, spec.out_size)):
        steps = lifted(tuple(n // o for n, o in zip(spec.in_size, spec.out_size)), 1)
        window = (*steps, *steps, 1, 1, 1, 0, 0, 0)
        if is_max:
            return make_plan(spec, max_pool_ndhwc if cl else max_pool_nchw, (spec.return_indices, *window, *tail), True,
                             work)
        return make_plan(spec, avg_pool_ndhwc if cl else avg_pool_nchw, (*window, 0, 0, 0, True, 0, *tail), False,
                         work)
    if cl:
        return make_plan(spec, adaptive_ndhwc, (is_max, spec.return_indices, *tail), True, work)
    return make_plan(spec, adaptive_nchw, (is_max, spec.return_indices), True, 4 * work)


_plan = spec_memo(_make_plan)


@register("adaptive_pool", "cpu", "direct", note="reads either layout in place, vectorized")
def adaptive_pool_direct(spec, x):
    return run_pool(spec, x, _plan(spec))
