"""The direct kernel's path for strided channels-last 1x1 convolutions without padding:
the register tiles read the user's input in place (no row-planar copy). Unit strides
take conv/direct/pointwise_rows.py (one GEMM of pixel rows, the same register tile).

A 1x1 tap of output pixel (od, oh, ow) reads input pixel (od*sd, oh*sh, ow*sw), so
reduction step r (input channel r of the group) of a tile's pixel p reads

    x[n*img + od*d_pitch + oh*h_pitch + g*g_pitch + (col + p)*col_pitch + r]

with col_pitch = sw*C: the direct kernel's task loop, its tiles from
vector.fma_tile.fma_tile_strided. With unit strides the output plane is one row
of OD*OH*OW pixels (every tile full width, no edge tiles per image row).

Channels-first input stays on the row-planar path: read in place, each reduction step
is a plane apart (one page per step), and ResNet-50's 56x56 and 28x28 1x1 layers ran
1.1-1.3x slower than packing; channels-last steps are consecutive elements of a pixel.
MobileNetV2/ResNet-50 1x1 layers channels-last, single thread: 0.46-1.12x the packed
path's time, geometric mean 0.75-0.83.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
from numba import prange, types

from ...._arrays import working_dtype
from ...._cache import cached_plan
from ...._threads import balanced, restore
from ....kernels.geometry import geometry3
from ..._jit import simd, specialised_kernel
from ...vector.fma_tile import REVISION, fma_tile_strided, shapes_literal
from .tiled import L1_BYTES, PlaneTiles, TileShape, plane_tiles, segment_tiles, task_block, tile_origin, tile_shape


class PointwisePlan(NamedTuple):
    shape: TileShape
    out_size: tuple  # (OD, OH, OW) as the tiles see them: (1, 1, pixels) with unit strides
    xoff: np.ndarray
    tiles: PlaneTiles
    pitches: tuple  # image, depth step, height step, group (input elements)
    col_pitch: int
    kb_n: int


def strided_shape(shape: TileShape) -> TileShape:
    """One-row tiles narrow enough that the accumulators, the weight vectors and every
    pixel's broadcast fit the vector registers together: LLVM schedules a strided tile's
    loads ahead of its FMAs (9 pixels x 2 vectors on AVX-512; 14 spilled and ran 2x slower)."""
    n_vec = shape.n_vec
    p = (simd().registers - n_vec - 1) // (n_vec + 1)
    widths = sorted({p, (p + 1) // 2, 4, 2, 1}, reverse=True)
    return shape._replace(shapes=tuple((1, w) for w in widths if w <= p))


@cached_plan
def pointwise_plan(spec) -> PointwisePlan:
    """Everything about a channels-last 1x1 call that depends on its spec only (cached; do
    not write to its arrays)."""
    dtype = working_dtype(np.dtype(spec.dtype))
    geom = geometry3(spec)
    shape = strided_shape(tile_shape(spec.out_per_group, dtype.name))
    (d_n, h_n, w_n), (sd, sh, sw) = geom.in_size, geom.stride
    c_n, cg = spec.in_channels, spec.in_per_group
    col_pitch, xoff = sw * c_n, np.arange(cg, dtype=np.int64)
    pitches = (d_n * h_n * w_n * c_n, sd * h_n * w_n * c_n, sh * w_n * c_n, cg)
    out_size = geom.out_size
    if (sd, sh, sw) == (1, 1, 1):
        out_size = (1, 1, math.prod(out_size))
    streams_l2 = xoff.size * shape.v * dtype.itemsize > L1_BYTES
    tiles = plane_tiles(*out_size, shape, streams_l2)
    # the last element a tile reads, relative to its image, must lie inside the image
    oh_n = out_size[1]
    t_row, t_col, t_sel = tiles.last_groups(oh_n, out_size[0])
    rows = np.array([r for r, _ in shape.shapes])[t_sel]
    widths = np.array([s for _, s in shape.shapes])[t_sel]
    last = t_row + rows - 1
    reach = ((last // oh_n) * pitches[1] + (last % oh_n) * pitches[2] + (t_col + widths - 1) * col_pitch).max()
    reach += (spec.groups - 1) * pitches[3] + int(xoff.max())
    assert reach < pitches[0], (reach, pitches[0])
    return PointwisePlan(shape, out_size, xoff, tiles, pitches, col_pitch, -(-spec.out_per_group // shape.v))


@functools.cache
def strided_kernel(shape: TileShape):
    """The direct kernel's task loop (conv.direct.tiled.direct_kernel) over channels-last
    input read in place: tile pixels ``col_pitch`` input elements apart. Named e.g.
    ``conv_direct_inplace_p9v32_f32``."""
    v, lanes, shapes, revision = shape.v, shape.lanes, shapes_literal(shape.shapes), REVISION

    def kernel(x, w, xoff, bias, out, tile_row, tile_col, tile_sel, group_start, n_img, od_n, oh_n, ow_n, img_pitch,
               d_pitch, h_pitch, g_pitch, col_pitch, kb_n, splits, act):
        """One task per (group, block of V output channels, 1/splits of the segments), over
        every image; x is the user's channels-last input, flat, w the weight as (G, K/G, C/G),
        out channels-last."""
        groups, kg = w.shape[0], w.shape[1]
        plane = od_n * oh_n * ow_n
        k_n = groups * kg
        previous = balanced(groups * kb_n * splits)
        for t in prange(groups * kb_n * splits):
            blk, g, k0, kvalid, first, last, wblk = task_block(t, w, xoff.size, group_start, kb_n, splits, v, lanes,
                                                               revision)
            for n in range(n_img):
                for s in range(first, last):
                    base, t0, t1 = segment_tiles(s, group_start, oh_n)
                    for i in range(t0, t1):
                        row = base + tile_row[i]
                        col = tile_col[i]
                        xbase = tile_origin(row, n, g, oh_n, img_pitch, d_pitch, h_pitch, g_pitch) + col * col_pitch
                        obase = (n * plane + row * ow_n + col) * k_n + k0
                        fma_tile_strided(x, wblk, xoff, bias, out, xbase, h_pitch, 0, blk * v, obase, ow_n * k_n,
                                         k_n, 1, kvalid, act, col_pitch, tile_sel[i], shapes, v, lanes, revision)
        restore(previous)

    dt = types.float32 if shape.dtype == "float32" else types.float64
    flat = types.Array(dt, 1, "C")
    ints = types.Array(types.int64, 1, "C")
    readonly = functools.partial(types.Array, dt, layout="C", readonly=True)  # writeable arrays convert to it
    sig = (readonly(1), readonly(3), ints, flat, flat, ints, ints, ints, ints) + (types.int64,) * 12
    return specialised_kernel(kernel, f"conv_direct_inplace_{shape.name}", [sig])


def run_pointwise(spec, x, w4, bq, out, splits, act):
    """out (N, *spatial, K) in the working dtype from x (N, *spatial, C), working dtype,
    C-contiguous; w4 and bq as conv_direct prepares them."""
    plan = pointwise_plan(spec)
    t = plan.tiles
    strided_kernel(plan.shape)(x.reshape(-1), w4, plan.xoff, bq.reshape(-1), out.reshape(-1), t.row, t.col, t.sel,
                               t.group_start, spec.batch, *plan.out_size, *plan.pitches, plan.col_pitch, plan.kb_n,
                               splits, act)
