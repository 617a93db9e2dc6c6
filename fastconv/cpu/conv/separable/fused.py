"""Depthwise-separable convolution, channels-last, in one pass (algo="fused"): the
depthwise map never leaves the cache.

Arrays (flat, C-contiguous, working dtype): input (N, H, W, C) read in place, output
(N, OH, OW, K). One parallel task is one image's block of R output rows: it computes
the depthwise rows into a scratch block of R*OW pixels by C channels (the vector rows
of vector/depthwise_row.py, windows clipped at the zeros-padded borders, depthwise
bias added), then the pointwise 1x1 convolution of that block with the 1x1 row kernel's
register tiles (vector.fma_tile.fma_tile_strided: pixels C elements apart, V output
channels per tile; pointwise.wide_strided_shape's 6 pixels by 4 vectors where their
blocks hold the out-channels exactly: dw_vs_standard channels-last at 128 channels, one
thread, 0.86-0.91x the time of 9 pixels by 2 vectors), pointwise bias and activation
fused, each output written once. R keeps the scratch block within L2 and gives each
thread several tasks.

Composing the two ops instead writes the depthwise map to memory and reads it back
(one thread, thread CPU time: the depthwise conv alone took 0.29-0.40 ms on 56x56x128,
but 0.51-0.59 ms followed by the 1x1, its input evicted by the 1x1's operands).
"""

from __future__ import annotations

import functools
import threading
from typing import NamedTuple

import numba
import numpy as np
from numba import prange, types

from ...._arrays import working_dtype
from ...._cache import cached_plan
from ...._threads import balanced, restore
from ....dispatch import register
from ....kernels.activation import ACTIVATION_CODES
from ....kernels.geometry import geometry3
from ....spec.separable import SeparablePair
from ..._jit import simd, specialised_kernel
from ...layout import kernel_array
from ...vector.aligned import aligned_empty
from ...vector.depthwise_row import REVISION as DW_REVISION
from ...vector.depthwise_row import dw_row, window_literal
from ...vector.fma_tile import REVISION as TILE_REVISION
from ...vector.fma_tile import fma_tile_strided, pack_weight_block, shapes_literal
from ...weights import all_finite, pack_bias_blocked
from ..depthwise.common import interior_columns
from ..direct.pointwise import strided_shape, wide_strided_shape
from ..direct.tiled import TileShape, tile_shape

# The depthwise rows of one task, as bytes: within L2 (2 MB here) beside the pointwise weights.
SCRATCH_BYTES = 256 * 1024
TASKS_PER_THREAD = 4


class SeparablePlan(NamedTuple):
    shape: TileShape
    rows: int  # output rows per task
    columns: tuple  # interior depthwise output columns [lo, hi)
    widths: np.ndarray  # widths[m]: the index of the widest tile shape of at most m pixels


def fused_supports(pair: SeparablePair):
    """None when the fused kernel serves the pair, else why not."""
    d, p = pair
    if not d.channels_last:
        return "channels-first input (the fused kernel reads channels-last rows)"
    if d.nd != 2:
        return "not 2-D"
    if not (d.padding_mode == "zeros" or (d.padding_mode == "constant" and d.padding_value == 0)):
        return "padding mode other than zeros"
    if d.out_per_group != 1:
        return "channel multiplier above 1"
    if d.activation is not None:
        return "activation on the depthwise output"
    return None


@cached_plan
def separable_plan(pair: SeparablePair, threads: int) -> SeparablePlan:
    d, p = pair
    dtype = working_dtype(np.dtype(d.dtype))
    geom = geometry3(d)
    _, oh_n, ow_n = geom.out_size
    base = tile_shape(p.out_channels, dtype.name)
    wider = wide_strided_shape(base)  # where its blocks hold the out-channels exactly (see rows_plan)
    shape = wider if wider is not None and p.out_channels % wider.v == 0 else strided_shape(base)
    row_bytes = ow_n * d.in_channels * dtype.itemsize
    rows = max(1, min(SCRATCH_BYTES // max(row_bytes, 1), -(-d.batch * oh_n // (TASKS_PER_THREAD * threads))))
    rows = -(-oh_n // -(-oh_n // min(rows, oh_n)))  # equal blocks
    (_, _, kw), (_, _, sw), (_, _, dw) = geom.kernel, geom.stride, geom.dilation
    columns = interior_columns(geom.in_size[2], kw, sw, dw, geom.pads[2][0], ow_n)
    tile_widths = [s for _, s in shape.shapes]
    widest = [next(i for i, s in enumerate(tile_widths) if s <= m) for m in range(1, max(tile_widths) + 1)]
    widths = np.array([0, *widest], dtype=np.int64)
    return SeparablePlan(shape, rows, columns, widths)


@functools.cache
def separable_kernel(kh_n: int, kw_n: int, sw: int, dw: int, shape: TileShape):
    """The fused kernel for one depthwise window and one pointwise tile shape."""
    pixels = 8 if sw == 1 and kh_n * kw_n <= 12 else 2
    row_shape = window_literal(1, kh_n, kw_n, sw, dw, pixels)
    pixel_shape = window_literal(1, kh_n, kw_n, sw, dw, 1, columns=True)
    dw_lanes = simd().vector_bytes // (4 if shape.dtype == "float32" else 8)
    v, lanes, shapes, tile_rev = shape.v, shape.lanes, shapes_literal(shape.shapes), TILE_REVISION
    dw_rev = DW_REVISION  # closure constants are part of Numba's disk-cache key; globals are not
    max_width = max(s for _, s in shape.shapes)

    def kernel(x, wd, dbias, wp, pbias, xoff, widths, out, scratch, n_img, in_h, in_w, c_n, oh_n, ow_n, sh, dh, ph, pw,
               ow_lo, ow_hi, rows, k_n, act, lo, hi):
        """x (N, H, W, C), wd (KH*KW, C), dbias (C,), wp (1, K, C), pbias blocked (KB*V,),
        out (N, OH, OW, K), scratch (threads, rows*OW*C): one block per thread; lo and hi
        are -inf and inf (no depthwise activation); see the module docstring."""
        kb_n = (k_n + v - 1) // v
        wpk = aligned_empty(kb_n * c_n * v, wp.dtype, lanes)
        for kb in range(kb_n):
            pack_weight_block(wp, 0, kb, wpk[kb * c_n * v:(kb + 1) * c_n * v], v, lanes, tile_rev)
        hstep = dh * in_w * c_n
        blocks = (oh_n + rows - 1) // rows
        previous = balanced(n_img * blocks)
        for t in prange(n_img * blocks):
            n = t // blocks
            r0 = (t - n * blocks) * rows
            r1 = min(r0 + rows, oh_n)
            hidden = scratch[numba.get_thread_id()]
            for oh in range(r0, r1):
                ih0 = oh * sh - ph
                kh0 = 0 if ih0 >= 0 else (dh - 1 - ih0) // dh
                kh1 = min(kh_n, (in_h - 1 - ih0) // dh + 1)
                xrow = (n * in_h + ih0) * in_w * c_n
                hb = (oh - r0) * ow_n * c_n
                dw_row(x, wd, dbias, hidden, xrow + (ow_lo * sw - pw) * c_n, hb + ow_lo * c_n, ow_hi - ow_lo, 0, c_n,
                       c_n, hstep, 0, 0, 1, kh0, kh1, 0, kw_n, lo, hi, row_shape, dw_lanes, dw_rev)
                for j in range(ow_n - (ow_hi - ow_lo)):
                    ow = j if j < ow_lo else j + (ow_hi - ow_lo)
                    iw0 = ow * sw - pw
                    kw0 = 0 if iw0 >= 0 else (dw - 1 - iw0) // dw
                    kw1 = min(kw_n, (in_w - 1 - iw0) // dw + 1)
                    dw_row(x, wd, dbias, hidden, xrow + iw0 * c_n, hb + ow * c_n, 1, 0, c_n, c_n, hstep, 0,
                           0, 1, kh0, kh1, kw0, kw1, lo, hi, pixel_shape, dw_lanes, dw_rev)
            npix = (r1 - r0) * ow_n
            obase = (n * oh_n + r0) * ow_n * k_n
            for kb in range(kb_n):
                kvalid = min(v, k_n - kb * v)
                p0 = 0
                while p0 < npix:
                    sel = widths[min(npix - p0, max_width)]
                    fma_tile_strided(hidden, wpk, xoff, pbias, out, p0 * c_n, 0, kb * c_n * v, kb * v,
                                     obase + p0 * k_n + kb * v, 0, k_n, 1, kvalid, act, c_n, sel, shapes, v, lanes,
                                     tile_rev)
                    p0 += widths_px[sel]
        restore(previous)

    widths_px = tuple(s for _, s in shape.shapes)
    dt = types.float32 if shape.dtype == "float32" else types.float64
    flat = types.Array(dt, 1, "C")
    ints = types.Array(types.int64, 1, "C")
    sig = (flat, flat, flat, types.Array(dt, 3, "C"), flat, ints, ints, flat, types.Array(dt, 2, "C")) + \
        (types.int64,) * 15 + (dt, dt)
    name = f"conv_separable_nhwc_k{kh_n}x{kw_n}_s{sw}d{dw}_{shape.name}"
    return specialised_kernel(kernel, name, [sig])


_SCRATCH = threading.local()


def _scratch(threads: int, elems: int, dtype) -> np.ndarray:
    """(threads, elems) of this Python thread's scratch, kept between calls: a fresh block
    per call (or per task) costs its page faults every time, and they serialise the threads."""
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    buf = buffers.get(dtype)
    if buf is None or buf.size < threads * elems:
        buf = buffers[dtype] = np.empty(threads * elems, dtype)
    return buf[:threads * elems].reshape(threads, elems)


@register("separable", "cpu", "fused", supports=fused_supports,
          note="channels-last depthwise rows into an L2-sized block, then its 1x1 by register tiles, one pass")
def separable_fused(pair: SeparablePair, x, dw_weight, dw_bias, pw_weight, pw_bias):
    d, p = pair
    if not all_finite(dw_weight):
        # the depthwise rows skip the taps that read zero padding; a NaN or inf weight must meet
        # those zeros (0 * inf is NaN, as in PyTorch): the two convs one after the other
        from .composed import separable_composed

        return separable_composed(pair, x, dw_weight, dw_bias, pw_weight, pw_bias)
    dtype = working_dtype(np.dtype(d.dtype))
    plan = separable_plan(pair, numba.get_num_threads())
    geom = geometry3(d)
    (_, kh, kw), (_, sh, sw), (_, dh, dw) = geom.kernel, geom.stride, geom.dilation
    kernel = separable_kernel(kh, kw, sw, dw, plan.shape)
    c_n, k_n = d.in_channels, p.out_channels
    wd = np.array(np.asarray(dw_weight).reshape(c_n, kh * kw).T, dtype=dtype, order="C").reshape(-1)
    db = np.zeros(c_n, dtype) if dw_bias is None else kernel_array(np.asarray(dw_bias).reshape(-1), dtype)
    wp = kernel_array(np.asarray(pw_weight).reshape(1, k_n, c_n), dtype)
    pb = pack_bias_blocked(pw_bias, p, plan.shape.v, dtype).reshape(-1)
    xoff = np.arange(c_n, dtype=np.int64)
    out = np.empty(p.output_shape, dtype)
    _, oh_n, ow_n = geom.out_size
    scratch = _scratch(numba.config.NUMBA_NUM_THREADS, plan.rows * ow_n * c_n, dtype)
    kernel(kernel_array(x, dtype).reshape(-1), wd, db, wp, pb, xoff, plan.widths, out.reshape(-1), scratch, d.batch,
           geom.in_size[1], geom.in_size[2], c_n, oh_n, ow_n, sh, dh, geom.pads[1][0], geom.pads[2][0],
           *plan.columns, plan.rows, k_n, ACTIVATION_CODES[p.activation], dtype.type(-np.inf), dtype.type(np.inf))
    return out if out.dtype == np.dtype(p.dtype) else out.astype(p.dtype)
