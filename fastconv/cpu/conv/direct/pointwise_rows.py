"""1x1 convolutions: one GEMM, out (M, K) = x (M, C) @ W.T, M = N * pixels, read and written
in the user's arrays (strided layers read a copy of the pixels their outputs read, 1/stride^d
of the input, like the GEMM path conv/gemm.py). Channels-last, a tile's pixels are C elements
apart and its channels consecutive; channels-first, its pixels are consecutive, its channels a
plane apart, each image is a row (no tile crosses one), the tile stores its outputs transposed
in registers, and the sum over C is never cut into blocks (adding into channels-first outputs
goes through a buffer: one block measured 5-12% faster on ResNet-50's 512-1024-channel layers).

The register tile is vector.fma_tile.fma_tile_strided (S pixels, C apart, by V output
channels, the reduction over C innermost with broadcasts; epilogue bias and relu/relu6
fused), its shapes from conv/direct/pointwise.py. The loop around it replaced the direct
kernel's plane-tiled loop (one task per block of V channels, which packed its block and
wrote a block of every output row), for MobileNetV2's and ResNet-50's 1x1 layers:

- the weight is packed once per call, every block of V channels, when several tasks
  use each pass of it. With fewer than ``SERIAL_PACK_ROWS`` rows whose input stays in L2
  (``PACKING_RUN_BYTES``) and ``CHUNKS_PER_THREAD`` blocks per thread or more, a task is
  one block over every row, packing its block before its tiles: the call is one
  parallel loop (each Numba TBB loop wakes and joins the worker: 7 us measured quiet),
  its tasks equal (MobileNetV2's 14x14 64->384, two threads, host loaded: 68-71 us with
  a packing loop first, 44-53 as block tasks). Otherwise the calling thread packs up to
  ``SERIAL_PACK`` elements (about 2 us) or from ``SERIAL_PACK_ROWS`` rows (under 1% of
  the work), and larger weights of fewer rows are packed in a first parallel loop: on
  layers of few blocks (14x14 384->64, two blocks) packing on the calling thread before
  a single loop was slower under load (7x7 46-52 us against 38-43; the first loop
  probably wakes the worker for the second). When a pass is used by one task only, or the packed
  weight is above ``PREPACK_BYTES`` (it would be written to memory and read back:
  ResNet-50's 1024->2048 weight, 8 MB, ran 1.4x slower packed first), each task packs a
  pass as it uses it;
- a task is a run of whole tiles of pixels (at most ``RUN_BYTES`` of input, which stays
  in L2; ``PACKING_RUN_BYTES`` when runs pack their own passes) by a share of the passes
  of channel blocks: all passes when the input is the larger operand (each task reads
  only its run of it), a share of them, with runs as long as they may be, when the
  packed weight is (each task reads only its share of the weight: ResNet-50's 7x7
  2048->512 weight, 4 MB, was read from L3 once per run). A pass's blocks fit L1
  (``tiled.L1_BYTES``), so the packed weight is read from L1 for every tile of the run,
  or from L2 when a single block is larger, and each tile writes whole output rows of
  the pass's channels. The plane-tiled loop's tasks read their input once per block:
  from memory, 8 times, on a 32x256x28x28 layer;
- tasks are few and equal: about ``CHUNKS_PER_THREAD`` per thread, as many for every
  thread; the last few pixels take narrower tiles, or one full tile overlapping its
  neighbour where the tile model (tiled.step_cycles) says that is cheaper;
- the call plan (``rows_plan``) holds every argument that depends on the spec, and a
  repeated call's runner is bound to it (run.bind_direct), so a call is one Numba
  dispatch with a few arguments and little Python around it.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from numba import prange, types
from numba.extending import register_jitable

from ...._arrays import working_dtype
from ...._cache import cached_plan
from ...._threads import CHUNKS_PER_THREAD, _thread_count, balanced, restore
from ....kernels.activation import ACTIVATION_CODES
from ..._jit import specialised_kernel
from ...vector.aligned import aligned_empty
from ...vector.fma_tile import ACT_ACCUMULATE, ACT_NONE, REVISION, fma_tile_strided, pack_weight_block, shapes_literal
from ...vector.prefetch import prefetch_l2
from .pointwise import strided_shape, wide_strided_shape
from .tiled import L1_BYTES, TileShape, step_cycles, tile_shape

# A task's first pass over its run asks for the input of the tile this many tiles ahead, one
# prefetch per line, into L2: the hardware prefetchers alone left a cold input's tiles waiting
# (one thread, thread CPU time, input not in cache: 8x56x56x128 -> 128 7.7 to 5.8-6.5 ms,
# 1x56x56x256 -> 64 1.13 to 0.87-0.92, 1x56x56x128 -> 128 0.90 to 0.73-0.77; 1, 2, 3 or 4 tiles
# ahead within the host's noise, load 5).
PREFETCH_TILES = 2
LINE_BYTES = 64
SERIAL_PACK = 16 * 1024  # packed weight elements the calling thread packs alone
SERIAL_PACK_ROWS = 1024  # or any weight, for this many rows: packing is then under 1% of the work
RUN_BYTES = 256 * 1024  # a task's run of input rows stays in L2 over all its passes
# ... or 1 MiB when each run packs the passes it uses (weights above PREPACK_BYTES): fewer runs pack the weight
# fewer times. Single-thread CPU time against 256 KiB for all, 12 rounds (host load 6-7): ResNet-50's 2048->512 7x7
# 0.75, U-Net's stacked 1024->2048 28x28 0.92, 512->1024 56x56 1.04 (layers it leaves alone moved by up to 7%);
# 1 MiB for every layer made a prepacked 512->128 28x28 layer 1.08-1.15x slower.
PACKING_RUN_BYTES = 1 << 20
PREPACK_BYTES = 1 << 20  # larger packed weights are packed by each task, a pass at a time, as it uses them
# Rows of an interleaved output whose tiles, tail included, cost more than this times full-width tiles (tile
# model) keep the copy. Single-thread CPU time, interleaved / stacked output then copied, U-Net's 2x2 stride 2
# channels-last: rows of 28 (weight blocks streaming from L2, modelled 1.25) 1.03, of 56 (1.11) 0.93, of 112
# (1.00) 0.71.
ROW_TAIL_SLACK = 1.15


class RowsPlan(NamedTuple):
    shape: TileShape
    kernel: object  # the compiled kernel for the shape
    dtype: np.dtype  # working dtype
    xoff: np.ndarray  # 0 .. C/G - 1: reduction step r reads channel r of the tile's pixel
    widths: np.ndarray  # pixels of each tile shape (one-row tiles, widest first)
    overlap: np.ndarray  # [r]: the last r pixels (r < widths[0]) take one full tile, not narrower ones
    rows: int  # M = N * pixels
    pass_blocks: int  # channel blocks per pass
    act: int
    no_bias: np.ndarray  # the zero bias of calls without one (G * KB * V)
    bias_in_place: bool  # the user's bias is already the blocked bias (K/G a multiple of V)
    out_shape: tuple
    out_dtype: np.dtype
    w_shape: tuple  # (G, K/G, C/G)
    pick: tuple | None  # the slices of the input pixels a strided layer reads; None: unit strides
    row_len: int  # pixels per output row: no tile crosses one (rows: the output is one row)
    row_base: np.ndarray  # [i]: where output row i's first pixel starts in the output
    opix: int  # output elements from one pixel of a row to the next
    koff: np.ndarray  # [G * KB]: where each block of V channels starts within an output pixel
    packed: bool  # the weight comes packed, (G, KB, C/G, V) (K/G a multiple of V), not as (G, K/G, C/G)
    no_given: np.ndarray  # (0, C/G * V): the kernel's ``given`` when it packs the weight itself
    xpix: int  # input elements from one pixel to the next: C channels-last, 1 channels-first
    xchan: int  # ... and from one channel to the next: 1 channels-last, the pixels of a plane channels-first
    kstride: int  # output elements from one channel to the next (1 channels-last)
    c_blocks: int  # the blocks the sum over C/G is cut into (reduction_blocks; 1 channels-first)


def supports_rows(spec) -> bool:
    return spec.is_pointwise


@cached_plan
def rows_plan(spec, wide: bool | None = None) -> RowsPlan:
    """Everything about a 1x1 call that depends on its spec (cached; do not write to its
    arrays). ``wide``: pointwise.wide_strided_shape's tiles where the target has them, else
    strided_shape's; None: wide channels-last where its blocks of V hold every group's
    channels exactly and two threads keep their block tasks (:func:`_loses_block_tasks`).
    ResNet-50's and MobileNetV2's channels-last 1x1 layers of 64k channels, one thread,
    in-process A/B, host loaded: 0.82-1.06x the time, geometric mean 0.93 and 0.90; with
    partial blocks (96 or 160 channels) 1.20-1.27x."""
    dtype = working_dtype(np.dtype(spec.dtype))
    shape = tile_shape(spec.out_per_group, dtype.name)
    g, cg, kg = spec.groups, spec.in_per_group, spec.out_per_group
    wider = wide_strided_shape(shape) if wide or wide is None else None
    if wide is None and not (spec.channels_last and wider is not None and kg % wider.v == 0
                             and not _loses_block_tasks(spec, shape.v, wider.v, dtype.itemsize)):
        wider = None
    shape = wider or strided_shape(shape)
    kb_n = -(-kg // shape.v)
    c_blocks = reduction_blocks(cg, shape.v, dtype.itemsize) if spec.channels_last else 1
    block_bytes = -(-cg // c_blocks) * shape.v * dtype.itemsize
    pass_blocks = max(1, min(kb_n, L1_BYTES // block_bytes))  # the packed blocks of a pass stay in L1
    plane = int(np.prod(spec.out_size))
    rows = spec.batch * plane
    strided = any(s != 1 for s in spec.stride)
    spatial = tuple(slice(None, None, s) for s in spec.stride)
    pick = None if not strided else (slice(None), *spatial, slice(None)) if spec.channels_last else (
        slice(None), slice(None), *spatial)
    widths = np.array([s for _, s in shape.shapes], np.int64)
    overlap = tail_overlap(tuple(widths.tolist()), shape.n_vec, block_bytes > L1_BYTES)
    blocks = np.arange(g * kb_n, dtype=np.int64)
    koff = blocks // kb_n * kg + blocks % kb_n * shape.v  # channels-last; channels-first times the plane
    if spec.channels_last:
        row_len, row_base, opix, xpix, xchan = max(rows, 1), np.zeros(1, np.int64), g * kg, g * cg, 1
    else:  # a row per image: no tile crosses one
        row_len, opix, xpix, xchan = max(plane, 1), 1, 1, plane
        row_base, koff = np.arange(spec.batch, dtype=np.int64) * g * kg * plane, koff * plane
    return RowsPlan(shape, rows_kernel(shape), dtype, np.arange(cg, dtype=np.int64) * xchan, widths, overlap, rows,
                    pass_blocks, ACTIVATION_CODES[spec.activation], np.zeros(g * kb_n * shape.v, dtype),
                    kg % shape.v == 0, spec.output_shape, np.dtype(spec.dtype), (g, kg, cg), pick, row_len, row_base,
                    opix, koff, False, np.zeros((0, cg * shape.v), dtype), xpix, xchan, xchan, c_blocks)


def _loses_block_tasks(spec, v: int, wide_v: int, itemsize: int) -> bool:
    """Whether the kernel runs ``spec`` on two threads as one task per block of v channels
    (rows_kernel: few rows of small input, CHUNKS_PER_THREAD blocks per thread or more) but
    would not with blocks of wide_v: the layer then stays on v (MobileNetV2's 14x14 64->384;
    the one-loop path was measured faster there on two threads, the wide tiles only on one)."""
    rows, c_n, kg = spec.batch * int(np.prod(spec.out_size)), spec.in_channels, spec.out_per_group
    small = rows < SERIAL_PACK_ROWS and rows * c_n * itemsize <= PACKING_RUN_BYTES
    return small and -(-kg // v) >= 2 * CHUNKS_PER_THREAD > -(-kg // wide_v)


@cached_plan
def depth_to_space_plan(spec, stride: tuple, out_shape: tuple):
    """The plan of ``spec`` (channels-last 1x1, ungrouped) whose output channels are prod(stride)
    phases of K stacked in phase order (a transposed conv's phases, phases.py), writing each
    phase's outputs straight into their places of the (N, *Q * stride, K) result
    ``out_shape``: out[n, q * s + r, k] = y[n, q, phase(r) * K + k]; its weight comes packed
    (transpose.phase_split.phase_packed), its tiles pointwise.wide_strided_shape's where a block of
    them does not straddle two phases. None when ``spec`` is
    not such a conv, a block of V channels would straddle two phases (K not a multiple of V),
    or the rows' last tiles would cost more than ROW_TAIL_SLACK (no tile crosses a row)."""
    if not (supports_rows(spec) and spec.channels_last) or spec.groups != 1:
        return None
    k_n = out_shape[-1]
    plan = rows_plan(spec, True)
    if k_n % plan.shape.v:
        plan = rows_plan(spec, False)
    q, o = spec.out_size, out_shape[1:-1]
    if k_n % plan.shape.v or spec.out_channels != k_n * int(np.prod(stride)) or o != tuple(
            n * s for n, s in zip(q, stride)):
        return None
    widths, n_vec = tuple(plan.widths.tolist()), plan.shape.n_vec
    streams_l2 = -(-plan.w_shape[2] // plan.c_blocks) * plan.shape.v * plan.dtype.itemsize > L1_BYTES
    full, tail = step_cycles(widths[0], n_vec, streams_l2), q[-1] % widths[0]
    tail_cost = full if q[-1] > widths[0] and plan.overlap[tail] else narrow_cycles(widths, n_vec, streams_l2, tail)
    if q[-1] // widths[0] * full + tail_cost > ROW_TAIL_SLACK * q[-1] / widths[0] * full:
        return None
    row_elems = np.cumprod((1,) + o[::-1])[::-1]  # output elements per unit of each spatial index, then 1
    rows_at = np.indices((spec.batch, *q[:-1])).reshape(len(q), -1)  # (n, q_1 .. q_{nd-1}) of each row
    row_base = rows_at[0] * row_elems[0] + sum(rows_at[1 + i] * s * row_elems[1 + i] for i, s in
                                               enumerate(stride[:-1]))
    phase = np.indices(stride).reshape(len(stride), -1)  # phases in stacking order
    phase_base = sum(phase[i] * row_elems[1 + i] for i in range(len(stride)))
    c0 = np.arange(0, spec.out_channels, plan.shape.v)  # each block's first stacked channel
    koff = (phase_base[c0 // k_n] * k_n + c0 % k_n).astype(np.int64)
    return plan._replace(out_shape=out_shape, row_len=q[-1], row_base=(row_base * k_n).astype(np.int64),
                         opix=stride[-1] * k_n, koff=koff, packed=True)


@register_jitable
def reduction_blocks(cg: int, v: int, itemsize: int) -> int:
    """The blocks the reduction over C/G is cut into, so that a block of V channels' packed
    weights fits L1 (tiled.L1_BYTES) instead of streaming from L2; each tile call after the
    first adds into the output (ACT_ACCUMULATE)."""
    return max(1, -(-cg * v * itemsize // L1_BYTES))


@functools.cache
def tail_overlap(widths: tuple, n_vec: int, streams_l2: bool) -> np.ndarray:
    """[r] = 1 where the last r pixels of a run are cheaper as one full tile overlapping
    the tile before it than as the narrower tiles, widest first, that cover them."""
    full = step_cycles(widths[0], n_vec, streams_l2)
    overlap = np.zeros(widths[0], np.int64)
    for r in range(1, widths[0]):
        overlap[r] = full <= narrow_cycles(widths, n_vec, streams_l2, r)
    return overlap


def narrow_cycles(widths: tuple, n_vec: int, streams_l2: bool, r: int) -> float:
    """The modelled cost of the narrower tiles, widest first, that cover the last r pixels of a run."""
    narrow = 0.0
    for w in widths[1:]:
        while w <= r:
            narrow += step_cycles(w, n_vec, streams_l2)
            r -= w
    return narrow


@functools.cache
def rows_kernel(shape: TileShape):
    """The kernel for one tile shape set, e.g. ``conv_pointwise_rows_p9v32_f32``."""
    v, lanes, shapes, revision = shape.v, shape.lanes, shapes_literal(shape.shapes), REVISION

    def kernel(x, w, xoff, bias, out, widths, overlap, rows, pass_blocks, act, row_len, row_base, opix, koff,
               given, xpix, xchan, kstride, c_blocks):
        """out (M, K) flat = x (M, C) flat @ w (G, K/G, C/G) per group, plus the blocked bias
        (G * KB * V), then the activation; pixel p of output row i = p // row_len at
        out[row_base[i] + (p % row_len) * opix + koff[block]] (channel k of the block kstride apart),
        its channel c at x[i * row_len * C + (p % row_len) * xpix + c * xchan]. Task = (run of tiles of a
        single row, or of whole rows; its passes of channel blocks or a share of them):
        CHUNKS_PER_THREAD per thread, or one per tile or row. ``given``: the weight packed already,
        (G * KB, C/G * V), read by the tiles in place (w then gives only the shape), or no rows;
        ``c_blocks``: the blocks the sum over C/G is cut into."""
        groups, kg, cg = w.shape
        c_n = groups * cg
        zero_bias = np.zeros(v, w.dtype)  # the blocks of the reduction before the last add no bias
        kb_n = -(-kg // v)
        blocks = groups * kb_n
        s = widths[0]
        line = LINE_BYTES // x.itemsize
        n_rows = rows // row_len
        units = rows // s if n_rows == 1 else n_rows  # what runs are cut into: full tiles, or rows
        passes = -(-kb_n // pass_blocks)
        target = CHUNKS_PER_THREAD * _thread_count()
        run_bytes = RUN_BYTES if blocks * cg * v * w.itemsize <= PREPACK_BYTES else PACKING_RUN_BYTES
        least_splits = -(-rows * c_n * x.itemsize // run_bytes)
        if blocks * cg * v > rows * c_n:  # the weight is the larger operand: each task reads less of it
            pass_groups = min(passes, target)
            splits = max(1, min(units, max(least_splits, -(-target // pass_groups))))
        else:  # each task reads less input
            splits = max(1, min(units, max(target, least_splits)))
            pass_groups = max(1, min(passes, -(-target // splits)))
        while (splits * pass_groups) % _thread_count() != 0 and splits < units:
            splits += 1  # as many tasks for every thread
        # every task packs the passes it uses when no other task uses them, or the weight is large
        prepacked = given.shape[0] > 0
        prepack = not prepacked and splits > 1 and blocks * cg * v * w.itemsize <= PREPACK_BYTES
        if prepack and rows < SERIAL_PACK_ROWS and rows * c_n * x.itemsize <= PACKING_RUN_BYTES and kb_n >= target:
            # a task per block of V channels over every row, packing its own block: no packing before the loop
            pass_blocks, passes, pass_groups, splits, prepack = 1, kb_n, kb_n, 1, False
        packed = given if prepacked else aligned_empty((blocks if prepack else 0) * cg * v, w.dtype, lanes).reshape(
            (blocks if prepack else 0, cg * v))
        previous = balanced(blocks)
        if prepack and (blocks * cg * v <= SERIAL_PACK or rows >= SERIAL_PACK_ROWS):
            for t in range(blocks):
                g = t // kb_n
                pack_weight_block(w, g, t - g * kb_n, packed[t], v, lanes, revision)
        elif prepack:
            for t in prange(blocks):
                g = t // kb_n
                pack_weight_block(w, g, t - g * kb_n, packed[t], v, lanes, revision)
        balanced(splits * pass_groups)
        for t in prange(splits * pass_groups):
            run = t // pass_groups
            q = t - run * pass_groups
            row0, row1 = (0, 1) if n_rows == 1 else (run * n_rows // splits, (run + 1) * n_rows // splits)
            first_pass = q * passes // pass_groups
            for g in range(groups):
                for pass_ in range(first_pass, (q + 1) * passes // pass_groups):
                    kb0 = pass_ * pass_blocks
                    kb1 = min(kb_n, kb0 + pass_blocks)
                    first = g * kb_n  # the block of kb in ws is first + kb
                    ws = packed
                    if not (prepack or prepacked):  # this pass's blocks, packed by the task that uses them
                        ws = aligned_empty((kb1 - kb0) * cg * v, w.dtype, lanes).reshape((kb1 - kb0, cg * v))
                        for kb in range(kb0, kb1):
                            pack_weight_block(w, g, kb, ws[kb - kb0], v, lanes, revision)
                        first = -kb0
                    for cb in range(c_blocks):
                        c0, c1 = cb * cg // c_blocks, (cb + 1) * cg // c_blocks
                        steps = xoff[:c1 - c0]
                        last_block = cb == c_blocks - 1
                        cbias = bias if last_block else zero_bias
                        cact = (act if last_block else ACT_NONE) + (ACT_ACCUMULATE if cb > 0 else 0)
                        for row in range(row0, row1):
                            p0, last = row * row_len, (row + 1) * row_len
                            if n_rows == 1:
                                p0 = run * units // splits * s
                                last = rows if run == splits - 1 else (run + 1) * units // splits * s
                            obase = row_base[row] - row * row_len * opix  # pixel p's output: obase + p * opix
                            xrow = row * row_len * (c_n - xpix) + (g * cg + c0) * xchan  # p's input: xrow + p * xpix
                            p = p0
                            while p < last:
                                sel, width = 0, s
                                if p + s > last:  # the tail: one tile ending at the last pixel, or narrower ones
                                    if last - p0 >= s and overlap[last - p] == 1 and c_blocks == 1:  # no adding twice
                                        p = last - s
                                    else:
                                        while widths[sel] > last - p:
                                            sel += 1
                                        width = widths[sel]
                                ahead = p + PREFETCH_TILES * s
                                if pass_ == first_pass and ahead + s <= last and xchan == 1:  # the first read
                                    for pp in range(ahead, ahead + s):  # channels-last only: see PREFETCH_TILES
                                        for c in range(pp * c_n + g * cg + c0, pp * c_n + g * cg + c1, line):
                                            prefetch_l2(x, c)
                                for kb in range(kb0, kb1):
                                    blk = g * kb_n + kb
                                    fma_tile_strided(x, ws, steps, cbias, out, xrow + p * xpix, 0,
                                                     ((first + kb) * cg + c0) * v, 0 if cb < c_blocks - 1 else blk * v,
                                                     obase + p * opix + koff[blk], 0, opix, kstride,
                                                     min(v, kg - kb * v), cact, xpix, sel, shapes, v, lanes, revision)
                                p += width
        restore(previous)

    dt = types.float32 if shape.dtype == "float32" else types.float64
    flat = types.Array(dt, 1, "C")
    ints = types.Array(types.int64, 1, "C")
    readonly = functools.partial(types.Array, dt, layout="C", readonly=True)  # writeable arrays convert to it
    sig = (readonly(1), readonly(3), ints, readonly(1), flat, ints, ints) + (types.int64,) * 4 + (
        ints, types.int64, ints, types.Array(dt, 2, "C")) + (types.int64,) * 4
    return specialised_kernel(kernel, f"conv_pointwise_rows_{shape.name}", [sig])


def blocked_bias(plan: RowsPlan, bias) -> np.ndarray:
    """The bias as the tiles read it, (G * KB * V) flat: the user's array itself when it is
    already that (working dtype, contiguous, K/G a multiple of V)."""
    if bias is None:
        return plan.no_bias
    if plan.bias_in_place and bias.dtype == plan.dtype and bias.flags.c_contiguous:
        return bias.reshape(-1)
    g, kg, _ = plan.w_shape
    out = np.zeros((g, plan.no_bias.size // g), plan.dtype)
    out[:, :kg] = np.asarray(bias).reshape(g, kg)
    return out.reshape(-1)


def run_rows(plan: RowsPlan, x, weight, bias):
    """The call: x (N, *spatial, C) in the user's dtype and strides; result in its dtype; weight as
    plan.packed says. Arrays already in the working dtype and C-contiguous are passed on as they are."""
    dtype = plan.dtype
    if plan.pick is not None:
        x = x[plan.pick]
    if x.dtype != dtype or not x.flags.c_contiguous:
        x = np.ascontiguousarray(x, dtype)  # float16 is computed in float32
    if weight.dtype != dtype or not weight.flags.c_contiguous:
        weight = np.ascontiguousarray(weight, dtype)
    out = np.empty(plan.out_shape, dtype)
    given = plan.no_given
    if plan.packed:
        given = weight.reshape(plan.no_bias.size // plan.shape.v, -1)
    plan.kernel(x.reshape(-1), weight.reshape(plan.w_shape), plan.xoff, blocked_bias(plan, bias), out.reshape(-1),
                plan.widths, plan.overlap, plan.rows, plan.pass_blocks, plan.act, plan.row_len, plan.row_base,
                plan.opix, plan.koff, given, plan.xpix, plan.xchan, plan.kstride, plan.c_blocks)
    return out if dtype == plan.out_dtype else out.astype(plan.out_dtype)
