"""Adaptive average and max pooling on the CPU (global pooling is output size 1).

Output cell i of a dim with input n and output o reads [floor(i n / o), ceil((i+1) n / o)),
as PyTorch. The user's array is read in its own layout (:mod:`fastconv.cpu.pool.run`).
Max follows PyTorch CPU: the first maximum wins, a NaN wins and a later NaN takes its
index, a window of -inf values gives its first position; indices are flat over the
channel's input plane.

Routes, each giving the same bits in both layouts (taps summed in (d, h, w) order,
one division by the count, except global average, below):
- global average: each channel's P pixels (flat (d, h, w) order) are summed in eight
  partial sums: pixel p < P - P % 8 goes to sum p % 8, the last P % 8 pixels to sum 0,
  each sum in pixel order; the total ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
  is divided by P. Channels-first planes then vectorize (one in-order chain per plane
  ran 2.5x slower than PyTorch's mean on 32 x 2048 x 7 x 7), and the channels-last
  kernel keeps the same order;
- every output size divides its input size: the windows are those of a window pool
  with kernel = stride = n / o, so the window kernels of :mod:`fastconv.cpu.pool.window`
  run (channels-last global max included);
- otherwise (and channels-first global max) the channels-last kernel here: one task per
  output row and channel block, window bounds per output column, contiguous channels
  innermost. Channels-first input is copied to channels-last order for it: the
  channels-first form would be one scalar dependency chain per output, 5-30x slower
  than that copy on SPP-sized layers.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ..._cache import cached_plan
from ...dispatch import register
from ...kernels.adaptive_bounds import adaptive_bounds, adaptive_end, adaptive_start
from ...kernels.geometry import lift3
from ...kernels.inline import inline_helper
from .run import bind_plan, make_plan, run_pool, twin
from .window import avg_pool_ndhwc, channel_blocks, max_pool_ndhwc
from .window_nchw import avg_pool_nchw, max_pool_nchw

# Channels-first global average pooling is one streaming read of the input: it runs in
# parallel from SERIAL_WORK / GLOBAL_AVG_NCHW_VISITS input elements. One process, medians of
# 1000 calls, input cycled through 64 MB (cold) or one array (warm), serial / parallel, us:
# 1x2048x7x7 cold 63 / 40, warm 19 / 17; 1x1280x7x7 cold 41 / 29, warm 13.0 / 13.9;
# 1x512x7x7 cold 17.8 / 17.5, warm 7.4 / 11.3 (so it stays serial).
GLOBAL_AVG_NCHW_VISITS = 5

# ---- channels-first kernels ----------------------------------------------------------

@inline_helper
def lanes_total(a0, a1, a2, a3, a4, a5, a6, a7):
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))


def _global_avg_nchw(x, out):
    """out[n, c] = mean of plane x[n, c] in eight partial sums (module docstring)."""
    n_img, c_n, in_d, in_h, in_w = x.shape
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    size = in_d * in_h * in_w
    n8 = size - size % 8
    count = out.dtype.type(size)
    zero = out.dtype.type(0)
    for q in prange(n_img * c_n):
        b = np.uint64(q * size)
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = zero
        for i in range(0, n8, 8):
            u = b + np.uint64(i)
            a0 += xf[u]
            a1 += xf[u + np.uint64(1)]
            a2 += xf[u + np.uint64(2)]
            a3 += xf[u + np.uint64(3)]
            a4 += xf[u + np.uint64(4)]
            a5 += xf[u + np.uint64(5)]
            a6 += xf[u + np.uint64(6)]
            a7 += xf[u + np.uint64(7)]
        for i in range(n8, size):
            a0 += xf[b + np.uint64(i)]
        of[q] = lanes_total(a0, a1, a2, a3, a4, a5, a6, a7) / count


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
            # windows are never empty: the first tap stores (avg: 0 + x), the last divides
            taps = (d1 - d0) * (h1 - h0) * (w1 - w0)
            count = out.dtype.type(taps)
            k = 0
            for i_d in range(d0, d1):
                for i_h in range(h0, h1):
                    row = (i_d * in_h + i_h) * in_w
                    for i_w in range(w0, w1):
                        flat = row + i_w
                        xs = np.uint64((n * in_d * in_h * in_w + flat) * c_n + c0)
                        if not is_max:
                            if taps == 1:
                                for c in range(width):
                                    uc = np.uint64(c)
                                    of[o + uc] = (zero + xf[xs + uc]) / count
                            elif k == 0:
                                for c in range(width):
                                    uc = np.uint64(c)
                                    of[o + uc] = zero + xf[xs + uc]
                            elif k == taps - 1:
                                for c in range(width):
                                    uc = np.uint64(c)
                                    of[o + uc] = (of[o + uc] + xf[xs + uc]) / count
                            else:
                                for c in range(width):
                                    uc = np.uint64(c)
                                    of[o + uc] += xf[xs + uc]
                        elif k == 0:  # the first tap is taken whatever it holds, as in PyTorch
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
                        k += 1


@inline_helper
def lane_pixel(lane, q, rounds, n8):
    """The q-th pixel summed into partial sum ``lane`` (module docstring): lane + 8 q for
    the first ``rounds`` of them, then (lane 0 only) the pixels from n8 on."""
    return lane + 8 * q if q < rounds else n8 + q - rounds


def _global_avg_ndhwc(x, out, cblock):
    """out[n, c] = mean over the pixels of x[n, ..., c] in eight partial sums (module
    docstring), kept in an (8, channel block) scratch per task. Each partial sum adds
    four of its pixels per pass over the channels (in its own pixel order), so the
    scratch is read and written once per four input pixels."""
    n_img, in_d, in_h, in_w, c_n = x.shape
    xf = x.reshape(x.size)
    of = out.reshape(out.size)
    size = in_d * in_h * in_w
    n8 = size - size % 8
    rounds = n8 // 8
    count = out.dtype.type(size)
    zero = out.dtype.type(0)
    n_cb = (c_n + cblock - 1) // cblock
    for t in prange(n_img * n_cb):
        cb = t % n_cb
        n = t // n_cb
        c0 = cb * cblock
        width = min(cblock, c_n - c0)
        uw = np.uint64(width)
        acc = np.empty(8 * width, out.dtype)
        first_pixel = n * size
        for lane in range(8):
            a = np.uint64(lane) * uw
            pixels = rounds + (size - n8 if lane == 0 else 0)
            if pixels == 0:
                for c in range(width):
                    acc[a + np.uint64(c)] = zero
            q = 0
            while q < pixels:
                first = q == 0
                x0 = np.uint64((first_pixel + lane_pixel(lane, q, rounds, n8)) * c_n + c0)
                if pixels - q < 4:
                    for c in range(width):
                        uc = np.uint64(c)
                        acc[a + uc] = (zero if first else acc[a + uc]) + xf[x0 + uc]
                    q += 1
                    continue
                x1 = np.uint64((first_pixel + lane_pixel(lane, q + 1, rounds, n8)) * c_n + c0)
                x2 = np.uint64((first_pixel + lane_pixel(lane, q + 2, rounds, n8)) * c_n + c0)
                x3 = np.uint64((first_pixel + lane_pixel(lane, q + 3, rounds, n8)) * c_n + c0)
                for c in range(width):
                    uc = np.uint64(c)
                    s = (zero if first else acc[a + uc]) + xf[x0 + uc]
                    acc[a + uc] = ((s + xf[x1 + uc]) + xf[x2 + uc]) + xf[x3 + uc]
                q += 4
        o = np.uint64(n * c_n + c0)
        for c in range(width):
            uc = np.uint64(c)
            total = lanes_total(acc[uc], acc[uw + uc], acc[2 * uw + uc], acc[3 * uw + uc],
                                acc[4 * uw + uc], acc[5 * uw + uc], acc[6 * uw + uc], acc[7 * uw + uc])
            of[o + uc] = total / count


global_avg_nchw = twin(_global_avg_nchw)
global_avg_ndhwc = twin(_global_avg_ndhwc)
adaptive_ndhwc = twin(_adaptive_ndhwc)


# ---- registered entry point ----------------------------------------------------------

def _make_plan(spec):
    if spec.mode not in ("avg", "max"):
        raise ValueError(f"{spec.op}: unknown adaptive pooling mode {spec.mode!r}")
    is_max = spec.mode == "max"
    cl = spec.channels_last
    work = spec.batch * spec.channels * (math.prod(spec.in_size) + math.prod(spec.out_size))
    is_global = all(o == 1 for o in spec.out_size)
    cblock, serial_block = channel_blocks(spec)
    if is_global and not is_max:
        if cl:
            # blocks of up to 2048 channels (8 partial sums: 64 KiB in float32, in L2):
            # 5-8% faster than 512-channel blocks held in L1 on 32x2048x7x7, the input
            # then read in 8 KiB runs instead of 2 KiB ones
            return make_plan(spec, global_avg_ndhwc, (min(cblock[0], 2048),), False, work,
                             serial_args=(min(serial_block[0], 2048),))
        # counted as GLOBAL_AVG_NCHW_VISITS per input element against SERIAL_WORK: parallel from
        # about 52K elements (210 KB float32), where a cold input is read faster by two cores
        return make_plan(spec, global_avg_nchw, (), False, GLOBAL_AVG_NCHW_VISITS * spec.batch * spec.channels
                         * math.prod(spec.in_size))
    divisible = all(n % o == 0 for n, o in zip(spec.in_size, spec.out_size))
    if divisible and (cl or not is_global):
        steps = lift3(tuple(n // o for n, o in zip(spec.in_size, spec.out_size)), 1)
        window = (*steps, *steps, 1, 1, 1, 0, 0, 0)
        tail, serial_tail = (cblock, serial_block) if cl else ((), ())
        head = (spec.return_indices, *window) if is_max else (*window, 0, 0, 0, True, 0)
        if is_max:
            kernels = max_pool_ndhwc if cl else max_pool_nchw
        else:
            kernels = avg_pool_ndhwc if cl else avg_pool_nchw
        return make_plan(spec, kernels, (*head, *tail), is_max, work, serial_args=(*head, *serial_tail))
    head = (is_max, spec.return_indices)
    return make_plan(spec, adaptive_ndhwc, (*head, *cblock), True, work, serial_args=(*head, *serial_block),
                     channels_last_kernel=True)


_plan = cached_plan(_make_plan)


@register("adaptive_pool", "cpu", "direct", bind=bind_plan(_make_plan), note="reads either layout in place, vectorized")
def adaptive_pool_direct(spec, x):
    return run_pool(spec, x, _plan(spec))
