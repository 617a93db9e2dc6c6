"""Direct convolution on the GPU: shared-memory input tile with halo, register tile.

One block computes a TH x TW tile of output pixels (one image, one output depth) for
TK output channels of one group. Per (kd, chunk of CC input channels) it stages

- the input tile with its halo, CC x IH x IW with IH = (TH-1)*sh + (KH-1)*dh + 1
  (IW likewise), read coalesced from the padded channels-last input, and
- the weights CC x KH x KW x TK of those channels and this kd,

in shared memory, then each thread accumulates RP = 4 output pixels x RK = 4 output
channels (16 accumulators) in registers: per tap, 4 + 4 shared loads feed 16 FMAs.
A thread's pixels and channels are interleaved (pixel j at px + j*TW/RP, channel r
at tk + r*TK/RK), so the shared reads of a warp fall in distinct banks or broadcast.
The thread-to-work mapping follows the output layout: pixels vary fastest across a
warp for NC(D)HW output, channels for N(D)HWC, so the stores are coalesced.

Static (specialisation key): kernel size, stride and dilation of H and W (they size
the shared tile), the tile (TH, TW, TK, CC), dtype and layout. Depth stride and
dilation, groups, bias and activation are runtime arguments.
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
    f32,
    i64,
    layout_name,
    pow2_at_least,
    specialised,
)
from .epilogue import conv_output_store
from .limits import RK, RP, SHARED_BUDGET
from .pad import bias_or_dummy, conv_pad_launches, conv_working_input, lift_weight, output_array, user_shape


def direct_tiling(spec) -> tuple:
    """(TH, TW, TK, CC) for a spec: the tile follows the output's shape."""
    geom = geometry3(spec)
    _, oh, ow = geom.out_size
    _, kh, kw = geom.kernel
    _, sh, sw = geom.stride
    _, dh, dw = geom.dilation
    if oh == 1:
        th, tw = 1, max(16, pow2_at_least(ow, 128))
    else:
        th, tw = (8 if oh > 4 else 4), (16 if ow > 8 else 8)
    tk = max(RK, pow2_at_least(spec.out_per_group, 32))
    item = WORK_NP[spec.dtype]().itemsize
    while True:
        ih, iw = (th - 1) * sh + (kh - 1) * dh + 1, (tw - 1) * sw + (kw - 1) * dw + 1
        cc = pow2_at_least(spec.in_per_group, 16)
        while cc > 1 and cc * (ih * iw + kh * kw * tk) * item > SHARED_BUDGET:
            cc //= 2
        if cc * (ih * iw + kh * kw * tk) * item <= SHARED_BUDGET or (th == 1 and tw == RP and tk == RK):
            return th, tw, tk, cc
        if th > 1:
            th //= 2
        elif tw > RP:
            tw //= 2
        else:
            tk //= 2


@specialised
def direct_kernel(nd, kernel, stride_hw, dilation_hw, tile, dtype, channels_last) -> Kernel:
    kd_n, kh_n, kw_n = kernel
    sh, sw = stride_hw
    dh, dw = dilation_hw
    th, tw, tk, cc_n = tile
    work = WORK[dtype]
    ih = (th - 1) * sh + (kh_n - 1) * dh + 1
    iw = (tw - 1) * sw + (kw_n - 1) * dw + 1
    pxg = tw // RP  # pixel-threads along W
    n_pix = th * pxg  # pixel-threads
    n_kt = tk // RK  # channel-threads
    threads = n_pix * n_kt
    xs_size = cc_n * ih * iw
    ws_size = cc_n * kh_n * kw_n * tk
    cl = channels_last
    store = conv_output_store(work, channels_last)
    acc_n = RP * RK

    def kernel_fn(xp, w, bias, has_bias, out, sd, dd, groups, act):
        xs = cuda.shared.array(xs_size, work)
        ws = cuda.shared.array(ws_size, work)
        acc = cuda.local.array(acc_n, work)
        xr = cuda.local.array(RP, work)
        wr = cuda.local.array(RK, work)
        if cl:
            n_img, od_n, oh_n, ow_n, k_n = out.shape
        else:
            n_img, k_n, od_n, oh_n, ow_n = out.shape
        hp = xp.shape[2]
        wp = xp.shape[3]
        cg = w.shape[1]
        kg = k_n // groups
        tiles_w = (ow_n + tw - 1) // tw
        tiles_h = (oh_n + th - 1) // th
        k_tiles = (kg + tk - 1) // tk
        b = cuda.blockIdx.x
        kt = b % k_tiles
        b = b // k_tiles
        g = b % groups
        b = b // groups
        tile_w = b % tiles_w
        b = b // tiles_w
        tile_h = b % tiles_h
        b = b // tiles_h
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
        py = tp // pxg
        px = tp % pxg
        oy0 = tile_h * th
        ox0 = tile_w * tw
        k0 = kt * tk
        iy0 = oy0 * sh
        ix0 = ox0 * sw
        cbase = g * cg
        kbase = g * kg
        for a in range(RP * RK):
            acc[a] = 0
        for kd in range(kd_n):
            z = od * sd + kd * dd
            for c0 in range(0, cg, cc_n):
                cuda.syncthreads()
                e = t
                while e < xs_size:
                    cc = e % cc_n
                    q = e // cc_n
                    xx = q % iw
                    yy = q // iw
                    gy = iy0 + yy
                    gx = ix0 + xx
                    xv = work(0)
                    if c0 + cc < cg and gy < hp and gx < wp:
                        xv = xp[n, z, gy, gx, cbase + c0 + cc]
                    xs[(cc * ih + yy) * iw + xx] = xv
                    e += threads
                e = t
                while e < ws_size:
                    kw = e % kw_n
                    q = e // kw_n
                    kh = q % kh_n
                    q = q // kh_n
                    cc = q % cc_n
                    kk = q // cc_n
                    wv = work(0)
                    if c0 + cc < cg and k0 + kk < kg:
                        wv = work(w[kbase + k0 + kk, c0 + cc, kd, kh, kw])
                    ws[((cc * kh_n + kh) * kw_n + kw) * tk + kk] = wv
                    e += threads
                cuda.syncthreads()
                for cc in range(cc_n):
                    for kh in range(kh_n):
                        for kw in range(kw_n):
                            wb = ((cc * kh_n + kh) * kw_n + kw) * tk + tkk
                            for r in range(RK):
                                wr[r] = ws[wb + r * n_kt]
                            xb = (cc * ih + py * sh + kh * dh) * iw + px * sw + kw * dw
                            for j in range(RP):
                                xr[j] = xs[xb + j * pxg * sw]
                            for j in range(RP):
                                for r in range(RK):
                                    acc[j * RK + r] += xr[j] * wr[r]
        oy = oy0 + py
        if oy < oh_n:
            for j in range(RP):
                ox = ox0 + px + j * pxg
                if ox < ow_n:
                    for r in range(RK):
                        k = k0 + tkk + r * n_kt
                        if k < kg:
                            store(out, n, kbase + k, od, oy, ox, acc[j * RK + r], bias, has_bias, act)

    spatial = (kernel, (1, *stride_hw), (1, *dilation_hw))
    names = [dims(v[3 - nd:]) for v in spatial]
    name = (f"conv{nd}d_direct_{layout_name(nd, cl)}_k{names[0]}_s{names[1]}_d{names[2]}"
            f"_t{th}x{tw}x{tk}_c{cc_n}_{SUFFIX[dtype]}")
    argtypes = (array(work, 5), array(dtype, 5), array(dtype, 1), i64, array(dtype, 5), i64, i64, i64, i64)
    shared = (xs_size + ws_size) * WORK_NP[dtype]().itemsize
    # Left alone, ptxas spends ~124 registers (2 blocks of 256 per SM); capped for 3
    # resident blocks it fits 16 float32 accumulators in 80 without spilling
    # (tools/gpu_static.py checks). float64 needs twice the registers, and the fully
    # unrolled tap loop of a long 1-D kernel (80 taps) spills under the cap: no cap.
    min_blocks = 3 if work == f32 and threads == 256 and kh_n * kw_n <= 49 else 1
    return Kernel(name, kernel_fn, argtypes, threads, shared, min_blocks)


def direct_launch(spec) -> Launch:
    geom = geometry3(spec)
    tile = direct_tiling(spec)
    kernel = direct_kernel(spec.nd, geom.kernel, geom.stride[1:], geom.dilation[1:], tile,
                           spec.dtype, spec.channels_last)
    od, oh, ow = geom.out_size
    th, tw, tk, _ = tile
    blocks = (spec.batch * od * ceil_div(oh, th) * ceil_div(ow, tw) * spec.groups
              * ceil_div(spec.out_per_group, tk))
    return Launch(kernel, blocks, "conv")


def launches(spec) -> list:
    return conv_pad_launches(spec, geometry3(spec)) + [direct_launch(spec)]


@register("conv", "cuda", "direct",
          note="numba.cuda direct conv: shared input tile with halo + staged weights, 4x4 register tile")
def conv_direct(spec, x, weight, bias):
    geom = geometry3(spec)
    xp = conv_working_input(spec, x, geom)
    w5 = lift_weight(weight, spec.nd)
    b, has_bias = bias_or_dummy(bias, spec.dtype)
    out = output_array(spec, (spec.batch, *geom.out_size, spec.out_channels))
    direct_launch(spec)(xp, w5, b, has_bias, out, geom.stride[0], geom.dilation[0], spec.groups,
                        ACTIVATION_CODES[spec.activation])
    return user_shape(out, spec)
