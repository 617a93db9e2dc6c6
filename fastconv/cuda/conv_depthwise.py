"""Depthwise convolution on the GPU (groups == input channels, channel multiplier M).

A block covers CT output channels (threadIdx fastest: one output channel per thread
column, so global and shared accesses are consecutive words) and a TH x TW tile of
output pixels of one image and output depth; each thread computes RP consecutive
output pixels of one row in registers. Per kernel depth tap the input tile with its
halo (IH x IW x CT_in, channels innermost) is staged in shared memory; per kernel row
a thread loads the (RP-1)*sw + (KW-1)*dw + 1 input samples its RP outputs need into
registers once and reuses them for every kernel column (a sliding window in
registers). The KH*KW weights of its output channel live in registers.

With a multiplier M, output channel k reads input channel k // M: the threads of one
input channel read the same shared word (a broadcast), and the staged tile holds only
the input channels the block's output channels need.
"""

from __future__ import annotations

from numba import cuda

from ..dispatch import register
from ..kernels.activation import ACTIVATION_CODES
from ..kernels.geometry import geometry3
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
from .limits import SHARED_BUDGET
from .pad import bias_or_dummy, conv_pad_launches, conv_working_input, lift_weight, output_array, user_shape


def depthwise_tiling(spec) -> tuple:
    """(TH, TW, RP, CT)."""
    geom = geometry3(spec)
    _, oh, ow = geom.out_size
    _, kh, kw = geom.kernel
    _, sh, sw = geom.stride
    _, dh, dw = geom.dilation
    if oh == 1:
        th, tw, rp = 1, max(8, pow2_at_least(ow, 64)), 8
    else:
        th, tw = (8 if oh > 4 else 4), (8 if ow > 4 else 4)
        rp = tw
    ct = max(4, pow2_at_least(spec.out_channels, 32))
    item = WORK_NP[spec.dtype]().itemsize
    while True:
        ih, iw = (th - 1) * sh + (kh - 1) * dh + 1, (tw - 1) * sw + (kw - 1) * dw + 1
        if ih * iw * ct * item <= SHARED_BUDGET or (th == 1 and tw == 1 and ct == 1):
            return th, tw, min(rp, tw), ct
        if th > 1:
            th //= 2
        elif tw > 1:
            tw //= 2
        else:
            ct //= 2


@specialised
def depthwise_kernel(nd, kernel, stride_hw, dilation_hw, tile, dtype, channels_last) -> Kernel:
    kd_n, kh_n, kw_n = kernel
    sh, sw = stride_hw
    dh, dw = dilation_hw
    th, tw, rp, ct = tile
    work = WORK[dtype]
    ih = (th - 1) * sh + (kh_n - 1) * dh + 1
    iw = (tw - 1) * sw + (kw_n - 1) * dw + 1
    nx = (rp - 1) * sw + (kw_n - 1) * dw + 1  # input samples per kernel row per thread
    groups_w = tw // rp
    ty_n = th * groups_w
    threads = ct * ty_n
    xs_size = ih * iw * ct
    taps = kh_n * kw_n
    cl = channels_last
    store = conv_output_store(work, channels_last)

    def kernel_fn(xp, w, bias, has_bias, out, mult, sd, dd, act):
        xs = cuda.shared.array(xs_size, work)
        acc = cuda.local.array(rp, work)
        xr = cuda.local.array(nx, work)
        wr = cuda.local.array(taps, work)
        if cl:
            n_img, od_n, oh_n, ow_n, k_n = out.shape
        else:
            n_img, k_n, od_n, oh_n, ow_n = out.shape
        hp = xp.shape[2]
        wp = xp.shape[3]
        c_n = xp.shape[4]
        tiles_w = (ow_n + tw - 1) // tw
        tiles_h = (oh_n + th - 1) // th
        k_tiles = (k_n + ct - 1) // ct
        b = cuda.blockIdx.x
        kt = b % k_tiles
        b = b // k_tiles
        tile_w = b % tiles_w
        b = b // tiles_w
        tile_h = b % tiles_h
        b = b // tiles_h
        od = b % od_n
        n = b // od_n
        if n >= n_img:
            return
        tx = cuda.threadIdx.x % ct
        ty = cuda.threadIdx.x // ct
        py = ty // groups_w
        px = ty % groups_w
        k0 = kt * ct
        k = k0 + tx
        cbase = k0 // mult
        ci = min(k, k_n - 1) // mult - cbase
        oy0 = tile_h * th
        ox0 = tile_w * tw
        iy0 = oy0 * sh
        ix0 = ox0 * sw
        for j in range(rp):
            acc[j] = 0
        for kd in range(kd_n):
            z = od * sd + kd * dd
            cuda.syncthreads()
            e = cuda.threadIdx.x
            while e < xs_size:
                c = e % ct
                q = e // ct
                xx = q % iw
                yy = q // iw
                gy = iy0 + yy
                gx = ix0 + xx
                xv = work(0)
                if cbase + c < c_n and gy < hp and gx < wp:
                    xv = xp[n, z, gy, gx, cbase + c]
                xs[e] = xv
                e += threads
            for tap in range(taps):
                wv = work(0)
                if k < k_n:
                    wv = work(w[k, 0, kd, tap // kw_n, tap % kw_n])
                wr[tap] = wv
            cuda.syncthreads()
            for kh in range(kh_n):
                base = ((py * sh + kh * dh) * iw + px * rp * sw) * ct + ci
                for q in range(nx):
                    xr[q] = xs[base + q * ct]
                for kw in range(kw_n):
                    wv = wr[kh * kw_n + kw]
                    for j in range(rp):
                        acc[j] += xr[j * sw + kw * dw] * wv
        oy = oy0 + py
        if k < k_n and oy < oh_n:
            for j in range(rp):
                ox = ox0 + px * rp + j
                if ox < ow_n:
                    store(out, n, k, od, oy, ox, acc[j], bias, has_bias, act)

    spatial = (kernel, (1, *stride_hw), (1, *dilation_hw))
    names = [dims(v[3 - nd:]) for v in spatial]
    name = (f"conv{nd}d_depthwise_{layout_name(nd, cl)}_k{names[0]}_s{names[1]}_d{names[2]}"
            f"_t{th}x{tw}x{ct}_r{rp}_{SUFFIX[dtype]}")
    argtypes = (array(work, 5), array(dtype, 5), array(dtype, 1), i64, array(dtype, 5), i64, i64, i64, i64)
    return Kernel(name, kernel_fn, argtypes, threads, xs_size * WORK_NP[dtype]().itemsize)


def depthwise_launch(spec) -> Launch:
    geom = geometry3(spec)
    tile = depthwise_tiling(spec)
    kernel = depthwise_kernel(spec.nd, geom.kernel, geom.stride[1:], geom.dilation[1:], tile,
                              spec.dtype, spec.channels_last)
    od, oh, ow = geom.out_size
    th, tw, _, ct = tile
    blocks = spec.batch * od * ceil_div(oh, th) * ceil_div(ow, tw) * ceil_div(spec.out_channels, ct)
    return Launch(kernel, blocks, "depthwise")


def launches(spec) -> list:
    return conv_pad_launches(spec, geometry3(spec)) + [depthwise_launch(spec)]


def _depthwise_only(spec):
    return None if spec.is_depthwise else "groups must equal input channels (depthwise)"


@register("conv", "cuda", "depthwise", supports=_depthwise_only,
          note="numba.cuda depthwise: shared input tile per channel block, register sliding window")
def conv_depthwise(spec, x, weight, bias):
    geom = geometry3(spec)
    xp = conv_working_input(spec, x, geom)
    w5 = lift_weight(weight, spec.nd)
    b, has_bias = bias_or_dummy(bias, spec.dtype)
    out = output_array(spec, (spec.batch, *geom.out_size, spec.out_channels))
    depthwise_launch(spec)(xp, w5, b, has_bias, out, spec.out_per_group, geom.stride[0], geom.dilation[0],
                           ACTIVATION_CODES[spec.activation])
    return user_shape(out, spec)
