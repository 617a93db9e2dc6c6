"""Weight gradients through GEMM on the GPU (algos "im2col", "gemm" and "tiled"), the twins of
cpu/conv/weight_grad/{im2col,gemm,tiled}.py: per group,
``dW (Kg x taps*Cg) = grad_output^T (Kg x P) @ columns (P x taps*Cg)``, P the batch's output pixels.

"im2col" builds the columns with the forward im2col kernel (cuda/conv_im2col.py), a pass of
segments at a time; "tiled" builds none: the GEMM gathers each column tile from the padded
working input while staging it in shared memory (an implicit GEMM); a 1x1 stride-1 layer
("gemm", or either other algo on such a layer) reads the channels-last working input as its
columns. One GEMM kernel serves all three: it always gathers, built columns being a window
of 1x1 over a (rows, groups*taps_c) "image".
The GEMM has the forward's tile shape (conv_im2col.gemm_tiling over the Kg x taps*Cg
gradient, BK-pixel steps staged in shared memory, a TM x TN register tile per thread), but
its reduction runs over pixels, so both operands are read pixel-major.

Deterministic, bitwise, whatever the device: the pixels are cut into segments of SEG
pixels (a split-K), SEG fixed by the layer's shape alone (GRID_TARGET is a constant, not
the device's multiprocessor count). A block owns one tile of the gradient for one segment
and writes that segment's partial sums apart (one thread's sum over the segment's pixels,
in order); a reduce kernel adds the segments in order into the working-dtype total, then
stores the user's dtype. Columns and partials are built by passes of whole segments within
the workspace cap; the passes add into the same total in segment order, so the result does
not depend on how the segments are split into passes either. float16 is read, summed and
totalled in float32, rounded once. (A block looping over several segments held more
registers than the 8x8 tile has under two resident blocks: ptxas spilled.)
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .._arrays import shape_of
from .._workspace import workspace_limit
from ..dispatch import register
from ..kernels.element_index import pixel_position
from ..kernels.geometry import geometry3, lift3
from . import streams
from ._jit import STORE, SUFFIX, WORK, WORK_NP, Kernel, Launch, array, ceil_div, elementwise, i64, specialised
from .conv_im2col import BK, IM2COL_ROWS, gemm_tiling, im2col_kernel
from .conv_weight_grad import _grad_output_pad
from .pad import conv_pad_launches, conv_working_input, working_input

GRID_TARGET = 264  # blocks the segments aim for (a fixed number: the segments must not follow the device)
MAX_SEGMENTS = 64
MIN_SEGMENT = 4 * BK  # pixels


@specialised
def weight_grad_gemm_kernel(tiling, dtype: str, implicit: bool) -> Kernel:
    """part[s, g*Kg + m, n] = sum over segment s's pixels p of a[p, g*a_gs + m] * column
    (p, n) of group g. ``implicit``: the column element is gathered from the channels-last
    ``xp`` as the forward's im2col copies it (pixel p_base + p at tap n // cg, in-channel
    g*cg + n % cg); else ``xp`` holds the column matrix, (1, 1, 1, rows, groups*cg). Each
    staged element decodes its pixel and tap anew: decoded once per thread and kept, they
    held 20-50 more registers (ptxas, sm_90) and spilled."""
    tr_n, tc_n, tm, tn = tiling
    work = WORK[dtype]
    bm = tr_n * tm
    bn = tc_n * tn
    threads = tr_n * tc_n
    as_size = BK * bm
    bs_size = BK * bn
    acc_n = tm * tn

    def kernel(a, a_gs, xp, p_base, od_n, oh_n, ow_n, kh_n, kw_n, sd, sh, sw, dd, dh, dw, cg, kg, taps_c, seg,
               part):
        a_s = cuda.shared.array(as_size, work)
        b_s = cuda.shared.array(bs_size, work)
        acc = cuda.local.array(acc_n, work)
        res = cuda.local.array(acc_n, work)
        ar = cuda.local.array(tm, work)
        br = cuda.local.array(tn, work)
        n_rows = a.shape[0]
        n_seg = part.shape[0]
        groups = part.shape[1] // kg
        n_tiles = (taps_c + bn - 1) // bn
        m_tiles = (kg + bm - 1) // bm
        blk = cuda.blockIdx.x
        nt = blk % n_tiles
        blk = blk // n_tiles
        mt = blk % m_tiles
        blk = blk // m_tiles
        g = blk % groups
        s = blk // groups  # the pixel segment
        t = cuda.threadIdx.x
        tc = t % tc_n
        tr = t // tc_n
        m0 = mt * bm
        n0 = nt * bn
        a0 = g * a_gs
        c0 = g * cg
        if s < n_seg:
            p_end = min((s + 1) * seg, n_rows)
            for i in range(acc_n):
                acc[i] = 0
            for p0 in range(s * seg, p_end, BK):
                cuda.syncthreads()
                e = t
                while e < bm * BK:
                    i = e % bm
                    kk = e // bm
                    av = work(0)
                    if m0 + i < kg and p0 + kk < p_end:
                        av = a[p0 + kk, a0 + m0 + i]
                    a_s[kk * bm + i] = av
                    e += threads
                e = t
                while e < bn * BK:
                    j = e % bn
                    kk = e // bn
                    bv = work(0)
                    if n0 + j < taps_c and p0 + kk < p_end:
                        if implicit:
                            n, od, oh, ow = pixel_position(p_base + p0 + kk, od_n, oh_n, ow_n)
                            tap = (n0 + j) // cg
                            c = n0 + j - tap * cg
                            kw = tap % kw_n
                            tap = tap // kw_n
                            kh = tap % kh_n
                            kd = tap // kh_n
                            bv = xp[n, od * sd + kd * dd, oh * sh + kh * dh, ow * sw + kw * dw, c0 + c]
                        else:
                            bv = xp[0, 0, 0, p0 + kk, c0 + n0 + j]
                    b_s[kk * bn + j] = bv
                    e += threads
                cuda.syncthreads()
                for kk in range(BK):
                    for i in range(tm):
                        ar[i] = a_s[kk * bm + tr + i * tr_n]
                    for jj in range(tn):
                        br[jj] = b_s[kk * bn + tc + jj * tc_n]
                    for i in range(tm):
                        for jj in range(tn):
                            acc[i * tn + jj] += ar[i] * br[jj]
            # as in conv_im2col's GEMM: the stores read a copy, so ``acc`` stays constant-indexed
            # (in registers) where NVVM does not unroll the store loop
            for i in range(acc_n):
                res[i] = acc[i]
            for i in range(tm):
                m = m0 + tr + i * tr_n
                if m < kg:
                    for jj in range(tn):
                        n = n0 + tc + jj * tc_n
                        if n < taps_c:
                            part[s, g * kg + m, n] = res[i * tn + jj]

    name = f"weight_grad_gemm{'_implicit' if implicit else ''}_b{bm}x{bn}x{BK}_r{tm}x{tn}_{SUFFIX[dtype]}"
    argtypes = (array(work, 2), i64, array(work, 5)) + (i64,) * 16 + (array(work, 3),)
    shared = (as_size + bs_size) * WORK_NP[dtype]().itemsize
    return Kernel(name, kernel, argtypes, threads, shared, 2 if threads == 256 else 1)


@specialised
def segment_sum_kernel(dtype: str) -> Kernel:
    """total[k, n] (+)= part[0, k, n] + part[1, k, n] + ... in segment order; on the last pass
    out[k, c, tap] = total[k, tap*Cg + c] in the user's dtype."""
    work = WORK[dtype]
    store = STORE[dtype]

    def kernel(part, total, first, last, out):
        n_seg, k_n, taps_c = part.shape
        cg = out.shape[1]
        size = k_n * taps_c
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        while i < size:
            n = i % taps_c
            k = i // taps_c
            s0 = 0
            if first:
                v = part[0, k, n]
                s0 = 1
            else:
                v = total[k, n]
            for s in range(s0, n_seg):
                v += part[s, k, n]
            total[k, n] = v
            if last:
                out[k, n % cg, n // cg] = store(v)
            i += step

    argtypes = (array(work, 3), array(work, 2), i64, i64, array(dtype, 3))
    return Kernel(f"weight_grad_segment_sum_{SUFFIX[dtype]}", kernel, argtypes, 256, 0)


class Plan:
    """Tiling, segment length and passes of a weight gradient GEMM, from the layer's shape.
    ``implicit`` (algo "tiled"): the GEMM gathers its columns from the working input; else
    ("im2col") they are built per pass, but for a 1x1 stride-1 layer, whose working input
    is its own column matrix."""

    def __init__(self, spec, g_size, implicit=False):
        self.spec = spec
        self.g_size = tuple(g_size)
        self.kg, self.groups = spec.out_per_group, spec.groups
        self.taps_c = math.prod(spec.kernel) * spec.in_per_group
        self.rows = spec.batch * math.prod(self.g_size)
        self.direct = (spec.is_pointwise and all(s == 1 for s in spec.stride)
                       and self.g_size == tuple(spec.in_size))
        self.columns = not (implicit or self.direct)
        self.gathers = implicit and not self.direct
        tr, tc, tm, tn = gemm_tiling(self.kg, self.taps_c, self.groups, spec.dtype, GRID_TARGET)
        # the segments follow this tiling whatever the kernel's, so every algo sums alike
        wanted = min(MAX_SEGMENTS, ceil_div(GRID_TARGET, ceil_div(self.kg, tr * tm) * ceil_div(self.taps_c, tc * tn)
                                            * self.groups))
        if self.gathers:  # the gather's registers beside an 8x8 tile spilled (ptxas, sm_80/sm_90)
            tm = min(tm, 4)
        self.tiling = tr, tc, tm, tn
        tiles = ceil_div(self.kg, tr * tm) * ceil_div(self.taps_c, tc * tn) * self.groups
        self.seg = ceil_div(max(MIN_SEGMENT, ceil_div(self.rows, wanted)), BK) * BK
        self.n_seg = ceil_div(self.rows, self.seg)
        item = WORK_NP[spec.dtype]().itemsize
        # a pass holds its segments' partials and (built columns) their columns within half the cap
        per_seg = spec.out_channels * self.taps_c * item
        if self.columns:
            per_seg += self.seg * self.groups * self.taps_c * item
        self.pass_segs = max(1, min(self.n_seg, (workspace_limit() // 2) // per_seg))
        self.kernel = weight_grad_gemm_kernel(self.tiling, spec.dtype, self.gathers)
        self.tiles = tiles

    def passes(self):
        """(first row, rows) of each pass: whole segments."""
        step = self.pass_segs * self.seg
        return [(r, min(step, self.rows - r)) for r in range(0, self.rows, step)]

    def gemm(self, rows: int) -> Launch:
        segs = ceil_div(rows, self.seg)
        read = "columns gathered from the input" if self.gathers else "columns read in place"
        return Launch(self.kernel, self.tiles * segs, f"weight-gradient GEMM, {segs} pixel segments, {read}")

    def reduce(self) -> Launch:
        return elementwise(segment_sum_kernel(self.spec.dtype), self.spec.out_channels * self.taps_c,
                           "segment sum (in order)")

    def im2col(self, rows: int) -> Launch:
        kernel = im2col_kernel(self.spec.dtype)
        n_cols = self.groups * self.taps_c
        threads = min(kernel.threads, max(32, ceil_div(n_cols, 32) * 32))
        return Launch(kernel, ceil_div(n_cols, threads) * ceil_div(rows, IM2COL_ROWS), "im2col", threads)


def _g_size(spec, grad_output):
    shape = tuple(shape_of(grad_output))
    return shape[1:-1] if spec.channels_last else shape[2:]


def launches(spec, implicit=False) -> list:
    geom = geometry3(spec)
    plan = Plan(spec, spec.out_size, implicit)
    passes = plan.passes()
    steps = ([plan.im2col(passes[0][1])] if plan.columns else []) + [plan.gemm(passes[0][1]), plan.reduce()]
    if len(passes) > 1:
        for launch in steps:
            launch.what += f" (x{len(passes)} passes)"
    return conv_pad_launches(spec, geom) + _grad_output_pad(spec, geom.out_size) + steps


def implicit_launches(spec) -> list:
    return launches(spec, implicit=True)


def weight_grad_gemm(spec, x, grad_output, implicit=False):
    geom = geometry3(spec)
    work_np = WORK_NP[spec.dtype]
    g_size = _g_size(spec, grad_output)
    plan = Plan(spec, g_size, implicit)
    xp = conv_working_input(spec, x, geom)
    out3 = lift3(g_size, 1)
    g5 = working_input(grad_output, spec.nd, spec.batch, spec.out_channels, out3, ((0, 0),) * 3, "zeros", 0.0,
                       spec.dtype, spec.channels_last)
    a = g5.reshape(plan.rows, spec.out_channels)
    taps = math.prod(spec.kernel)
    out = streams.device_array((spec.out_channels, spec.in_per_group, taps), np.dtype(spec.dtype))
    total = streams.device_array((spec.out_channels, plan.taps_c), work_np)
    passes = plan.passes()
    part = streams.device_array((plan.pass_segs, spec.out_channels, plan.taps_c), work_np)
    gather = (*out3, *geom.kernel[1:], *geom.stride, *geom.dilation, spec.in_per_group)
    if plan.columns:
        n_cols = plan.groups * plan.taps_c
        cols_all = streams.device_array((passes[0][1], n_cols), work_np)
        geo = (*out3, *geom.kernel, *geom.stride, *geom.dilation)
    elif plan.direct:
        x_rows = xp.reshape(1, 1, 1, plan.rows, spec.in_channels)
    for index, (r0, rows) in enumerate(passes):
        if plan.columns:  # a pass's built columns, read as a (1, 1, 1, rows, groups * taps_c) image
            plan.im2col(rows)(xp, r0, *geo, plan.groups, cols_all[:rows])
            b, base, b_gather = cols_all[:rows].reshape(1, 1, 1, rows, n_cols), 0, (1,) * 11 + (plan.taps_c,)
        elif plan.direct:  # the working input is the column matrix
            b, base, b_gather = x_rows[:, :, :, r0:r0 + rows], 0, (1,) * 11 + (spec.in_per_group,)
        else:
            b, base, b_gather = xp, r0, gather
        segs = ceil_div(rows, plan.seg)
        plan.gemm(rows)(a[r0:r0 + rows], spec.out_per_group, b, base, *b_gather, plan.kg, plan.taps_c, plan.seg,
                        part[:segs])
        plan.reduce()(part[:segs], total, int(index == 0), int(index == len(passes) - 1), out)
    return out.reshape(*spec.weight_shape)


def _pointwise(spec):
    return None if spec.is_pointwise else "kernel must be 1x1 with no padding (pointwise)"


@register("conv_weight_grad", "cuda", "im2col",
          note="numba.cuda: grad_output^T @ im2col columns, tiled shared-memory GEMM over fixed pixel segments "
               "summed in order (bitwise the same for any grid)")
def conv_weight_grad_im2col(spec, x, grad_output):
    return weight_grad_gemm(spec, x, grad_output)


@register("conv_weight_grad", "cuda", "tiled",
          note="numba.cuda implicit GEMM: the im2col algo's tiled GEMM gathering each column tile from the "
               "working input as it stages it (no column buffer), fixed pixel segments summed in order")
def conv_weight_grad_tiled(spec, x, grad_output):
    return weight_grad_gemm(spec, x, grad_output, implicit=True)


@register("conv_weight_grad", "cuda", "gemm", supports=_pointwise,
          note="numba.cuda 1x1 weight gradient: grad_output^T @ the channels-last input (strided: its "
               "pixels gathered), the im2col algo's GEMM")
def conv_weight_grad_gemm(spec, x, grad_output):
    return weight_grad_gemm(spec, x, grad_output)
