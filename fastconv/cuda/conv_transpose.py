"""Transposed convolution on the GPU, in gather form: no atomics, deterministic.

Each output pixel sums its own contributions: for tap k the input position is
``source_position(o, pad_begin, k, dilation, stride, size)`` -- the same helper the
CPU kernel uses (fastconv.cpu.conv.transpose.direct, an ``inline="always"`` Numba function
that compiles for both targets).

A block computes TP output pixels (flat over one output plane of image n, depth od)
for TK output channels of one group; each thread holds RP = 4 pixels (interleaved)
x RK = 4 channels in registers. The output depth is fixed per block, so depth taps
that receive nothing are skipped block-uniformly; row and column source positions
are computed per pixel. Per chunk of CC input channels the weights of every tap
(KD*KH*KW x CC x TK) are staged in shared memory; input samples are read from the
channels-last working copy through the L1 cache (not staged: the gather positions
depend on the stride phase of each pixel).
"""

from __future__ import annotations

from numba import cuda

from ..dispatch import register
from ..kernels.activation import ACTIVATION_CODES
from ..kernels.geometry import geometry3
from ..kernels.transpose_taps import source_position
from ._jit import (
    SUFFIX,
    WORK,
    WORK_NP,
    Kernel,
    Launch,
    array,
    ceil_div,
    dims,
    i64,
    layout_name,
    pow2_at_least,
    specialised,
)
from .epilogue import conv_output_store
from .limits import RK, RP, SHARED_BUDGET
from .pad import bias_or_dummy, lift_weight, needs_pad, output_array, pad_launch, user_shape, working_input


def transpose_tiling(spec) -> tuple:
    """(TP, TK, CC): output pixels (flat over one output plane), channels, input-channel chunk."""
    _, oh, ow = geometry3(spec).out_size
    plane = oh * ow
    tp = 128 if plane > 64 else 64 if plane > 32 else 32 if plane > 16 else 16
    tk = max(RK, pow2_at_least(spec.out_per_group, 32))
    taps = 1
    for k in spec.kernel:
        taps *= k
    item = WORK_NP[spec.dtype]().itemsize
    cc = pow2_at_least(spec.in_per_group, 16)
    while cc > 1 and taps * cc * tk * item > SHARED_BUDGET:
        cc //= 2
    while tk > RK and taps * cc * tk * item > SHARED_BUDGET:
        tk //= 2
    return tp, tk, cc


@specialised
def transpose_kernel(nd, kernel, tile, dtype, channels_last) -> Kernel:
    kd_n, kh_n, kw_n = kernel
    tp_n, tk, cc_n = tile
    work = WORK[dtype]
    n_pix = tp_n // RP
    n_kt = tk // RK
    threads = n_pix * n_kt
    taps = kd_n * kh_n * kw_n
    ws_size = taps * cc_n * tk
    cl = channels_last
    store = conv_output_store(work, channels_last)
    acc_n = RP * RK

    def kernel_fn(x, w, bias, has_bias, out, sd, sh, sw, dd, dh, dw, pd, ph, pw, groups, act):
        ws = cuda.shared.array(ws_size, work)
        acc = cuda.local.array(acc_n, work)
        wr = cuda.local.array(RK, work)
        oh_j = cuda.local.array(RP, i64)
        ow_j = cuda.local.array(RP, i64)
        src_h = cuda.local.array(RP, i64)
        src_w = cuda.local.array(RP, i64)
        if cl:
            n_img, od_n, oh_n, ow_n, k_n = out.shape
        else:
            n_img, k_n, od_n, oh_n, ow_n = out.shape
        d_n = x.shape[1]
        h_n = x.shape[2]
        w_n = x.shape[3]
        cg = w.shape[0] // groups
        kg = k_n // groups
        plane = oh_n * ow_n
        tiles_p = (plane + tp_n - 1) // tp_n
        k_tiles = (kg + tk - 1) // tk
        b = cuda.blockIdx.x
        kt = b % k_tiles
        b = b // k_tiles
        g = b % groups
        b = b // groups
        pt = b % tiles_p
        b = b // tiles_p
        od = b % od_n
        n = b // od_n
        if n >= n_img:
            return
        t = cuda.threadIdx.x
        if cl:
            tkk = t % n_kt
            tp = t // n_kt
        else:
            tp = t % n_pix
            tkk = t // n_pix
        for j in range(RP):
            p = pt * tp_n + tp + j * n_pix
            oh_j[j] = p // ow_n
            ow_j[j] = p % ow_n
        k0 = kt * tk
        cbase = g * cg
        kbase = g * kg
        for a in range(acc_n):
            acc[a] = 0
        for c0 in range(0, cg, cc_n):
            cuda.syncthreads()
            e = t
            while e < ws_size:
                tap = e % taps
                q = e // taps
                kk = q % tk
                cc = q // tk
                wv = work(0)
                if c0 + cc < cg and k0 + kk < kg:
                    wv = work(w[cbase + c0 + cc, k0 + kk, tap // (kh_n * kw_n), (tap // kw_n) % kh_n, tap % kw_n])
                ws[(tap * cc_n + cc) * tk + kk] = wv
                e += threads
            cuda.syncthreads()
            for kd in range(kd_n):
                i_d = source_position(od, pd, kd, dd, sd, d_n)
                if i_d < 0:
                    continue
                for kh in range(kh_n):
                    for j in range(RP):
                        src_h[j] = source_position(oh_j[j], ph, kh, dh, sh, h_n)
                    for kw in range(kw_n):
                        for j in range(RP):
                            i_w = source_position(ow_j[j], pw, kw, dw, sw, w_n)
                            src_w[j] = i_w if src_h[j] >= 0 else -1
                        tap = (kd * kh_n + kh) * kw_n + kw
                        for cc in range(cc_n):
                            if c0 + cc < cg:
                                for r in range(RK):
                                    wr[r] = ws[(tap * cc_n + cc) * tk + tkk + r * n_kt]
                                # only real input pixels meet the weight: a pixel without a source adds
                                # nothing (not 0 * w, which is NaN for an inf weight)
                                for j in range(RP):
                                    if src_w[j] >= 0:
                                        xv = x[n, i_d, src_h[j], src_w[j], cbase + c0 + cc]
                                        for r in range(RK):
                                            acc[j * RK + r] += xv * wr[r]
        for j in range(RP):
            oh = oh_j[j]
            ow = ow_j[j]
            if oh < oh_n:
                for r in range(RK):
                    k = k0 + tkk + r * n_kt
                    if k < kg:
                        store(out, n, kbase + k, od, oh, ow, acc[j * RK + r], bias, has_bias, act)

    name = (f"conv_transpose{nd}d_gather_{layout_name(nd, cl)}_k{dims(kernel[3 - nd:])}"
            f"_t{tp_n}x{tk}_c{cc_n}_{SUFFIX[dtype]}")
    argtypes = (array(work, 5), array(dtype, 5), array(dtype, 1), i64, array(dtype, 5)) + (i64,) * 11
    # No register cap: float64 takes ~148 registers (one block of 256 per SM) and spills
    # when held to 128 for two.
    return Kernel(name, kernel_fn, argtypes, threads, ws_size * WORK_NP[dtype]().itemsize)


def transpose_launch(spec) -> Launch:
    geom = geometry3(spec)
    tile = transpose_tiling(spec)
    kernel = transpose_kernel(spec.nd, geom.kernel, tile, spec.dtype, spec.channels_last)
    od, oh, ow = geom.out_size
    tp, tk, _ = tile
    blocks = spec.batch * od * ceil_div(oh * ow, tp) * spec.groups * ceil_div(spec.out_per_group, tk)
    return Launch(kernel, blocks, "conv_transpose")


def launches(spec) -> list:
    geom = geometry3(spec)
    zero = ((0, 0),) * 3
    pre = []
    if needs_pad(geom.in_size, zero, spec.dtype, spec.channels_last):
        pre.append(pad_launch(spec.batch, spec.in_channels, geom.in_size, zero, spec.dtype, spec.channels_last))
    return pre + [transpose_launch(spec)]


@register("conv_transpose", "cuda", "direct",
          note="numba.cuda gather-form transposed conv: deterministic, no atomics, weights in shared memory")
def conv_transpose_direct(spec, x, weight, bias):
    geom = geometry3(spec)
    xw = working_input(x, spec.nd, spec.batch, spec.in_channels, geom.in_size, ((0, 0),) * 3, "zeros", 0.0,
                       spec.dtype, spec.channels_last)
    w5 = lift_weight(weight, spec.nd)
    b, has_bias = bias_or_dummy(bias, spec.dtype)
    out = output_array(spec, (spec.batch, *geom.out_size, spec.out_channels))
    transpose_launch(spec)(xw, w5, b, has_bias, out, *geom.stride, *geom.dilation, *(p for p, _ in geom.pads),
                           spec.groups, ACTIVATION_CODES[spec.activation])
    return user_shape(out, spec)
