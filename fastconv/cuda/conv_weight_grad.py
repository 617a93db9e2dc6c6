"""Convolution weight gradients on the GPU: a reduction over batch and output pixels per
weight element, deterministic, no atomics.

A block owns LANES consecutive weight elements of one tap, flat over (out-channel k,
in-channel c of its group), c fastest: for an ordinary conv the lanes read consecutive
input channels (coalesced) and one grad_output value (a broadcast); for a depthwise conv
(one in-channel per group) consecutive out-channels, so both operands coalesce. SLICES
thread rows split the pixels (n, od, oh, ow) round-robin, each in increasing order, and
a fixed shared-memory tree adds the slices: the same order on every run and every GPU.
Operands: the padded channels-last working input (cuda/pad.py, every padding mode) and
grad_output in the same working layout.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from .._arrays import shape_of
from ..dispatch import register
from ..kernels.geometry import geometry3, lift3
from . import streams
from ._jit import SUFFIX, WORK, WORK_NP, Kernel, Launch, array, ceil_div, i64, specialised
from .pad import conv_pad_launches, conv_working_input, needs_pad, pad_launch, working_input

LANES = 32
SLICES = 8


@specialised
def weight_grad_kernel(dtype: str) -> Kernel:
    work = WORK[dtype]
    threads = LANES * SLICES

    def kernel_fn(xp, g, out, groups, sd, sh, sw, dd, dh, dw):
        part = cuda.shared.array(threads, work)
        k_n, cg, kd_n, kh_n, kw_n = out.shape
        n_img, od_n, oh_n, ow_n = g.shape[0], g.shape[1], g.shape[2], g.shape[3]
        elems = k_n * cg
        chunks = (elems + LANES - 1) // LANES
        tap = cuda.blockIdx.x // chunks
        kd = tap // (kh_n * kw_n)
        kh = (tap // kw_n) % kh_n
        kw = tap % kw_n
        t = cuda.threadIdx.x
        lane = t % LANES
        row = t // LANES
        e = (cuda.blockIdx.x % chunks) * LANES + lane
        e_in = min(e, elems - 1)
        k = e_in // cg
        c = e_in - k * cg
        ci = (k // (k_n // groups)) * cg + c
        acc = work(0)
        pixels = n_img * od_n * oh_n * ow_n
        p = row
        while p < pixels:
            ow = p % ow_n
            r = p // ow_n
            oh = r % oh_n
            r = r // oh_n
            od = r % od_n
            n = r // od_n
            acc += g[n, od, oh, ow, k] * xp[n, od * sd + kd * dd, oh * sh + kh * dh, ow * sw + kw * dw, ci]
            p += SLICES
        part[t] = acc
        cuda.syncthreads()
        step = SLICES // 2
        while step > 0:
            if row < step:
                part[t] += part[t + step * LANES]
            cuda.syncthreads()
            step //= 2
        if row == 0 and e < elems:
            out[k, c, kd, kh, kw] = part[lane]

    argtypes = (array(work, 5), array(work, 5), array(dtype, 5)) + (i64,) * 7
    name = f"conv_weight_grad_l{LANES}x{SLICES}_{SUFFIX[dtype]}"
    return Kernel(name, kernel_fn, argtypes, threads, threads * WORK_NP[dtype]().itemsize)


def weight_grad_launch(spec) -> Launch:
    taps = 1
    for k in spec.kernel:
        taps *= k
    return Launch(weight_grad_kernel(spec.dtype), taps * ceil_div(spec.out_channels * spec.in_per_group, LANES),
                  "weight_grad")


def _grad_output_pad(spec, out3):
    zero = ((0, 0),) * 3
    if not needs_pad(out3, zero, spec.dtype, spec.channels_last):
        return []
    return [pad_launch(spec.batch, spec.out_channels, out3, zero, spec.dtype, spec.channels_last)]


def launches(spec) -> list:
    geom = geometry3(spec)
    return conv_pad_launches(spec, geom) + _grad_output_pad(spec, geom.out_size) + [weight_grad_launch(spec)]


@register("conv_weight_grad", "cuda", "direct",
          note="numba.cuda: a block per tap and 32 weight elements, pixels in 8 fixed slices, fixed tree sum")
def conv_weight_grad(spec, x, grad_output):
    """The weight gradient of the forward conv ``spec``; grad_output may have fewer output
    positions than the spec (a transposed conv's weight gradient): its own extent is summed."""
    geom = geometry3(spec)
    xp = conv_working_input(spec, x, geom)
    shape = tuple(shape_of(grad_output))
    out3 = lift3(shape[1:-1] if spec.channels_last else shape[2:], 1)
    g5 = working_input(grad_output, spec.nd, spec.batch, spec.out_channels, out3, ((0, 0),) * 3, "zeros", 0.0,
                       spec.dtype, spec.channels_last)
    out = streams.device_array((spec.out_channels, spec.in_per_group, *geom.kernel), np.dtype(spec.dtype))
    weight_grad_launch(spec)(xp, g5, out, spec.groups, *geom.stride, *geom.dilation)
    return out.reshape(*spec.weight_shape)
