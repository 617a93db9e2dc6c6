"""Direct convolution on the CPU (algo="direct"): register-tiled, any groups, strides,
dilations and padding modes, bias and relu/relu6 fused, output in the user's layout.

Per call, in this order:

1. the plan for the spec (tile shape, kernel, input layout, tiling of the output) comes
   from a cache: everything below that does not depend on the data;
2. images, in chunks within the workspace cap, are padded into the row-planar,
   stride-phase-split layout (conv.direct.tiled.pack_row_planar), in a buffer the calling
   thread keeps between calls (conv.direct.scratch): the one layout conversion of the
   input, from NCHW or NHWC alike;
3. the kernel for the tile shape (conv.direct.tiled.direct_kernel): each task packs
   its block of V output channels' weights (vector.fma_tile.pack_weight_block)
   and writes the output straight into an array of the user's layout (NCHW or
   channels-last): no output transpose (channels-first planes of one output row through
   a buffer per segment: conv.direct.staged). float16 is computed in float32, cast at the end.
   With zeros padding, where the tile model says it pays, the plane is cut into regions
   that run only the taps reading the input (conv.direct.banded.banded_kernel), which
   reads channels-last input in place (other input copied to it once per chunk) instead
   of step 2's packing. Layers dilated banded.TAPS_OUTER_DILATION or more always run that
   kernel (its sums taps outer): with another padding mode, or a NaN or inf weight, over
   a padded channels-last copy per chunk (:func:`padded_plan`).

Channels-last float32 2-D layers of one group, whole vectors of input channels and kernels up
to 3x3, not dilated, skip step 2 and the banded kernel: their
input is read in place, or from one padded channels-last copy per chunk, by the tile
whose channel count, pixel stride and tap spacing are compiled in (conv.direct.in_place),
summing taps outer and channels inner.

Channels-last 1x1 convolutions without padding skip all of this: one GEMM of pixel rows
read in place (conv/direct/pointwise_rows.py, its tiles from conv/direct/pointwise.py),
whose repeated calls are bound to their plan (:func:`bind_direct`).

Files: conv/direct/tiled.py (tile shapes, tiling of the output plane, input packing,
the kernel factory), conv/direct/staged.py (its loop for one-row channels-first
planes), conv/direct/banded.py (the plane in regions that skip the taps
reading zeros padding), vector/fma_tile.py (the register tile and the weight
packer, as LLVM IR), conv/direct/in_place.py and vector/channels_last_tile.py (channels-last
input read in place), conv/direct/pointwise_rows.py (channels-last 1x1 layers) and
conv/direct/pointwise.py (its tile shapes).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numba
import numpy as np

from ...._arrays import working_dtype
from ...._cache import cached_plan
from ....dispatch import register
from ....kernels.activation import ACTIVATION_CODES
from ....kernels.geometry import geometry3
from ....kernels.padding_index import source_index
from ...layout import (
    as_working,
    channels_last_5d,
    contiguous_channels_last,
    image_chunks,
    pad_ndhwc,
    padded_image_bytes,
    padded_input,
)
from ...weights import all_finite, grouped_weight, pack_bias_blocked
from ..driver import ChunkedOutput
from .banded import BandedPlan, banded_kernel, banded_plan, taps_outer, zero_padded
from .in_place import BLOCKS_INNER_BYTES, InPlacePlan, in_place_kernel, in_place_plan
from .pointwise_rows import rows_plan, run_rows, supports_rows
from .scratch import packing_buffer
from .staged import staged_kernel
from .tiled import (
    L1_BYTES,
    NO_POS,
    PlaneTiles,
    TileShape,
    column_map,
    direct_kernel,
    pack_row_planar,
    plane_tiles,
    reduction_offsets,
    row_planar,
    task_splits,
    tile_shape,
)


class DirectPlan(NamedTuple):
    shape: TileShape
    packed_shape: tuple  # one image of the row-planar input: (Dp, Hp, C, SW, WQ)
    maps: tuple  # source index maps for depth, height, and (phase, column)
    xoff: np.ndarray
    tiles: PlaneTiles
    pitches: tuple  # image, depth step, height step, group (in packed-input elements)
    kb_n: int
    banded: BandedPlan | None  # zeros padding: the plane in regions that skip the taps reading padding
    streams_l2: bool  # a channel block's weights do not fit L1
    taps_outer: bool  # banded.taps_outer: banded always, with another padding over a padded copy
    in_place: InPlacePlan | None  # channels-last input read in place (or padded) by in_place.in_place_kernel


@cached_plan
def direct_plan(spec) -> DirectPlan:
    """Everything about a call that depends on its spec only. Cached: callers must not
    write to its arrays (they stay writeable because Numba types read-only arrays apart)."""
    dtype = working_dtype(np.dtype(spec.dtype))
    geom = geometry3(spec)
    shape = tile_shape(spec.out_per_group, dtype.name, channels_last=spec.channels_last)
    cg, channels = spec.in_per_group, spec.in_channels
    planar = row_planar(geom)
    xoff = reduction_offsets(geom, planar, channels, cg)
    run = planar.phases * planar.wq
    pitches = (planar.image_elems(channels), geom.stride[0] * planar.hp * channels * run,
               geom.stride[1] * channels * run, cg * run)
    od_n, oh_n, ow_n = geom.out_size
    streams_l2 = xoff.size * shape.v * dtype.itemsize > L1_BYTES
    tiles = plane_tiles(od_n, oh_n, ow_n, shape, streams_l2)
    # the last element a tile reads, relative to its image, must lie inside the packed image
    t_row, t_col, t_sel = tiles.last_groups(oh_n, od_n)
    rows = np.array([r for r, _ in shape.shapes])[t_sel]
    widths = np.array([s for _, s in shape.shapes])[t_sel]
    last = t_row + rows - 1
    reach = ((last // oh_n) * pitches[1] + (last % oh_n) * pitches[2] + t_col + widths - 1).max()
    reach += (spec.groups - 1) * pitches[3] + int(xoff.max())
    assert reach < pitches[0], (reach, pitches[0])
    maps = [source_index(n, b, e, spec.padding_mode) for n, (b, e) in zip(geom.in_size, geom.pads)]
    maps[2] = column_map(maps[2], planar.phases, planar.wq)
    banded = banded_plan(geom, channels, cg, shape, streams_l2) if zero_padded(spec) else None
    return DirectPlan(
        shape, (planar.dp, planar.hp, channels, planar.phases, planar.wq), tuple(maps),
        xoff, tiles, pitches, -(-spec.out_per_group // shape.v), banded, streams_l2, taps_outer(geom),
        in_place_plan(spec, geom, shape))


@cached_plan
def padded_plan(spec) -> BandedPlan | None:
    """A taps_outer layer's banded plan over its input padded (any mode): one region of every
    tap; None for other layers."""
    plan = direct_plan(spec)  # its tile shape
    if not plan.taps_outer:
        return None
    geom = geometry3(spec)
    padded = geom._replace(in_size=tuple(n + b + e for n, (b, e) in zip(geom.in_size, geom.pads)),
                           pads=((0, 0),) * 3)
    return banded_plan(padded, spec.in_channels, spec.in_per_group, plan.shape, plan.streams_l2)


def _banded_call(spec, plan: DirectPlan, w4, pos):
    """The banded plan a call runs (None: the plain kernel), and whether it reads a padded copy."""
    if pos.size:
        return None, False  # a swapped weight (pos) is packed by the plain kernel only
    if plan.banded is not None and all_finite(w4):
        return plan.banded, False
    if not plan.taps_outer:
        return None, False
    return padded_plan(spec), True  # also a NaN or inf weight, which must meet the padded zeros


def bind_direct(spec):
    """The repeated call's runner (dispatch.Implementation.bind): channels-last 1x1 calls
    run their cached plan with nothing resolved again; the rest conv_direct."""
    if supports_rows(spec):
        plan = rows_plan(spec)
        return functools.partial(run_rows, plan), (plan,)
    return functools.partial(conv_direct, spec), ()


@register("conv", "cpu", "direct", bind=bind_direct,
          note="register-tiled direct loops (pixels x output channels in vector registers), any groups")
def conv_direct(spec, x, weight, bias):
    if supports_rows(spec):
        return run_rows(rows_plan(spec), x, weight, bias)
    dtype = working_dtype(np.dtype(spec.dtype))
    return _run_tiled(spec, x, grouped_weight(weight, spec, dtype), bias, NO_POS)


def conv_direct_swapped(spec, x, weight, bias=None, pos=None):
    """The conv ``spec`` (not a channels-last 1x1) whose weight is given as that of the conv it
    is the input gradient of, or as a transposed conv's: (C_in, C_out/G, *k), channel axes
    swapped by the kernel's tasks as they pack their blocks, tap t (flat) taken at reduction
    step pos[t] of spec's kernel (-1: not taken; default: every tap, reversed)."""
    dtype = working_dtype(np.dtype(spec.dtype))
    w3 = np.ascontiguousarray(np.asarray(weight).reshape(weight.shape[0], weight.shape[1], -1), dtype=dtype)
    if pos is None:
        pos = np.arange(w3.shape[2] - 1, -1, -1, dtype=np.int64)
    return _run_tiled(spec, x, w3, bias, pos)


def _run_tiled(spec, x, w4, bias, pos):
    dtype = working_dtype(np.dtype(spec.dtype))
    act = ACTIVATION_CODES[spec.activation]
    plan = direct_plan(spec)
    bq = pack_bias_blocked(bias, spec, plan.shape.v, dtype)
    od_n, oh_n, ow_n = geometry3(spec).out_size
    tiles = plan.tiles
    if plan.in_place is not None and not pos.size:
        return _run_in_place(spec, plan, x, w4, bq, act)
    banded, padded = _banded_call(spec, plan, w4, pos)
    segments = tiles.segments if banded is None else banded.order.shape[0]
    splits = task_splits(spec.groups * plan.kb_n, segments, numba.get_num_threads())
    fill = dtype.type(spec.padding_value)
    staged = not spec.channels_last and od_n * oh_n == 1 and not pos.size  # one output row: staged.staged_kernel

    result = ChunkedOutput(spec, dtype, spec.channels_last)  # float16: float32 output per chunk only
    x5 = channels_last_5d(x, spec.nd, spec.channels_last)
    in_place = banded is not None and not padded and x5.dtype == dtype and x5.flags.c_contiguous
    per_image = result.bytes_per_image
    if banded is None:
        per_image += plan.pitches[0] * dtype.itemsize
    elif padded:
        per_image += padded_image_bytes(spec, dtype)
    if x5.dtype != dtype or (banded is not None and not padded and not in_place):  # the chunk converted or copied
        per_image += math.prod(x5.shape[1:]) * dtype.itemsize
    for n0, n1 in image_chunks(spec, per_image):
        out = result.chunk(n0, n1)
        if banded is None:
            xq = packing_buffer((n1 - n0, *plan.packed_shape), dtype)
            pack_row_planar(as_working(x5[n0:n1], dtype), *plan.maps, fill, xq)
            if staged:
                staged_kernel(plan.shape)(xq.reshape(-1), w4, plan.xoff, bq.reshape(-1), out.reshape(-1), tiles.row,
                                          tiles.col, tiles.sel, tiles.group_start, n1 - n0, od_n, oh_n, ow_n,
                                          *plan.pitches, plan.kb_n, splits, act)
            else:
                direct_kernel(plan.shape)(xq.reshape(-1), w4, plan.xoff, bq.reshape(-1), out.reshape(-1), tiles.row,
                                          tiles.col, tiles.sel, tiles.group_start, n1 - n0, od_n, oh_n, ow_n,
                                          *plan.pitches, plan.kb_n, splits, spec.channels_last, act, pos)
        else:
            if padded:
                xq = padded_input(x5[n0:n1], geometry3(spec), spec.padding_mode, spec.padding_value, dtype)
            else:
                xq = x5[n0:n1] if in_place else contiguous_channels_last(x5[n0:n1], dtype)
            banded_kernel(banded.shape)(xq.reshape(-1), w4, banded.xoff, banded.woff, banded.taps, bq.reshape(-1),
                                        out.reshape(-1), banded.regions, banded.row, banded.col, banded.sel,
                                        banded.layouts, banded.order, n1 - n0, od_n, oh_n, ow_n, *banded.pitches,
                                        plan.kb_n, splits, spec.channels_last, act)
        xq = None  # the next chunk's input is not allocated while this one lives
        result.store(n0, n1, out)
        out = None
    return result.out


def _run_in_place(spec, plan: DirectPlan, x, w4, bq, act):
    """A layer of in_place.in_place_plan: its input read in place, or a padded copy per chunk."""
    dtype = working_dtype(np.dtype(spec.dtype))
    ip = plan.in_place
    _, oh_n, ow_n = geometry3(spec).out_size
    tiles = plan.tiles
    blocks_inner = plan.kb_n * plan.xoff.size * plan.shape.v * dtype.itemsize <= BLOCKS_INNER_BYTES
    splits = task_splits(1 if blocks_inner else plan.kb_n, tiles.segments, numba.get_num_threads())
    result = ChunkedOutput(spec, dtype, True)
    x5 = channels_last_5d(x, spec.nd, True)
    copied = ip.pads or x5.dtype != dtype or not x5.flags.c_contiguous
    per_image = result.bytes_per_image + (ip.pitches[0] * dtype.itemsize if copied else 0)
    kernel = in_place_kernel(plan.shape, ip.geometry)
    for n0, n1 in image_chunks(spec, per_image):
        out = result.chunk(n0, n1)
        if copied:
            xq = packing_buffer((n1 - n0, 1, *ip.padded, spec.in_channels), dtype)
            pad_ndhwc(as_working(x5[n0:n1], dtype), *ip.maps, dtype.type(spec.padding_value), xq)
        else:
            xq = x5[n0:n1]
        kernel(xq.reshape(-1), w4, bq.reshape(-1), out.reshape(-1), tiles.row, tiles.col, tiles.sel,
               tiles.group_start, n1 - n0, oh_n, ow_n, *ip.pitches, ip.kh_n, plan.kb_n, splits, act, blocks_inner)
        xq = None
        result.store(n0, n1, out)
        out = None
    return result.out
