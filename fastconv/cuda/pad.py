"""Device padding and layout: the GPU kernels' working copy of the input.

Conv kernels read a padded, channels-last, 3-D-lifted input ``xp`` of shape
(N, Dp, Hp, Wp, C) in the working dtype (float32 for float16/float32, float64 for
float64). This module builds it in one pass on the device: each padded position reads
the input through the per-axis source maps of :mod:`fastconv.kernels.padding_index` (the
padding logic of every mode lives there, once; -1 means the constant fill), and the
dtype conversion and the NC(D)HW -> N(D)HWC transpose happen on the way.

- channels-last input, or fewer than 32 channels: one thread per output element,
  channel fastest (writes coalesce; channels-first reads form C runs along W);
- channels-first input with 32 channels or more: a 32 x 32 (channels x width) tile
  staged in shared memory (a 33-word row pitch, so no bank conflicts), read coalesced
  along W and written coalesced along C.

When there is nothing to do (no padding, channels-last, working dtype, contiguous)
the input itself is returned as a 5-D view.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from ..kernels.element_index import element_position
from ..kernels.padding_index import source_index
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

TILE = 32  # channels x width tile of the transposing kernel
ROWS = 8  # thread rows of the transposing kernel: 32 x 8 threads, 4 elements each
PITCH = TILE + 1  # shared row pitch: a column read touches 32 distinct banks
PER_THREAD = TILE // ROWS


def contiguous(arr):
    """A C-contiguous device array with the same contents (the array itself if it is one)."""
    if arr.is_c_contiguous():
        return arr
    return streams.copy(arr)


def lift5(arr, nd: int, channels_last: bool):
    """(N, C, *spatial) or (N, *spatial, C) device array as a 5-D contiguous view,
    with unit D (and H) axes inserted for 1-D and 2-D."""
    arr = contiguous(arr)
    shape = tuple(arr.shape)
    ones = (1,) * (3 - nd)
    if channels_last:
        return arr.reshape(shape[0], *ones, *shape[1:])
    return arr.reshape(shape[0], shape[1], *ones, *shape[2:])


def lift_weight(weight, nd: int):
    """Weight (A, B, *kernel) as a contiguous (A, B, KD, KH, KW) device array."""
    weight = contiguous(weight)
    shape = tuple(weight.shape)
    return weight.reshape(shape[0], shape[1], *((1,) * (3 - nd)), *shape[2:])


def bias_or_dummy(bias, dtype: str):
    """(bias array, has_bias): kernels take a bias array always; a 1-element one when absent."""
    if bias is None:
        return streams.device_array(1, np.dtype(dtype)), 0
    return contiguous(bias), 1


@specialised
def pad_elementwise_kernel(dtype: str, channels_last: bool) -> Kernel:
    """xp[n, d, h, w, c] = x[n, (c,) map_d[d], map_h[h], map_w[w] (, c)] (or fill): one
    thread per element, channel fastest, so writes coalesce; reads coalesce for
    channels-last input and form C short runs along W for channels-first input."""
    work = WORK[dtype]
    threads = 256
    cl = channels_last

    def kernel(x, map_d, map_h, map_w, fill, xp):
        n_img, dp, hp, wp, c_n = xp.shape
        total = n_img * dp * hp * wp * c_n
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        while i < total:
            n, c, d, h, w = element_position(i, True, c_n, dp, hp, wp)
            sd = map_d[d]
            sh = map_h[h]
            sw = map_w[w]
            if sd < 0 or sh < 0 or sw < 0:
                xp[n, d, h, w, c] = fill
            elif cl:
                xp[n, d, h, w, c] = work(x[n, sd, sh, sw, c])
            else:
                xp[n, d, h, w, c] = work(x[n, c, sd, sh, sw])
            i += step

    argtypes = (array(dtype, 5), array(i64, 1), array(i64, 1), array(i64, 1), work, array(work, 5))
    source = "ndhwc" if cl else "ncdhw"
    return Kernel(f"pad_ndhwc_from_{source}_{SUFFIX[dtype]}", kernel, argtypes, threads, 0)


@specialised
def pad_channels_first_kernel(dtype: str) -> Kernel:
    """xp[n, d, h, w, c] = x[n, c, map_d[d], map_h[h], map_w[w]] (or fill), transposed
    through a shared 32 x 32 tile."""
    work = WORK[dtype]
    threads = TILE * ROWS

    def kernel(x, map_d, map_h, map_w, fill, xp):
        tile = cuda.shared.array((TILE, PITCH), work)
        n_img, dp, hp, wp, c_n = xp.shape
        tiles_w = (wp + TILE - 1) // TILE
        tiles_c = (c_n + TILE - 1) // TILE
        b = cuda.blockIdx.x
        wt = b % tiles_w
        b = b // tiles_w
        ct = b % tiles_c
        row = b // tiles_c
        h = row % hp
        row = row // hp
        d = row % dp
        n = row // dp
        if n >= n_img:
            return
        tx = cuda.threadIdx.x % TILE
        ty = cuda.threadIdx.x // TILE
        w0 = wt * TILE
        c0 = ct * TILE
        sd = map_d[d]
        sh = map_h[h]
        w = w0 + tx
        sw = -1
        if w < wp:
            sw = map_w[w]
        for i in range(PER_THREAD):
            c = c0 + ty + ROWS * i
            v = fill
            if c < c_n and w < wp and sd >= 0 and sh >= 0 and sw >= 0:
                v = work(x[n, c, sd, sh, sw])
            tile[ty + ROWS * i, tx] = v
        cuda.syncthreads()
        for i in range(PER_THREAD):
            wo = w0 + ty + ROWS * i
            c = c0 + tx
            if wo < wp and c < c_n:
                xp[n, d, h, wo, c] = tile[tx, ty + ROWS * i]

    argtypes = (array(dtype, 5), array(i64, 1), array(i64, 1), array(i64, 1), work, array(work, 5))
    shared = TILE * PITCH * np.dtype(WORK_NP[dtype]).itemsize
    return Kernel(f"pad_ndhwc_from_ncdhw_t32x32_{SUFFIX[dtype]}", kernel, argtypes, threads, shared)


def pad_launch(batch, channels, in3, pads3, dtype: str, channels_last: bool) -> Launch:
    """The launch that pads a (batch, channels, *in3) input; in3/pads3 lifted to 3-D."""
    padded = [n + b + e for n, (b, e) in zip(in3, pads3)]
    if channels_last or channels < TILE:
        total = batch * channels * padded[0] * padded[1] * padded[2]
        return elementwise(pad_elementwise_kernel(dtype, channels_last), total, "pad")
    kernel = pad_channels_first_kernel(dtype)
    blocks = batch * padded[0] * padded[1] * ceil_div(padded[2], TILE) * ceil_div(channels, TILE)
    return Launch(kernel, blocks, "pad+transpose")


def needs_pad(in3, pads3, dtype: str, channels_last: bool) -> bool:
    return not (channels_last and dtype != "float16" and all(p == (0, 0) for p in pads3))


def working_input(x, nd, batch, channels, in3, pads3, mode, value, dtype, channels_last):
    """The padded working copy (N, Dp, Hp, Wp, C) of device array ``x`` (user layout)."""
    x5 = lift5(x, nd, channels_last)
    if not needs_pad(in3, pads3, dtype, channels_last):
        return x5
    maps = [streams.to_device(source_index(n, b, e, mode)) for n, (b, e) in zip(in3, pads3)]
    shape = (batch, *(len(m) for m in maps), channels)
    xp = streams.device_array(shape, WORK_NP[dtype])
    fill = WORK_NP[dtype](value if mode == "constant" else 0.0)
    pad_launch(batch, channels, in3, pads3, dtype, channels_last)(x5, *maps, fill, xp)
    return xp


def conv_working_input(spec, x, geom):
    """``working_input`` for a forward conv spec (its pads and padding mode)."""
    return working_input(x, spec.nd, spec.batch, spec.in_channels, geom.in_size, geom.pads,
                         spec.padding_mode, spec.padding_value, spec.dtype, spec.channels_last)


def conv_pad_launches(spec, geom) -> list:
    if not needs_pad(geom.in_size, geom.pads, spec.dtype, spec.channels_last):
        return []
    return [pad_launch(spec.batch, spec.in_channels, geom.in_size, geom.pads, spec.dtype, spec.channels_last)]


def output_array(spec, shape5_cl):
    """The result array in the user's layout and dtype, allocated as a 5-D array
    (N, D, H, W, K) or (N, K, D, H, W); ``user_shape`` reshapes it afterwards."""
    n, d, h, w, k = shape5_cl
    shape = (n, d, h, w, k) if spec.channels_last else (n, k, d, h, w)
    return streams.device_array(shape, np.dtype(spec.dtype))


def user_shape(out5, spec):
    return out5.reshape(*spec.output_shape)

