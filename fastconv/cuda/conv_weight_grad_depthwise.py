"""Depthwise weight gradients on the GPU (algo "depthwise": one in-channel per group,
channel multiplier M = K / C): the twin of cpu/conv/weight_grad/depthwise.py.

A depthwise layer has few weights (K x taps) and a long sum per weight (every pixel of
every image), so the sum is cut into fixed *segments* of consecutive pixels (their length
follows from the layer alone; their partial sums take at most PARTIAL_BYTES beyond the
working copies, unless a single row of segments is larger). The main kernel's block owns LANES consecutive
out-channels (one per lane: the warp's reads of the channels-last operands coalesce) and
a group of up to TAPS taps; each thread row takes whole segments, adds the segment's
pixels in order into one register per tap (grad_output read once for all of them) and
stores each segment's sums. The reduce kernel adds the segments of each weight in a
fixed order (strided over SUM_ROWS thread rows, then a fixed shared-memory tree).

No atomics, and the order of every sum depends only on the layer: how many segments a
block takes (``splits``, the grid's size) does not change a bit of the result.
Operands: the padded channels-last working input (cuda/pad.py: every padding mode, both
layouts, float16 as float32) and grad_output in the same working layout.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .._arrays import shape_of
from ..dispatch import register
from ..kernels.geometry import geometry3, lift3
from . import streams
from ._jit import SUFFIX, WORK, WORK_NP, Kernel, Launch, array, ceil_div, i64, specialised
from .conv_weight_grad import _grad_output_pad
from .limits import sm_count
from .pad import conv_pad_launches, conv_working_input, working_input

LANES = 32  # out-channels per block, one per lane
ROWS = 8  # thread rows: each takes whole segments
MAX_TAPS = 9  # taps per thread (registers); more taps take several tap groups
MIN_SEGMENT = 32  # pixels per segment at least
MAX_SEGMENTS = 2048  # segments per weight at most
PARTIAL_BYTES = 16 << 20  # the partial sums (segments x weights) at most this, or one segment row of them
SUM_ROWS = 16  # thread rows of the segment sum: each adds every SUM_ROWS-th segment


def tap_group(taps: int) -> int:
    """Taps per thread: the fewest groups of at most MAX_TAPS, evenly filled."""
    return ceil_div(taps, ceil_div(taps, MAX_TAPS))


def segment_length(pixels: int, weights: int, itemsize: int) -> int:
    """Pixels per segment, from the layer alone (so the sums' order is the same on any device)."""
    most = max(ROWS, min(MAX_SEGMENTS, PARTIAL_BYTES // (weights * itemsize)))
    return max(MIN_SEGMENT, ceil_div(pixels, most))


@specialised
def depthwise_weight_grad_kernel(taps_per_thread: int, dtype: str) -> Kernel:
    """part[s, tap, k] = sum over segment s's pixels of g[.., k] * x[.., tap's input, k // M]."""
    work = WORK[dtype]
    tpt = taps_per_thread

    def kernel_fn(xf, g, part, dp_n, hp_n, wp_n, c_n, kh_n, kw_n, sd, sh, sw, dd, dh, dw, multiplier, seg_len,
                  segs_per_block):
        n_seg, taps, k_n = part.shape
        n_img, od_n, oh_n, ow_n = g.shape[0], g.shape[1], g.shape[2], g.shape[3]
        pixels = n_img * od_n * oh_n * ow_n
        kblocks = (k_n + LANES - 1) // LANES
        tgroups = (taps + tpt - 1) // tpt
        b = cuda.blockIdx.x
        kb = b % kblocks
        r = b // kblocks
        tg = r % tgroups
        sb = r // tgroups
        lane = cuda.threadIdx.x % LANES
        row = cuda.threadIdx.x // LANES
        k = kb * LANES + lane
        if k >= k_n:
            return
        c = k // multiplier
        # each tap's offset in the flat working input, from its window's corner
        off = cuda.local.array(tpt, i64)
        for j in range(tpt):
            tap = min(tg * tpt + j, taps - 1)
            kw = tap % kw_n
            q = tap // kw_n
            kh = q % kh_n
            kd = q // kh_n
            off[j] = ((kd * dd * hp_n + kh * dh) * wp_n + kw * dw) * c_n
        acc = cuda.local.array(tpt, work)
        seg_end = min((sb + 1) * segs_per_block, n_seg)
        seg = sb * segs_per_block + row
        while seg < seg_end:
            for j in range(tpt):
                acc[j] = work(0)
            p = seg * seg_len
            p_end = min(p + seg_len, pixels)
            ow = p % ow_n
            rest = p // ow_n
            oh = rest % oh_n
            rest = rest // oh_n
            od = rest % od_n
            n = rest // od_n
            while p < p_end:
                gv = work(g[n, od, oh, ow, k])
                base = (((n * dp_n + od * sd) * hp_n + oh * sh) * wp_n + ow * sw) * c_n + c
                for j in range(tpt):
                    acc[j] += gv * xf[base + off[j]]
                p += 1
                ow += 1
                if ow == ow_n:
                    ow = 0
                    oh += 1
                    if oh == oh_n:
                        oh = 0
                        od += 1
                        if od == od_n:
                            od = 0
                            n += 1
            for j in range(tpt):
                tap = tg * tpt + j
                if tap < taps:
                    part[seg, tap, k] = acc[j]
            seg += ROWS

    argtypes = (array(work, 1), array(work, 5), array(work, 3)) + (i64,) * 15
    name = f"conv_weight_grad_depthwise_l{LANES}x{ROWS}_t{tpt}_{SUFFIX[dtype]}"
    return Kernel(name, kernel_fn, argtypes, LANES * ROWS, 0)


@specialised
def segment_sum_kernel(dtype: str) -> Kernel:
    """out[k, tap] = the sum of part[s, tap * K + k] over the segments s, in a fixed order."""
    work = WORK[dtype]
    threads = LANES * SUM_ROWS

    def kernel_fn(part, out):
        sums = cuda.shared.array(threads, work)
        n_seg, m = part.shape
        k_n = out.shape[0]
        t = cuda.threadIdx.x
        lane = t % LANES
        row = t // LANES
        e = cuda.blockIdx.x * LANES + lane
        e_in = min(e, m - 1)
        acc = work(0)
        s = row
        while s < n_seg:
            acc += part[s, e_in]
            s += SUM_ROWS
        sums[t] = acc
        cuda.syncthreads()
        step = SUM_ROWS // 2
        while step > 0:
            if row < step:
                sums[t] += sums[t + step * LANES]
            cuda.syncthreads()
            step //= 2
        if row == 0 and e < m:
            tap = e // k_n
            out[e - tap * k_n, tap] = sums[lane]

    argtypes = (array(work, 2), array(dtype, 2))
    return Kernel(f"conv_weight_grad_segment_sum_l{LANES}x{SUM_ROWS}_{SUFFIX[dtype]}", kernel_fn, argtypes, threads,
                  threads * WORK_NP[dtype]().itemsize)


class Plan:
    """The grid of one depthwise weight gradient: segments (from the layer) and the
    segments per block (``splits`` blocks along the pixels, at most one per segment; by
    default enough blocks to fill the device about four times over)."""

    def __init__(self, spec, out3, splits: int | None = None):
        taps = math.prod(spec.kernel)
        self.taps_per_thread = tap_group(taps)
        pixels = spec.batch * math.prod(out3)
        self.seg_len = segment_length(pixels, spec.out_channels * taps, WORK_NP[spec.dtype]().itemsize)
        self.segments = max(1, ceil_div(pixels, self.seg_len))
        others = ceil_div(spec.out_channels, LANES) * ceil_div(taps, self.taps_per_thread)
        if splits is None:  # whole rows of segments per block
            per_row = ceil_div(self.segments, ROWS * ceil_div(4 * sm_count(), others))
            self.segs_per_block = min(ROWS * per_row, self.segments)
        else:
            self.segs_per_block = ceil_div(self.segments, max(1, min(int(splits), self.segments)))
        self.blocks = others * ceil_div(self.segments, self.segs_per_block)
        self.outputs = spec.out_channels * taps

    def launches(self, dtype: str) -> list:
        return [Launch(depthwise_weight_grad_kernel(self.taps_per_thread, dtype), self.blocks, "depthwise weight_grad"),
                Launch(segment_sum_kernel(dtype), ceil_div(self.outputs, LANES), "segment sums")]


def _depthwise(spec):
    if spec.in_per_group != 1:
        return f"needs one input channel per group (groups == in_channels), got {spec.in_per_group}"
    return None


def launches(spec) -> list:
    geom = geometry3(spec)
    return (conv_pad_launches(spec, geom) + _grad_output_pad(spec, geom.out_size)
            + Plan(spec, geom.out_size).launches(spec.dtype))


def depthwise_weight_grad(spec, x, grad_output, splits: int | None = None):
    """The weight gradient of the depthwise conv ``spec``; ``splits``: blocks along the
    pixels (the result is bitwise the same for any value). grad_output may have fewer
    output positions than the spec (a transposed conv's weight gradient)."""
    geom = geometry3(spec)
    xp = conv_working_input(spec, x, geom)
    shape = tuple(shape_of(grad_output))
    out3 = lift3(shape[1:-1] if spec.channels_last else shape[2:], 1)
    g5 = working_input(grad_output, spec.nd, spec.batch, spec.out_channels, out3, ((0, 0),) * 3, "zeros", 0.0,
                       spec.dtype, spec.channels_last)
    plan = Plan(spec, out3, splits)
    taps = math.prod(geom.kernel)
    part = streams.device_array((plan.segments, taps, spec.out_channels), WORK_NP[spec.dtype])
    out = streams.device_array((spec.out_channels, taps), np.dtype(spec.dtype))
    main, reduce = plan.launches(spec.dtype)
    main(xp.reshape(xp.size), g5, part, *xp.shape[1:], *geom.kernel[1:], *geom.stride, *geom.dilation,
         spec.out_per_group, plan.seg_len, plan.segs_per_block)
    reduce(part.reshape(plan.segments, taps * spec.out_channels), out)
    return out.reshape(*spec.weight_shape)


@register("conv_weight_grad", "cuda", "depthwise", supports=_depthwise,
          note="numba.cuda: a block per 32 out-channels and a tap group, fixed pixel segments summed in "
               "registers, then a fixed-order segment sum; bitwise the same for any split")
def conv_weight_grad_depthwise(spec, x, grad_output):
    return depthwise_weight_grad(spec, x, grad_output)
