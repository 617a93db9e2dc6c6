"""Pooling gradients on the GPU, in gather form: the twin of fastconv.cpu.pool.gather_grad.

One thread per input element (grid-stride, thread order following the user's layout:
channel fastest for channels-last, column fastest for channels-first, so a warp writes
a contiguous run); each sums, in the CPU kernel's fixed order, the outputs whose windows
contain it, through the same per-dim CSR lists (fastconv.kernels.pool_reach). Each
thread owns its element: no atomics, and the result is the same on every run. Sums run
in the working dtype (float32 for float16, whose input and output are stored as
float16). What each output contributes (avg, max routing, Lp) is the CPU module's.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, types

from ..dispatch import register
from ..kernels.geometry import lift3
from ..kernels.pool_reach import (
    AVG,
    LP,
    LP_INF,
    MAX,
    adaptive_reaches,
    gather_kind,
    gather_scalars,
    window_reaches,
)
from . import streams
from ._jit import SUFFIX, WORK, WORK_NP, Kernel, array, elementwise, i64, specialised
from .pad import contiguous

f64 = types.float64
KIND_NAMES = {AVG: "avg", MAX: "max", LP: "lp", LP_INF: "lpinf"}


@specialised
def pool_grad_kernel(kind: int, dtype: str, channels_last: bool) -> Kernel:
    work = WORK[dtype]
    cl = channels_last
    routed = kind == MAX or kind == LP_INF

    def kernel(g, idx, y, x, gi, p, divisor_override, n_img, c_n, in_d, in_h, in_w, od_n, oh_n, ow_n,
               ptr_d, outs_d, cnt_d, ptr_h, outs_h, cnt_h, ptr_w, outs_w, cnt_w):
        total = n_img * c_n * in_d * in_h * in_w
        zero = work(0)
        one = work(1)
        pw = work(p)
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        while i < total:
            # one 64-bit division per axis, the remainder by a multiply (each division is a
            # subroutine call in SASS whose live registers were spilled around it)
            if cl:
                r = i // c_n
                c = i - r * c_n
                t = r // in_w
                iw = r - t * in_w
                r = t // in_h
                ih = t - r * in_h
                n = r // in_d
                i_d = r - n * in_d
            else:
                r = i // in_w
                iw = i - r * in_w
                t = r // in_h
                ih = r - t * in_h
                r = t // in_d
                i_d = t - r * in_d
                n = r // c_n
                c = r - n * c_n
            flat = (i_d * in_h + ih) * in_w + iw
            acc = zero
            # the output offset and the window count an axis at a time: fewer live values in
            # the innermost loop
            plane = n * od_n if cl else (n * c_n + c) * od_n
            for a in range(ptr_d[i_d], ptr_d[i_d + 1]):
                od = outs_d[a]
                row_d = (plane + od) * oh_n
                for b in range(ptr_h[ih], ptr_h[ih + 1]):
                    oh = outs_h[b]
                    row_h = (row_d + oh) * ow_n
                    cnt_dh = cnt_d[od] * cnt_h[oh] if kind == AVG else 0
                    for f in range(ptr_w[iw], ptr_w[iw + 1]):
                        ow = outs_w[f]
                        q = (row_h + ow) * c_n + c if cl else row_h + ow
                        if routed:
                            if idx[q] == flat:
                                acc += work(g[q])
                        elif kind == AVG:
                            div = divisor_override
                            if div <= 0:
                                div = cnt_dh * cnt_w[ow]
                            if div > 0:
                                acc += work(g[q]) / work(div)
                        else:
                            yq = y[q]
                            if yq != zero:
                                if p == 1.0:
                                    acc += work(g[q])
                                elif p == 2.0:
                                    acc += work(g[q]) / yq
                                else:
                                    acc += work(g[q]) * yq ** (one - pw)
            if kind == LP or kind == LP_INF:
                xe = work(x[i])
                if xe == zero or acc == zero:
                    acc = zero
                elif kind == LP_INF or p == 1.0:
                    acc = acc if xe > zero else -acc
                elif p == 2.0:
                    acc *= xe
                else:
                    mag = abs(xe) ** (pw - one)
                    acc = acc * mag if xe > zero else -(acc * mag)
            gi[i] = acc
            i += step

    name = f"{KIND_NAMES[kind]}_pool_grad_{'nhwc' if cl else 'nchw'}_{SUFFIX[dtype]}"
    argtypes = ((array(dtype, 1), array(i64, 1), array(work, 1), array(dtype, 1), array(dtype, 1), f64, i64)
                + (i64,) * 8 + (array(i64, 1),) * 9)
    return Kernel(name, kernel, argtypes, 256, 0)


def gather_launch(spec):
    kernel = pool_grad_kernel(gather_kind(spec), spec.dtype, spec.channels_last)
    return elementwise(kernel, math.prod(spec.input_shape), f"{spec.mode} pool gradient")


def launches(spec) -> list:
    return [gather_launch(spec)]


def _flat(a, dtype):
    """A contiguous 1-D device array of ``a`` (a 1-element dummy for None)."""
    if a is None:
        return streams.device_array(1, dtype)
    a = contiguous(a)
    if a.dtype != dtype:  # only the indices can differ (int32 given): the front end passes int64
        a = streams.to_device(streams.to_host(a).astype(dtype))
    return a.reshape(a.size)


def run_gather(spec, reaches, g, idx, y, x):
    dtype = np.dtype(spec.dtype)
    gi = streams.device_array(math.prod(spec.input_shape), dtype)
    if gi.size:
        kind = gather_kind(spec)
        (in_d, in_h, in_w), (od_n, oh_n, ow_n) = lift3(spec.in_size, 1), lift3(spec.out_size, 1)
        p, divisor = gather_scalars(spec, kind)
        geometry = tuple(streams.to_device(v) for r in reaches for v in r)
        gather_launch(spec)(_flat(g, dtype), _flat(idx, np.dtype(np.int64)), _flat(y, WORK_NP[spec.dtype]),
                            _flat(x, dtype), gi, p, divisor, spec.batch, spec.channels, in_d, in_h, in_w,
                            od_n, oh_n, ow_n, *geometry)
    return gi.reshape(*spec.input_shape)


@register("pool_grad", "cuda", "gather", note="numba.cuda: one thread per input element, gather, no atomics")
def pool_grad_gather(spec, g, idx, y, x):
    return run_gather(spec, window_reaches(spec), g, idx, y, x)


@register("adaptive_pool_grad", "cuda", "gather", note="numba.cuda: one thread per input element, gather")
def adaptive_pool_grad_gather(spec, g, idx):
    return run_gather(spec, adaptive_reaches(spec), g, idx, None, None)
