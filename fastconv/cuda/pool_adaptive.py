"""Adaptive average and max pooling on the GPU (global pooling is output size 1).

Output cell i of a dim with input n and output o reads [floor(i n / o), ceil((i+1) n / o))
-- the CPU module's ``adaptive_start`` / ``adaptive_end`` helpers, compiled for the GPU.

Two kernels:
- one thread per output element (grid-stride), looping over its window: used for
  channels-last input (neighbouring threads read neighbouring channels, coalesced)
  and for small windows;
- one warp per output element for channels-first input with large windows (global
  pooling): the 32 lanes stride through the window in flat order, so a window row
  is read as coalesced runs, and combine their partial results in shared memory
  (a 5-step tree; the simulator has no warp shuffles, so shared memory it is).

Max semantics as the CPU kernels: NaN wins and the last NaN takes the index, else the
first maximum; the lanes' partials combine with the same rule (NaN: larger index;
else larger value, ties to the smaller index), so the result does not depend on how
the window was split. Indices are int64, flat over the channel's input plane.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from ..dispatch import register
from ..kernels.adaptive_bounds import adaptive_end, adaptive_start
from ..kernels.element_index import element_position
from ._jit import (
    SUFFIX,
    WORK,
    WORK_NP,
    Kernel,
    Launch,
    array,
    ceil_div,
    elementwise,
    i64,
    layout_name,
    lowest,
    specialised,
)
from .pad import lift5
from .pool_window import pool_outputs, pool_result

LANES = 32
WARPS = 8  # outputs per block of the warp kernel
WARP_THRESHOLD = 16  # mean window size from which channels-first input uses a warp per output


@specialised
def adaptive_thread_kernel(mode: str, nd: int, dtype: str, channels_last: bool, want_idx: bool) -> Kernel:
    work = WORK[dtype]
    cl = channels_last
    is_max = mode == "max"
    neg_inf = lowest(dtype)  # -inf, or an integer dtype's minimum (integers: max pooling only)

    def kernel(x, out, idx):
        if cl:
            n_img, in_d, in_h, in_w, c_n = x.shape
            od_n, oh_n, ow_n = out.shape[1], out.shape[2], out.shape[3]
        else:
            n_img, c_n, in_d, in_h, in_w = x.shape
            od_n, oh_n, ow_n = out.shape[2], out.shape[3], out.shape[4]
        total = n_img * c_n * od_n * oh_n * ow_n
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        while i < total:
            n, c, od, oh, ow = element_position(i, cl, c_n, od_n, oh_n, ow_n)
            d0 = adaptive_start(od, in_d, od_n)
            d1 = adaptive_end(od, in_d, od_n)
            h0 = adaptive_start(oh, in_h, oh_n)
            h1 = adaptive_end(oh, in_h, oh_n)
            w0 = adaptive_start(ow, in_w, ow_n)
            w1 = adaptive_end(ow, in_w, ow_n)
            acc = work(neg_inf) if is_max else work(0)
            best = -1
            for i_d in range(d0, d1):
                for i_h in range(h0, h1):
                    for i_w in range(w0, w1):
                        if cl:
                            v = work(x[n, i_d, i_h, i_w, c])
                        else:
                            v = work(x[n, c, i_d, i_h, i_w])
                        if is_max:
                            if best < 0 or v > acc or v != v:
                                acc = v
                                best = (i_d * in_h + i_h) * in_w + i_w
                        else:
                            acc += v
            if not is_max:
                acc = work(acc / work((d1 - d0) * (h1 - h0) * (w1 - w0)))  # one type for integer dtypes
            if cl:
                out[n, od, oh, ow, c] = acc
                if want_idx:
                    idx[n, od, oh, ow, c] = best
            else:
                out[n, c, od, oh, ow] = acc
                if want_idx:
                    idx[n, c, od, oh, ow] = best
            i += step

    what = "max_idx" if want_idx else mode
    name = f"adaptive_{what}_pool{nd}d_{layout_name(nd, cl)}_thread_{SUFFIX[dtype]}"
    argtypes = (array(dtype, 5), array(dtype, 5), array(i64, 5))
    return Kernel(name, kernel, argtypes, 256, 0)


@specialised
def adaptive_warp_kernel(mode: str, nd: int, dtype: str, want_idx: bool) -> Kernel:
    """Channels-first input, one warp per output element."""
    work = WORK[dtype]
    is_max = mode == "max"
    neg_inf = lowest(dtype)
    threads = LANES * WARPS

    def kernel(x, out, idx):
        sv = cuda.shared.array(threads, work)
        si = cuda.shared.array(threads, i64)
        n_img, c_n, in_d, in_h, in_w = x.shape
        od_n, oh_n, ow_n = out.shape[2], out.shape[3], out.shape[4]
        total = n_img * c_n * od_n * oh_n * ow_n
        t = cuda.threadIdx.x
        lane = t % LANES
        o = cuda.blockIdx.x * WARPS + t // LANES
        acc = work(neg_inf) if is_max else work(0)
        best = -1
        n = c = od = oh = ow = 0
        count = 1
        if o < total:
            ow = o % ow_n
            r = o // ow_n
            oh = r % oh_n
            r = r // oh_n
            od = r % od_n
            r = r // od_n
            c = r % c_n
            n = r // c_n
            d0 = adaptive_start(od, in_d, od_n)
            h0 = adaptive_start(oh, in_h, oh_n)
            w0 = adaptive_start(ow, in_w, ow_n)
            hn = adaptive_end(oh, in_h, oh_n) - h0
            wn = adaptive_end(ow, in_w, ow_n) - w0
            count = (adaptive_end(od, in_d, od_n) - d0) * hn * wn
            e = lane
            while e < count:
                i_w = w0 + e % wn
                q = e // wn
                i_h = h0 + q % hn
                i_d = d0 + q // hn
                v = work(x[n, c, i_d, i_h, i_w])
                if is_max:
                    if best < 0 or v > acc or v != v:
                        acc = v
                        best = (i_d * in_h + i_h) * in_w + i_w
                else:
                    acc += v
                e += LANES
        sv[t] = acc
        si[t] = best
        cuda.syncthreads()
        s = LANES // 2
        while s > 0:
            if lane < s:
                a = sv[t]
                ia = si[t]
                b = sv[t + s]
                ib = si[t + s]
                if is_max:
                    a_nan = a != a
                    b_nan = b != b
                    take_b = False
                    if ib >= 0:
                        if ia < 0:
                            take_b = True
                        elif a_nan or b_nan:
                            take_b = b_nan and (not a_nan or ib > ia)
                        else:
                            take_b = b > a or (b == a and ib < ia)
                    if take_b:
                        sv[t] = b
                        si[t] = ib
                else:
                    sv[t] = a + b
            cuda.syncthreads()
            s //= 2
        if lane == 0 and o < total:
            if is_max:
                out[n, c, od, oh, ow] = sv[t]
            else:
                out[n, c, od, oh, ow] = work(sv[t] / work(count))
            if want_idx:
                idx[n, c, od, oh, ow] = si[t]

    what = "max_idx" if want_idx else mode
    name = f"adaptive_{what}_pool{nd}d_{layout_name(nd, False)}_warp{LANES}x{WARPS}_{SUFFIX[dtype]}"
    argtypes = (array(dtype, 5), array(dtype, 5), array(i64, 5))
    shared = threads * (np.dtype(WORK_NP[dtype]).itemsize + 8)
    return Kernel(name, kernel, argtypes, threads, shared)


def _mean_window(spec) -> float:
    size = 1.0
    for n, o in zip(spec.in_size, spec.out_size):
        size *= n / o
    return size


def adaptive_launch(spec) -> Launch:
    want_idx = spec.mode == "max" and spec.return_indices
    total = spec.batch * spec.channels * int(np.prod(spec.out_size))
    if not spec.channels_last and _mean_window(spec) >= WARP_THRESHOLD:
        kernel = adaptive_warp_kernel(spec.mode, spec.nd, spec.dtype, want_idx)
        return Launch(kernel, ceil_div(total, WARPS), f"adaptive {spec.mode} pool, warp per output")
    kernel = adaptive_thread_kernel(spec.mode, spec.nd, spec.dtype, spec.channels_last, want_idx)
    return elementwise(kernel, total, f"adaptive {spec.mode} pool")


def launches(spec) -> list:
    return [adaptive_launch(spec)]


@register("adaptive_pool", "cuda", "direct",
          note="numba.cuda: thread per output, or a warp per output for large channels-first windows")
def adaptive_pool_direct(spec, x):
    want_idx = spec.mode == "max" and spec.return_indices
    x5 = lift5(x, spec.nd, spec.channels_last)
    out, idx = pool_outputs(spec, want_idx)
    adaptive_launch(spec)(x5, out, idx)
    return pool_result(spec, out, idx, want_idx)

