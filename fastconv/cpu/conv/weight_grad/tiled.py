"""Weight gradient through register tiles, no columns (algo "tiled"): an implicit GEMM.

``dw[k, tap, c] = sum over (n, output pixel) of g[n, pixel, k] * x[n, position(pixel, tap), c]``,
the input channels-last (vector/weight_grad_tile.py: a tile of out-channels by vectors of
in-channels sums a box of pixels in registers). A channels-first grad_output is read in place,
its channel stride a plane (no channels-last copy: ResNet-50's l1.3x3 weight gradient 3.0 to 2.75
ms on one thread), in the copy's order, so both layouts give the same bits; row mode (below)
copies it channels-last.

- A task owns a block of out-channels of one group (all taps and in-channels: a gradient block
  within ACC_BYTES, summed in its thread's buffer; at least MIN_TASKS blocks of 16 where the
  out-channels allow) and one piece of the pixel sum. Pixels go in chunks of about CHUNK_PIXELS
  (an image's rows, or whole small images) that every tap and tile sweeps in turn (ResNet-18's
  layers, one thread: 128-pixel chunks took 1.0-1.25x the time of 512, 1024 no better).
- For each tap, only the box of pixels whose window position lies inside the input is summed:
  zeros padding is never read, and a channels-last input is read in place. Other padding
  modes (and constant values other than 0) sum over a padded channels-last copy.
- Layers with few in-channels (a stem's 3) and row dilation 1 sum a window row (kw, c) at a time,
  where that needs fewer vectors than one per tap; on a border column, the part of the row inside
  the input (ResNet-18's stem, one thread: 0.8x the time of border columns tap by tap). Their tiles
  swap the operands' roles: two vectors of out-channels (a block) by up to 12 of the row's elements
  broadcast, every lane used (the row as the vector filled 21 of 32 lanes on a 7x7 stem, 9 of 16 on
  a 3x3 one); the block sums in its buffer as (tap, in-channel) x out-channel. One thread: ResNet-50's
  stem 2.89 to 1.78 ms, MobileNetV2's 0.42 to 0.22.
- Where out-channel blocks are fewer than MIN_TASKS the pixel sum is cut into pieces (a
  number fixed by the shapes), their partial sums added in piece order. Blocks, chunks and
  pieces follow from the shapes alone: the result does not depend on the thread count.
- Each task's block is written in the weight's (K, Cg, taps) order (3x3 windows transposed in registers:
  vector/tap_transpose.py, see WRITE).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import config, get_thread_id, prange, types

from ...._arrays import working_dtype
from ...._workspace import chunks, workspace_limit
from ....dispatch import register
from ....kernels.geometry import geometry3, lift3
from ....kernels.tap_range import reading_outputs
from ..._jit import simd, specialised_kernel
from ...layout import kernel_array
from ...vector.tap_transpose import REVISION as TRANSPOSE_REVISION
from ...vector.tap_transpose import taps_to_channels
from ...vector.weight_grad_tile import REVISION, wg_tile
from .operands import working_ndhwc

ACC_BYTES = 384 * 1024  # a task's gradient block (out-channels x taps x Cg) at most, when it can be cut
CHUNK_PIXELS = 512  # output pixels per chunk
MIN_TASKS = 8  # out-channel blocks x pieces of the pixel sum, at least (where the pixels allow)
K_STEP = 8  # out-channel blocks are multiples of the tiles' out-channels
# WRITE: a block's sums go from (out-channel, tap, in-channel) to the weight's (out-channel, in-channel, tap)
# order: 3x3 windows a vector of in-channels at a time in registers (vector/tap_transpose.py), the rest element by
# element through slices indexed from 0. One thread, 512x512x3x3 (ResNet-50's l4.3x3, a 2.4M-element weight), the
# transposing write alone: 3.5 ms element by element with flat indexes, 1.8-2.8 through slices (it depends on where
# the block's buffer lies against the weight, mod 4 KiB), 1.0-1.2 in registers.
# G_COPY: row mode copies a channels-first grad_output channels-last with NumPy's strided copy, not
# operands.pad_ncdhw_to_ndhwc (its maps and short channel runs: one thread, thread CPU time, 64x112x112
# float32, ResNet-50's stem, 2.1 ms against 0.6-0.7; 32x112x112 1.06 against 0.2-0.3; a kept buffer
# instead of a fresh array gained nothing).


def _lanes(dtype) -> int:
    return simd().vector_bytes // np.dtype(dtype).itemsize


def row_mode(cg: int, kw: int, dw: int, groups: int, lanes: int) -> bool:
    """Whether a window row (kw, c) is the vector: one group, contiguous row, fewer vectors."""
    return groups == 1 and dw == 1 and kw > 1 and -(-kw * cg // lanes) < kw * -(-cg // lanes)


def plan(spec, batch: int, g_size, itemsize: int, by_rows: bool = False):
    """(out-channels per block, pieces, images per chunk, rows per chunk) for ``batch`` images, from the
    shapes alone; in row mode a block is the row tiles' two vectors of out-channels."""
    kg, cg, taps = spec.out_per_group, spec.in_per_group, math.prod(spec.kernel)
    if by_rows:
        per_block = 2 * (simd().vector_bytes // itemsize)
        blocks = -(-kg // per_block)
    else:
        most = max(K_STEP, ACC_BYTES // max(1, taps * cg * itemsize) // K_STEP * K_STEP)
        blocks = max(-(-kg // most), min(-(-kg // (2 * K_STEP)), -(-MIN_TASKS // spec.groups)))
        per_block = -(-math.ceil(kg / blocks) // K_STEP) * K_STEP
    od, oh, ow = g_size
    plane = oh * ow
    if plane >= CHUNK_PIXELS:
        images, rows = 1, max(1, CHUNK_PIXELS // ow)
    else:
        images, rows = max(1, CHUNK_PIXELS // max(plane, 1)), oh
    n_chunks = -(-batch // images) * od * -(-oh // rows)
    pieces = max(1, min(n_chunks, -(-MIN_TASKS // (spec.groups * blocks))))
    return per_block, pieces, images, rows


def _operands(spec, x, grad_output, dtype, g_first):
    """(input (n, D, H, W, C), grad_output, the pads the kernel skips at the start) per chunk of
    images in the working dtype: the input channels-last, grad_output (n, OD, OH, OW, K), or
    channels-first where ``g_first``; the user's arrays in place where they are so and the
    padding is zeros, else copies within the workspace cap."""
    geom = geometry3(spec)
    skip = spec.padding_mode == "zeros" or (spec.padding_mode == "constant" and spec.padding_value == 0)
    none = ((0, 0),) * 3
    copy_pads = none if skip else geom.pads
    padded = math.prod(n + b + e for n, (b, e) in zip(geom.in_size, copy_pads))
    per_image = (padded * spec.in_channels + math.prod(grad_output.shape[1:])) * dtype.itemsize
    for n0, n1 in chunks(spec.batch, per_image, workspace_limit()):
        xw = working_ndhwc(x[n0:n1], spec.nd, spec.channels_last, copy_pads, spec.padding_mode,
                           spec.padding_value, dtype)
        if g_first:
            gw = kernel_array(grad_output[n0:n1], dtype)
        elif spec.channels_last:
            gw = working_ndhwc(grad_output[n0:n1], spec.nd, True, none, "zeros", 0.0, dtype)
        else:  # row mode's channels-last copy: NumPy's strided copy (see G_COPY)
            g5 = grad_output[n0:n1][(slice(None), slice(None)) + (None,) * (3 - spec.nd)]
            gw = np.ascontiguousarray(np.moveaxis(g5, 1, -1), dtype=dtype)
        yield xw, gw, tuple(b for b, _ in geom.pads) if skip else (0, 0, 0)


@register("conv_weight_grad", "cpu", "tiled",
          note="register tiles of out-channels x in-channel vectors summed over each tap's box of pixels, "
               "channels-last operands (zeros padding never read), fixed pieces and order, no atomics")
def conv_weight_grad_tiled(spec, x, grad_output):
    dtype = working_dtype(np.dtype(spec.dtype))
    geom = geometry3(spec)
    taps = math.prod(geom.kernel)
    cg = spec.in_per_group
    out = np.empty(spec.out_channels * cg * taps, dtype)
    kernel = tiled_kernel(dtype.name)
    by_rows = row_mode(cg, geom.kernel[2], geom.dilation[2], spec.groups, _lanes(dtype))
    g_first = not (by_rows or spec.channels_last)
    for first, (xw, gw, pads) in enumerate(_operands(spec, x, grad_output, dtype, g_first)):
        n, d, h, w, c = xw.shape
        g_size = lift3(gw.shape[2:], 1) if g_first else gw.shape[1:4]
        per_block, pieces, images, rows = plan(spec, n, g_size, dtype.itemsize, by_rows)
        partial = np.empty(spec.out_channels * cg * taps * pieces if pieces > 1 else 1, dtype)
        buffers = np.empty(config.NUMBA_NUM_THREADS * per_block * cg * taps, dtype)  # one per thread
        kernel(xw.reshape(-1), gw.reshape(-1), out, partial, buffers, n, d, h, w, c, *g_size, spec.out_channels,
               spec.groups, *geom.kernel, *geom.stride, *geom.dilation, *pads,
               int(by_rows), int(g_first),
               per_block, pieces, images, rows, int(first == 0))
    return np.ascontiguousarray(out.reshape(spec.weight_shape), dtype=np.dtype(spec.dtype))


@functools.cache
def tiled_kernel(dtype: str):
    revision = REVISION  # closure constants: part of the disk cache's key, unlike globals
    transpose_revision = TRANSPOSE_REVISION
    lanes = _lanes(dtype)

    def kernel(x, g, out, partial, buffers, n_img, in_d, in_h, in_w, c_n, od_n, oh_n, ow_n, k_n, groups, kd_n, kh_n,
               kw_n,
               sd, sh, sw, dd, dh, dw, pd, ph, pw, by_rows, g_first, per_block, pieces, images, rows, fresh):
        """out (K, Cg, taps) = the gradient from x (N, D, H, W, C) and g (N, OD, OH, OW, K), or (N, K, OD, OH,
        OW) where ``g_first`` (not in row mode), all flat (module docstring), its sums continuing from out's
        values unless ``fresh`` (chunks of images add up as one call where the sum is one piece); ``partial``
        holds the pieces' sums where ``pieces`` > 1. A task's block sums in its thread's buffer (reused: fresh
        pages for every block cost more than the sums on layers with few pixels)."""
        cg = c_n // groups
        kg = k_n // groups
        taps = kd_n * kh_n * kw_n
        astep = taps * cg
        blocks = (kg + per_block - 1) // per_block
        oh_blocks = (oh_n + rows - 1) // rows
        n_chunks = ((n_img + images - 1) // images) * od_n * oh_blocks
        xns = in_d * in_h * in_w * c_n
        gns = od_n * oh_n * ow_n * k_n
        xrs = sh * in_w * c_n
        xcs = sw * c_n
        gcs = 1 if g_first else k_n  # grad_output's pixel and channel strides
        gks = od_n * oh_n * ow_n if g_first else 1
        grs = ow_n * gcs
        clo = (pw + sw - 1) // sw  # row mode: output columns whose whole window row is inside
        chi = clo
        if in_w - kw_n + pw >= 0:
            chi = max(clo, min(ow_n, (in_w - kw_n + pw) // sw + 1))
        edge0 = min(clo, ow_n)  # row mode's border columns: [0, edge0) and [edge1, ow_n), one at a time
        edge1 = max(chi, edge0)
        parts = 1 + edge0 + max(0, ow_n - edge1) if by_rows else kw_n
        # a block's sum for out-channel j and (tap, in-channel) tc: buffer[j * j_step + tc * tc_step], (j, tc), or
        # (tc, j) in row mode, whose tiles have the out-channels as the vector
        j_step = 1 if by_rows else astep
        tc_step = per_block if by_rows else 1
        for task in prange(groups * blocks * pieces):
            piece = task % pieces
            blk = task // pieces
            grp = blk // blocks
            k0 = grp * kg + (blk - grp * blocks) * per_block
            kcount = min(per_block, grp * kg + kg - k0)
            acc = buffers[get_thread_id() * per_block * astep:(get_thread_id() + 1) * per_block * astep]
            if fresh or pieces > 1:
                acc[:(per_block if by_rows else kcount) * astep] = 0
            else:  # continue the sums of earlier chunks of images
                for j in range(kcount):
                    for cc in range(cg):
                        o = ((k0 + j) * cg + cc) * taps
                        for t in range(taps):
                            acc[j * j_step + (t * cg + cc) * tc_step] = out[o + t]
            for chunk in range(piece * n_chunks // pieces, (piece + 1) * n_chunks // pieces):
                nb = chunk // (od_n * oh_blocks)
                r = chunk - nb * od_n * oh_blocks
                od = r // oh_blocks
                oh_a = (r - od * oh_blocks) * rows
                oh_b = min(oh_a + rows, oh_n)
                n0 = nb * images
                n_count = min(images, n_img - n0)
                gb = n0 * gns + od * oh_n * ow_n * gcs + k0 * gks
                for kd in range(kd_n):
                    i_d = od * sd - pd + kd * dd
                    if i_d < 0 or i_d >= in_d:
                        continue
                    for kh in range(kh_n):
                        off = kh * dh - ph
                        lo, hi = reading_outputs(oh_n, in_h, off, sh)
                        lo = max(lo, oh_a)
                        hi = min(hi, oh_b)
                        if lo >= hi:
                            continue
                        xrow = n0 * xns + (i_d * in_h + off) * in_w * c_n + grp * cg
                        row_tap = kd * kh_n + kh
                        for part in range(parts):
                            if by_rows and part == 0:
                                a, e, run, col, ab = clo, chi, kw_n * cg, -pw, row_tap * kw_n * cg
                            elif by_rows:  # the window row's taps inside the input
                                a = part - 1 if part <= edge0 else edge1 + part - 1 - edge0
                                e = a + 1
                                kw0 = max(0, pw - a * sw)
                                kw1 = min(kw_n, in_w + pw - a * sw)
                                if kw0 >= kw1:
                                    continue
                                col, run, ab = kw0 - pw, (kw1 - kw0) * cg, (row_tap * kw_n + kw0) * cg
                            else:
                                col = part * dw - pw
                                a, e = reading_outputs(ow_n, in_w, col, sw)
                                run = cg
                                ab = (row_tap * kw_n + part) * cg
                            if a >= e:
                                continue
                            xb = xrow + col * c_n
                            if by_rows:  # out-channels as the vector: the tile with g and x in each other's places
                                for r in range(0, run, 12):
                                    if run - r > 9:
                                        wg_tile(g, x, acc, gb, gns, grs, k_n, xb + r, xns, xrs, xcs, 1, n_count, lo, hi,
                                                a, e, (ab + r) * per_block, per_block, kcount, min(12, run - r),
                                                "k12 v2", lanes, revision)
                                    else:
                                        wg_tile(g, x, acc, gb, gns, grs, k_n, xb + r, xns, xrs, xcs, 1, n_count, lo, hi,
                                                a, e, (ab + r) * per_block, per_block, kcount, run - r, "k9 v2", lanes,
                                                revision)
                                continue
                            c = 0
                            while c < run:
                                left = run - c
                                if left > 2 * lanes:
                                    for kk in range(0, kcount, 8):
                                        wg_tile(x, g, acc, xb + c, xns, xrs, xcs, gb + kk * gks, gns, grs, gcs, gks,
                                                n_count, lo, hi, a, e, ab + kk * astep + c, astep, min(left, 3 * lanes),
                                                min(8, kcount - kk), "k8 v3", lanes, revision)
                                    c += 3 * lanes
                                elif left > lanes:
                                    for kk in range(0, kcount, 8):
                                        wg_tile(x, g, acc, xb + c, xns, xrs, xcs, gb + kk * gks, gns, grs, gcs, gks,
                                                n_count, lo, hi, a, e, ab + kk * astep + c, astep, left,
                                                min(8, kcount - kk), "k8 v2", lanes, revision)
                                    c += 2 * lanes
                                elif kcount <= 8:  # few out-channels per group: half the rows
                                    wg_tile(x, g, acc, xb + c, xns, xrs, xcs, gb, gns, grs, gcs, gks, n_count, lo, hi,
                                            a, e, ab + c, astep, left, kcount, "k8 v1", lanes, revision)
                                    c += lanes
                                else:
                                    for kk in range(0, kcount, 16):
                                        wg_tile(x, g, acc, xb + c, xns, xrs, xcs, gb + kk * gks, gns, grs, gcs, gks,
                                                n_count, lo, hi, a, e, ab + kk * astep + c, astep, left,
                                                min(16, kcount - kk), "k16 v1", lanes, revision)
                                    c += lanes
            base = piece * k_n * astep if pieces > 1 else 0
            dest = partial if pieces > 1 else out
            for j in range(kcount):
                if by_rows:
                    for cc in range(cg):
                        o = base + ((k0 + j) * cg + cc) * taps
                        for t in range(taps):
                            dest[o + t] = acc[j * j_step + (t * cg + cc) * tc_step]
                else:  # (taps, Cg) -> (Cg, taps): see WRITE
                    done = 0
                    if taps == 9:
                        done = cg // lanes
                        taps_to_channels(dest, acc, base + (k0 + j) * astep, j * astep, cg, done, "t9", lanes,
                                         transpose_revision)
                    src = acc[j * astep:(j + 1) * astep]
                    for cc in range(done * lanes, cg):
                        o = base + ((k0 + j) * cg + cc) * taps
                        d = dest[o:o + taps]
                        for t in range(taps):
                            d[t] = src[t * cg + cc]
        if pieces > 1:
            for k in prange(k_n):
                for e in range(k * astep, (k + 1) * astep):
                    total = partial[e]
                    if not fresh:
                        total = out[e] + total
                    for p in range(1, pieces):
                        total += partial[p * k_n * astep + e]
                    out[e] = total

    name = f"weight_grad_tiled_{'f32' if dtype == 'float32' else 'f64'}"
    dt = types.float32 if dtype == "float32" else types.float64
    flat = types.Array(dt, 1, "C")
    return specialised_kernel(kernel, name, [(flat,) * 5 + (types.int64,) * 29])
