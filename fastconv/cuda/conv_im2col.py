"""im2col + GEMM convolution on the GPU (Numba kernels throughout; no cuBLAS).

1. ``im2col``: the receptive fields of a chunk of output pixels are copied from the
   padded channels-last input into columns (rows, G * KD*KH*KW*Cg), channel fastest;
   one block covers 8 rows x blockDim columns and decodes each column's (group, tap,
   channel) once. A 1x1, stride-1, unpadded conv skips it: the channels-last input
   already is the column matrix.
2. ``pack``: the weight becomes (G, KD*KH*KW*Cg, Kg) in the working dtype.
3. ``gemm``: a tiled shared-memory GEMM per group, C = A_g B_g. A block of
   TR x TC threads computes a BM x BN = (TR*TM) x (TC*TN) tile; per BK = 16 step the
   A tile (stored k-major with a BM+1 pitch, so neither the transposing store nor the
   reads conflict) and the B tile are staged in shared memory and each thread updates
   TM x TN accumulators in registers from TM + TN shared loads. The epilogue adds the
   bias, applies the activation and stores straight into the user's layout and dtype
   (rows vary fastest across a warp for NC(D)HW output, columns for N(D)HWC).
   Small problems take smaller row tiles so that the grid fills the GPU; if even the
   smallest tile leaves it under-filled, the reduction is split (split-K): each split
   writes its partial sums to a workspace and a second kernel adds them in split
   order, then the bias and activation (deterministic: no atomics).

Columns are built in chunks of output rows that fit in half the workspace cap
(fastconv.set_workspace_limit), as on the CPU. cuBLAS through CuPy would be an
alternative GEMM when CuPy is present; it is not used here.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from .._workspace import workspace_limit
from ..dispatch import register
from ..kernels.activation import ACTIVATION_CODES
from ..kernels.geometry import geometry3
from . import streams
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
    specialised,
)
from .epilogue import conv_output_store
from .limits import sm_count
from .pad import bias_or_dummy, conv_pad_launches, conv_working_input, lift_weight, output_array, user_shape

BK = 16  # reduction step staged per iteration
IM2COL_ROWS = 8  # output rows per im2col block


@specialised
def im2col_kernel(dtype: str) -> Kernel:
    work = WORK[dtype]
    threads = 256

    def kernel(xp, row0, od_n, oh_n, ow_n, kd_n, kh_n, kw_n, sd, sh, sw, dd, dh, dw, groups, cols):
        n_rows = cols.shape[0]
        n_cols = cols.shape[1]
        c_n = xp.shape[4]
        cg = c_n // groups
        col_tiles = (n_cols + cuda.blockDim.x - 1) // cuda.blockDim.x
        b = cuda.blockIdx.x
        ct = b % col_tiles
        rt = b // col_tiles
        col = ct * cuda.blockDim.x + cuda.threadIdx.x
        if col >= n_cols:
            return
        c = col % cg
        q = col // cg
        kw = q % kw_n
        q = q // kw_n
        kh = q % kh_n
        q = q // kh_n
        kd = q % kd_n
        g = q // kd_n
        ch = g * cg + c
        zd = kd * dd
        zh = kh * dh
        zw = kw * dw
        for rr in range(IM2COL_ROWS):
            r = rt * IM2COL_ROWS + rr
            if r < n_rows:
                p = row0 + r
                ow = p % ow_n
                p = p // ow_n
                oh = p % oh_n
                p = p // oh_n
                od = p % od_n
                n = p // od_n
                cols[r, col] = xp[n, od * sd + zd, oh * sh + zh, ow * sw + zw, ch]

    argtypes = (array(work, 5),) + (i64,) * 14 + (array(work, 2),)
    return Kernel(f"im2col_ndhwc_r{IM2COL_ROWS}_{SUFFIX[dtype]}", kernel, argtypes, threads, 0)


@specialised
def pack_kernel(dtype: str) -> Kernel:
    """wmat[g, ((kd*KH + kh)*KW + kw)*Cg + c, ko] = w[g*Kg + ko, c, kd, kh, kw]."""
    work = WORK[dtype]

    def kernel(w, wmat):
        groups, taps_c, kg = wmat.shape
        k_n, cg, kd_n, kh_n, kw_n = w.shape
        total = groups * taps_c * kg
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        while i < total:
            ko = i % kg
            q = i // kg
            tap = q % taps_c
            g = q // taps_c
            c = tap % cg
            t = tap // cg
            kw = t % kw_n
            t = t // kw_n
            kh = t % kh_n
            kd = t // kh_n
            wmat[g, tap, ko] = work(w[g * kg + ko, c, kd, kh, kw])
            i += step

    argtypes = (array(dtype, 5), array(work, 3))
    return Kernel(f"pack_gemm_weight_{SUFFIX[dtype]}", kernel, argtypes, 256, 0)


BLOCKS_PER_SM = 2  # a GEMM grid fills the device when it has this many blocks per multiprocessor
MAX_SPLITS = 16


def grid_target() -> int:
    """The GEMM blocks that fill the current device (limits.sm_count: 132 without one)."""
    return BLOCKS_PER_SM * sm_count()


def gemm_tiling(rows: int, kg: int, groups: int, dtype: str, target: int) -> tuple:
    """(TR, TC, TM, TN): thread grid and per-thread register tile.

    Columns follow Kg; rows take the largest tile that still gives ``target`` blocks
    (:func:`grid_target`; small problems get smaller tiles before they get split-K)."""
    wide = 4 if dtype == "float64" else 8
    if kg > 64:
        tc, tn = 16, wide
    elif kg > 32:
        tc, tn = 16, 4
    elif kg > 16:
        tc, tn = 16, 2
    elif kg > 8:
        tc, tn = 16, 1
    else:
        tc, tn = 8, 1
    n_tiles = ceil_div(kg, tc * tn) * groups
    for tr, tm in ((16, wide), (16, 4), (8, 4)):
        if ceil_div(rows, tr * tm) * n_tiles >= target:
            return tr, tc, tm, tn
    return tr, tc, tm, tn


def gemm_splits(rows: int, kg: int, groups: int, taps_c: int, tiling, target: int,
                max_splits: int = MAX_SPLITS) -> tuple:
    """(splits, k_chunk): split the reduction when the grid alone cannot reach ``target`` blocks.

    Each split's partial sums go to a workspace that a second kernel adds up in a fixed
    order (deterministic, no atomics); a split keeps at least 4 BK steps."""
    tr, tc, tm, tn = tiling
    blocks = ceil_div(rows, tr * tm) * ceil_div(kg, tc * tn) * groups
    splits = min(ceil_div(target, blocks), max(1, taps_c // (4 * BK)), max_splits)
    if splits <= 1:
        return 1, ceil_div(taps_c, BK) * BK
    k_chunk = ceil_div(ceil_div(taps_c, splits), BK) * BK
    return ceil_div(taps_c, k_chunk), k_chunk


@specialised
def gemm_kernel(tiling, dtype: str, channels_last: bool, split: bool) -> Kernel:
    tr_n, tc_n, tm, tn = tiling
    work = WORK[dtype]
    bm = tr_n * tm
    bn = tc_n * tn
    threads = tr_n * tc_n
    pitch = bm + 1
    as_size = BK * pitch
    bs_size = BK * bn
    cl = channels_last
    store = conv_output_store(work, channels_last)
    acc_n = tm * tn

    def kernel(a, a_group_stride, bmat, bias, has_bias, out, row0, act, k_chunk, part):
        a_s = cuda.shared.array(as_size, work)
        b_s = cuda.shared.array(bs_size, work)
        acc = cuda.local.array(acc_n, work)
        ar = cuda.local.array(tm, work)
        br = cuda.local.array(tn, work)
        n_rows = a.shape[0]
        groups, taps_c, kg = bmat.shape
        if cl:
            n_img, od_n, oh_n, ow_n, k_n = out.shape
        else:
            n_img, k_n, od_n, oh_n, ow_n = out.shape
        n_tiles = (kg + bn - 1) // bn
        m_tiles = (n_rows + bm - 1) // bm
        b = cuda.blockIdx.x
        nt = b % n_tiles
        b = b // n_tiles
        mt = b % m_tiles
        b = b // m_tiles
        g = b % groups
        sk = b // groups  # reduction split
        t_begin = sk * k_chunk
        t_end = min(t_begin + k_chunk, taps_c)
        if t_begin >= taps_c:
            return
        t = cuda.threadIdx.x
        if cl:
            tc = t % tc_n
            tr = t // tc_n
        else:
            tr = t % tr_n
            tc = t // tr_n
        r0 = mt * bm
        k0 = nt * bn
        a0 = g * a_group_stride
        for i in range(tm * tn):
            acc[i] = 0
        for t0 in range(t_begin, t_end, BK):
            cuda.syncthreads()
            e = t
            while e < bm * BK:
                kk = e % BK
                i = e // BK
                av = work(0)
                if r0 + i < n_rows and t0 + kk < t_end:
                    av = a[r0 + i, a0 + t0 + kk]
                a_s[kk * pitch + i] = av
                e += threads
            e = t
            while e < bn * BK:
                j = e % bn
                kk = e // bn
                bv = work(0)
                if k0 + j < kg and t0 + kk < t_end:
                    bv = bmat[g, t0 + kk, k0 + j]
                b_s[kk * bn + j] = bv
                e += threads
            cuda.syncthreads()
            for kk in range(BK):
                for i in range(tm):
                    ar[i] = a_s[kk * pitch + tr + i * tr_n]
                for j in range(tn):
                    br[j] = b_s[kk * bn + tc + j * tc_n]
                for i in range(tm):
                    for j in range(tn):
                        acc[i * tn + j] += ar[i] * br[j]
        # The epilogue loop is too long for NVVM to unroll fully; reading the
        # accumulators through a copy keeps ``acc`` itself constant-indexed, so it
        # stays in registers (only the copy lives in local memory).
        res = cuda.local.array(acc_n, work)
        for a in range(acc_n):
            res[a] = acc[a]
        kbase = g * kg
        if split:
            for i in range(tm):
                r = r0 + tr + i * tr_n
                if r < n_rows:
                    for j in range(tn):
                        k = k0 + tc + j * tc_n
                        if k < kg:
                            part[sk, r, kbase + k] = res[i * tn + j]
            return
        for i in range(tm):
            r = r0 + tr + i * tr_n
            if r < n_rows:
                p = row0 + r
                ow = p % ow_n
                p = p // ow_n
                oh = p % oh_n
                p = p // oh_n
                od = p % od_n
                n = p // od_n
                for j in range(tn):
                    k = k0 + tc + j * tc_n
                    if k < kg:
                        store(out, n, kbase + k, od, oh, ow, res[i * tn + j], bias, has_bias, act)

    layout = "nhwc" if cl else "nchw"
    what = "gemm_splitk_partial" if split else f"gemm_bias_act_{layout}"
    name = f"{what}_b{bm}x{bn}x{BK}_r{tm}x{tn}_{SUFFIX[dtype]}"
    argtypes = (array(work, 2), i64, array(work, 3), array(dtype, 1), i64, array(dtype, 5), i64, i64, i64,
                array(work, 3))
    shared = (as_size + bs_size) * WORK_NP[dtype]().itemsize
    # The 8x8 register tile otherwise takes 144 registers: one block of 256 per SM.
    # Held to 128 for two resident blocks it does not spill (tools/gpu_static.py checks).
    min_blocks = 2 if threads == 256 else 1
    return Kernel(name, kernel, argtypes, threads, shared, min_blocks)


@specialised
def splitk_reduce_kernel(dtype: str, channels_last: bool) -> Kernel:
    """out = act(sum over splits, in split order, of part[s, r, k] + bias): deterministic."""
    work = WORK[dtype]
    cl = channels_last
    store = conv_output_store(work, channels_last)

    def kernel(part, bias, has_bias, out, row0, act):
        n_splits, n_rows, k_n = part.shape
        if cl:
            n_img, od_n, oh_n, ow_n, _ = out.shape
        else:
            n_img, _, od_n, oh_n, ow_n = out.shape
        total = n_rows * k_n
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        while i < total:
            if cl:
                k = i % k_n
                r = i // k_n
            else:
                r = i % n_rows
                k = i // n_rows
            ov = part[0, r, k]
            for s in range(1, n_splits):
                ov += part[s, r, k]
            p = row0 + r
            ow = p % ow_n
            p = p // ow_n
            oh = p % oh_n
            p = p // oh_n
            od = p % od_n
            n = p // od_n
            store(out, n, k, od, oh, ow, ov, bias, has_bias, act)
            i += step

    layout = "nhwc" if cl else "nchw"
    argtypes = (array(work, 3), array(dtype, 1), i64, array(dtype, 5), i64, i64)
    return Kernel(f"splitk_reduce_bias_act_{layout}_{SUFFIX[dtype]}", kernel, argtypes, 256, 0)


def _direct_columns(spec) -> bool:
    return spec.is_pointwise and all(s == 1 for s in spec.stride)


def _row_chunks(spec):
    """(start, stop) ranges of output pixels whose columns fit in half the workspace cap."""
    rows = spec.batch * int(np.prod(spec.out_size))
    if _direct_columns(spec):
        return [(0, rows)]
    row_bytes = spec.in_channels * int(np.prod(spec.kernel)) * WORK_NP[spec.dtype]().itemsize
    step = max(1, (workspace_limit() // 2) // row_bytes)
    return [(r, min(r + step, rows)) for r in range(0, rows, step)]


class GemmPlan:
    """Tiling, reduction splits and launches of the GEMM for chunks of ``chunk_rows`` rows.

    ``spec`` needs only kernel, in/out_per_group, groups, out_channels, dtype and channels_last
    (cuda/conv_input_grad_gemm.py passes the 1x1 adjoint's); ``max_splits=1`` never splits the
    reduction, so the sum order does not depend on the device's multiprocessor count."""

    def __init__(self, spec, chunk_rows: int, max_splits: int = MAX_SPLITS):
        self.spec = spec
        self.taps_c = int(np.prod(spec.kernel)) * spec.in_per_group
        kg, groups = spec.out_per_group, spec.groups
        target = grid_target()
        self.tiling = gemm_tiling(chunk_rows, kg, groups, spec.dtype, target)
        self.splits, self.k_chunk = gemm_splits(chunk_rows, kg, groups, self.taps_c, self.tiling, target, max_splits)
        partial_bytes = chunk_rows * spec.out_channels * WORK_NP[spec.dtype]().itemsize
        if self.splits > 1 and self.splits * partial_bytes > workspace_limit() // 2:
            cap = max(1, (workspace_limit() // 2) // partial_bytes)  # the partial sums stay in the cap
            self.splits, self.k_chunk = gemm_splits(chunk_rows, kg, groups, self.taps_c, self.tiling, target,
                                                    min(cap, max_splits))
        self.kernel = gemm_kernel(self.tiling, spec.dtype, spec.channels_last, self.splits > 1)

    def gemm(self, rows: int) -> Launch:
        tr, tc, tm, tn = self.tiling
        blocks = (ceil_div(rows, tr * tm) * ceil_div(self.spec.out_per_group, tc * tn) * self.spec.groups
                  * self.splits)
        return Launch(self.kernel, blocks, "gemm" if self.splits == 1 else f"gemm, split-K x{self.splits}")

    def reduce(self, rows: int) -> Launch | None:
        if self.splits == 1:
            return None
        kernel = splitk_reduce_kernel(self.spec.dtype, self.spec.channels_last)
        return elementwise(kernel, rows * self.spec.out_channels, "split-K reduce + bias + activation")

    def launches(self, rows: int) -> list:
        return [x for x in (self.gemm(rows), self.reduce(rows)) if x is not None]

    def run(self, a, a_group_stride, wmat, bias, has_bias, out, row0, act, rows, work_np):
        if self.splits == 1:
            dummy = streams.device_array((1, 1, 1), work_np)
            self.gemm(rows)(a, a_group_stride, wmat, bias, has_bias, out, row0, act, self.k_chunk, dummy)
            return
        part = streams.device_array((self.splits, rows, self.spec.out_channels), work_np)
        self.gemm(rows)(a, a_group_stride, wmat, bias, has_bias, out, row0, act, self.k_chunk, part)
        self.reduce(rows)(part, bias, has_bias, out, row0, act)


def _im2col_launch(spec, rows: int) -> Launch:
    kernel = im2col_kernel(spec.dtype)
    n_cols = spec.in_channels * int(np.prod(spec.kernel))
    threads = min(kernel.threads, max(32, ceil_div(n_cols, 32) * 32))
    return Launch(kernel, ceil_div(n_cols, threads) * ceil_div(rows, IM2COL_ROWS), "im2col", threads)


def _pack_launch(spec) -> Launch:
    return elementwise(pack_kernel(spec.dtype), int(np.prod(spec.weight_shape)), "pack weight")


def launches(spec) -> list:
    out = conv_pad_launches(spec, geometry3(spec)) + [_pack_launch(spec)]
    chunks = _row_chunks(spec)
    r0, r1 = chunks[0]
    if not _direct_columns(spec):
        out.append(_im2col_launch(spec, r1 - r0))
    gemm = GemmPlan(spec, r1 - r0).launches(r1 - r0)
    if len(chunks) > 1:
        for launch in gemm:
            launch.what += f" (x{len(chunks)} row chunks)"
    return out + gemm


@register("conv", "cuda", "im2col",
          note="numba.cuda im2col + tiled shared-memory GEMM with deterministic split-K: the Numba GEMM "
               "(cuBLAS through CuPy, an option when CuPy is present, is not used)")
def conv_im2col(spec, x, weight, bias):
    geom = geometry3(spec)
    work_np = WORK_NP[spec.dtype]
    xp = conv_working_input(spec, x, geom)
    groups, cg, kg = spec.groups, spec.in_per_group, spec.out_per_group
    taps_c = int(np.prod(spec.kernel)) * cg
    w5 = lift_weight(weight, spec.nd)
    wmat = streams.device_array((groups, taps_c, kg), work_np)
    _pack_launch(spec)(w5, wmat)
    b, has_bias = bias_or_dummy(bias, spec.dtype)
    out = output_array(spec, (spec.batch, *geom.out_size, spec.out_channels))
    act = ACTIVATION_CODES[spec.activation]
    if _direct_columns(spec):
        rows = spec.batch * int(np.prod(spec.out_size))
        a = xp.reshape(rows, spec.in_channels)
        GemmPlan(spec, rows).run(a, cg, wmat, b, has_bias, out, 0, act, rows, work_np)
        return user_shape(out, spec)
    geo = (*geom.out_size, *geom.kernel, *geom.stride, *geom.dilation)
    chunks = _row_chunks(spec)
    cols = streams.device_array((chunks[0][1] - chunks[0][0], groups * taps_c), work_np)
    plan = GemmPlan(spec, cols.shape[0])
    for r0, r1 in chunks:
        part = cols[: r1 - r0]
        _im2col_launch(spec, r1 - r0)(xp, r0, *geo, groups, part)
        plan.run(part, taps_c, wmat, b, has_bias, out, r0, act, r1 - r0, work_np)
    return user_shape(out, spec)


def _pointwise_only(spec):
    return None if spec.is_pointwise else "kernel must be 1x1 with no padding (pointwise)"


@register("conv", "cuda", "gemm", supports=_pointwise_only,
          note="1x1 conv as one Numba GEMM over the channels-last working copy (channels-first input is "
               "transposed first, a strided 1x1 gathers its pixels first)")
def conv_gemm(spec, x, weight, bias):
    return conv_im2col(spec, x, weight, bias)
