"""Depthwise convolution on the CPU (algo="depthwise": groups == channels, channel multiplier M).

Zeros padding (and constant padding with value 0), the common case: the kernel of the
user's layout reads the user's array in place and writes the output in that layout,
clipping windows at the borders; no copy of the input unless it is float16, not
C-contiguous, read-only or unaligned (then chunks of images are copied, within the
workspace cap). Other padding modes pad chunks of images into a channels-last copy
(conv.driver.run_on_padded_chunks) and run the channels-last kernel on it unpadded.

Files: conv/depthwise/nhwc.py (channels-last kernel), conv/depthwise/nchw.py
(channels-first kernel), conv/depthwise/common.py (what both share).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

from ...._arrays import working_dtype
from ...._cache import cached_plan
from ....dispatch import register
from ....kernels.geometry import geometry3
from ...layout import bias_vector, image_chunks, kernel_array, kernel_ready
from ...weights import all_finite, pack_depthwise_weight
from ..driver import ChunkedOutput, run_on_padded_chunks
from .common import CLAMP_BOUNDS, interior_columns
from .nchw import nchw_kernel
from .nhwc import nhwc_kernel

# Channels-last: at most this many channels per task. Larger blocks amortise each register tile's
# setup over more channel vectors: 512 measured 5-25% faster than 128 (and 128 than 64) on
# MobileNet layers of 144-960 channels, whose tiles' input rows then outgrow L1.
CHANNELS_L1 = 512
TASKS_PER_THREAD = 4


class DepthwisePlan(NamedTuple):
    kernel: object
    channels_last: bool  # the kernel's layout
    padded: bool  # run on a padded channels-last copy (padding modes other than zeros)
    in_size: tuple  # (D, H, W) the kernel reads
    out_size: tuple
    steps: tuple  # sd, sh, dd, dh, pd, ph, pw
    columns: tuple  # interior output columns [lo, hi)
    window: tuple  # (KD, KH, KW)
    flat_rows: bool  # channels-first: runs of rows are one loop over the flattened plane
    small: tuple  # channels-first: (use a zero-padded scratch plane, its rows, its columns)


def _zero_padding(spec) -> bool:
    return spec.padding_mode == "zeros" or (spec.padding_mode == "constant" and spec.padding_value == 0)


@cached_plan
def depthwise_plan(spec) -> DepthwisePlan:
    dtype = working_dtype(np.dtype(spec.dtype)).name
    geom = geometry3(spec)
    padded = not _zero_padding(spec)
    if padded:
        in_size = tuple(n + b + e for n, (b, e) in zip(geom.in_size, geom.pads))
        pads = (0, 0, 0)
    else:
        in_size = geom.in_size
        pads = tuple(b for b, _ in geom.pads)
    (kd, kh, kw), (sd, sh, sw), (dd, dh, dw) = geom.kernel, geom.stride, geom.dilation
    channels_last = spec.channels_last or padded
    kernel = (nhwc_kernel if channels_last else nchw_kernel)(kd, kh, kw, sw, dw, dtype)
    columns = interior_columns(in_size[2], kw, sw, dw, pads[2], geom.out_size[2])
    return DepthwisePlan(kernel, channels_last, padded, in_size, geom.out_size, (sd, sh, dd, dh, *pads), columns,
                         geom.kernel, sh == 1 and sw == 1 and geom.out_size[2] == in_size[2],
                         _small_plane(in_size, geom, pads))


# Channels-first planes up to this wide (padded), twice as wide when strided, run on a zero-padded
# scratch copy: measured against the row kernel, 1.5-3x faster at 7-33 columns (borders are much of
# the plane; dilation 2 at 33x33), 1.4x at 56; slower at 112. Strided planes are copied into phase
# planes (nchw.py), whose taps all read contiguously: at stride 2 on an Intel Ice Lake (one thread,
# medians of 3x150 calls, loaded host) 1.4x faster than the row kernel at 112 columns, 1.9x at 56.
SMALL_PLANE_COLUMNS = 64


def _small_plane(in_size, geom, pads) -> tuple:
    """(use, Hp, Wp): the zero-padded plane a channels-first task copies its small 2-D plane into."""
    (_, kh, kw), (_, sh, sw), (_, dh, dw), (_, oh, ow) = geom.kernel, geom.stride, geom.dilation, geom.out_size
    hp = max(in_size[1] + pads[1], (oh - 1) * sh + (kh - 1) * dh + 1)
    wp = max(in_size[2] + pads[2], (ow - 1) * sw + (kw - 1) * dw + 1)
    flat_2d = in_size[0] == 1 and geom.kernel[0] == 1 and pads[0] == 0 and sh == sw
    use = flat_2d and wp <= SMALL_PLANE_COLUMNS * min(sw, 2)
    return use, hp, wp


def _channel_block(k_n: int, rows: int, threads: int) -> int:
    """Output channels per channels-last task: blocks of at most CHANNELS_L1, and enough of
    them for TASKS_PER_THREAD tasks per thread; multiples of 16 where the count allows."""
    blocks = max(-(-k_n // CHANNELS_L1), -(-TASKS_PER_THREAD * threads // max(rows, 1)))
    blocks = min(blocks, max(1, k_n // 16))
    per_block = -(-k_n // blocks)
    return min(k_n, (per_block + 15) // 16 * 16)


def _row_block(planes: int, rows: int, threads: int) -> int:
    """Output rows per channels-first task: whole planes unless planes are too few for the threads."""
    return -(-rows // max(1, min(rows, -(-TASKS_PER_THREAD * threads // max(planes, 1)))))


def _run(plan, spec, x, w, b, out, lo, hi):
    """One chunk: x and out C-contiguous in the kernel's layout (5-D or fewer dims)."""
    n_img = x.shape[0]
    c_n = spec.in_channels
    mult = spec.out_per_group
    d, h, wd = plan.in_size
    od_n, oh_n, ow_n = plan.out_size
    threads = numba.get_num_threads()
    if plan.channels_last:
        block = _channel_block(c_n * mult, n_img * od_n * oh_n, threads)
        layout_args = (d, h, wd, c_n)
        extra = ()
    else:
        block = _row_block(n_img * c_n * mult, od_n * oh_n, threads)
        layout_args = (c_n, d, h, wd)
        tasks = n_img * c_n * mult * -(-od_n * oh_n // block)
        extra = (plan.flat_rows, *plan.small, min(tasks, 4 * TASKS_PER_THREAD * threads))
    plan.kernel(x.reshape(-1), w, b, out.reshape(-1), n_img, *layout_args, od_n, oh_n, ow_n, *plan.steps,
                *plan.columns, mult, block, lo, hi, plan.window, *extra)


def _depthwise_only(spec):
    return None if spec.is_depthwise else "groups must equal input channels (depthwise)"


@register("conv", "cpu", "depthwise", supports=_depthwise_only,
          note="depthwise kernels reading NCHW or NHWC in place, taps unrolled, sums in registers")
def conv_depthwise(spec, x, weight, bias):
    dtype = working_dtype(np.dtype(spec.dtype))
    plan = depthwise_plan(spec)
    if not plan.padded and not all_finite(weight):
        # implicit zero padding skips the taps that read it; a NaN or inf weight must meet those
        # zeros (0 * inf is NaN, as in PyTorch and the reference): the direct kernel pads them
        from ..direct.run import conv_direct

        return conv_direct(spec, x, weight, bias)
    w = pack_depthwise_weight(weight, spec, dtype, plan.channels_last).reshape(-1)
    b = kernel_array(bias_vector(bias, spec, dtype), dtype)
    lo, hi = (dtype.type(v) for v in CLAMP_BOUNDS[spec.activation])

    if plan.padded:
        def call(xp, out, _bias, _act):
            _run(plan, spec, xp, w, b, out, lo, hi)

        return run_on_padded_chunks(spec, x, bias, call)

    if kernel_ready(x, dtype) and np.dtype(spec.dtype) == dtype:
        # the kernel reads the user's input and writes the user's output, all images in one call
        out = np.empty(spec.output_shape, dtype)
        _run(plan, spec, x, w, b, out, lo, hi)
        return out
    result = ChunkedOutput(spec, dtype, spec.channels_last)  # float16: float32 output per chunk only
    for n0, n1 in image_chunks(spec, math.prod(x.shape[1:]) * dtype.itemsize + result.bytes_per_image):
        xw = x[n0:n1] if kernel_ready(x, dtype) else np.array(x[n0:n1], dtype=dtype, order="C")
        out = result.chunk(n0, n1)
        _run(plan, spec, xw, w, b, out, lo, hi)
        xw = None  # the next chunk's copy is not allocated while this one lives
        result.store(n0, n1, out)
        out = None
    return result.out
