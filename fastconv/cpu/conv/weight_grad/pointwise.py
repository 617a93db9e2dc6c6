"""Weight gradient of a 1x1 convolution through register tiles (weight_grad/gemm.py calls it for
channels-last stride-1 layers whose operands are C-contiguous in the working dtype, and for
channels-first expanding layers, :func:`first_takes`, with grad_output read in place and the input
copied channels-last).

``dW[k, c] = sum over pixels p of g[p, k] * x[p, c]``, both operands (M pixels, channels) rows
read in place. The tile (vector/weight_grad_tile.py) holds rows of the broadcast operand by up
to 3 vectors of the other, summed over a run of pixels in registers. The vectors run along the
in-channels, unless the out-channels are more and either a group's in-channels fit one vector
(a one-vector tile does a load per multiply-add) or they would leave more lanes empty (:func:`along_k`):
then along grad_output's K, the gradient computed as (C, K) and transposed (small there).

- The pixel sum is cut into ``pieces`` (a power of two up to MAX_PIECES, each at least
  MIN_PIECE pixels) and the broadcast rows into blocks, so that pieces x blocks is about
  MIN_TASKS: a task owns one block of one piece and writes its sums into that piece's partial
  (or the result, with one piece). The partials are added in piece order. Pieces and blocks
  follow from the shapes alone: the result does not depend on the thread count.
- A task walks its pixels in chunks of CHUNK_PIXELS; per chunk, each group of vectors of a
  row is swept by every tile of the block, so the chunk's vectors are read from L1.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import prange, types

from ...._threads import balanced, restore
from ..._jit import simd, specialised_kernel
from ...vector.weight_grad_tile import REVISION, wg_tile

MIN_PIECE = 512  # pixels per piece of the sum, at least
MAX_PIECES = 8
MIN_TASKS = 8  # pieces x blocks, where the pixels and rows allow
CHUNK_PIXELS = 96  # a chunk's vectors (3 of them: 96 x 192 B = 18 KiB in float32) stay in L1


def _lanes(dtype) -> int:
    return simd().vector_bytes // np.dtype(dtype).itemsize


def tile_rows(v: int) -> int:
    """Broadcast rows of a tile of ``v`` vectors: its accumulators, vectors and broadcast fit the
    registers with a few to spare."""
    rows = max(1, min(16, (simd().registers - v - 4) // v))
    return rows - rows % 2 if rows > 2 else rows


def along_k(cg: int, kg: int, dtype) -> bool:
    """Whether the vectors run along a group's out-channels: more of them than in-channels, and the
    in-channels within one vector or, rounded up to whole vectors, more work than the out-channels
    rounded up (MobileNetV2's b2.expand, 24 -> 144 in float32: 0.68-0.75x gemm_sum's time on one
    thread, where vectors along its in-channels, half of their second vector empty, took 0.89-1.0x)."""
    lanes = _lanes(dtype)
    return cg <= lanes < kg or (kg > cg and -(-cg // lanes) * kg > -(-kg // lanes) * cg)


def takes(cg: int, kg: int, dtype) -> bool:
    """Whether a group's (in, out) channels take these tiles rather than OpenBLAS (gemm_sum). In-process,
    interleaved, 30-40 rounds, float32, against gemm_sum: in-channels within one vector or at least the
    out-channels win (MobileNetV2's b1.expand 0.68-0.70x, b1.project 0.83, b11.project 0.71-0.76; 256 and
    728 channels 0.2-0.87) or lose a little (128 and 512 channels at 56x56 and 14x14 1.05-1.11); expanding
    layers with more in-channels lose (b6.expand 64->384 1.12, b10.expand 160->960 1.20-1.23), but those
    whose in-channels fill their vectors worse than the out-channels win along K (:func:`along_k`)."""
    return cg <= _lanes(dtype) or cg >= kg or along_k(cg, kg, dtype)


def first_takes(cg: int, kg: int, batch: int, dtype) -> bool:
    """Whether a channels-first layer's gradient takes these tiles (grad_output read in place, its input
    copied channels-last, vectors along its in-channels) rather than a gemm_sum per image: batches of
    images, layers expanding 4 times or more whose in-channels are two or more whole vectors. One thread,
    inputs out of cache, float32, tiles / gemm_sum: MobileNetV2's b6, b8, b10.expand and conv_last
    0.88-0.94 at batch 2, 0.82-0.92 at batch 4 and 8, 0.97-1.08 at batch 1; b1.expand (16 in-channels)
    1.01-1.10, b2.expand (24, half a vector empty) 1.13, layers whose input is the larger operand
    (project layers, 64 -> 64) 1.1-2.1, the copy of their input alone costing much."""
    lanes = _lanes(dtype)
    return batch > 1 and kg >= 4 * cg and cg % lanes == 0 and cg > lanes


def split(pixels: int, rows: int, vectors: int):
    """(pieces, rows per block) of a gradient with ``rows`` broadcast rows by ``vectors`` vectors
    summed over ``pixels``: blocks are whole tiles of the widest tile the rows take."""
    pieces = 1
    while pieces < MAX_PIECES and pixels // (2 * pieces) >= MIN_PIECE:
        pieces *= 2
    step = tile_rows(-(-vectors // -(-vectors // 3)))  # the first group's vectors (kernel)
    tiles = -(-rows // step)
    blocks = max(1, min(tiles, -(-MIN_TASKS // pieces)))
    return pieces, -(-tiles // blocks) * step


def pointwise_weight_grad(x, grad_output, groups: int, dtype, plane: int = 0) -> np.ndarray:
    """(K, C/G) gradient from x (M, C) and grad_output (M, K), or channels-first (N, K, plane) with M =
    N * plane where ``plane``, C-contiguous in ``dtype``."""
    m, c_n = x.shape
    k_n = grad_output.shape[1]
    cg, kg = c_n // groups, k_n // groups
    by_k = not plane and along_k(cg, kg, dtype)
    a, b = (grad_output, x) if by_k else (x, grad_output)
    a_g, b_g = (kg, cg) if by_k else (cg, kg)
    pieces, per_block = split(m, b_g, -(-a_g // _lanes(dtype)))
    out = np.empty((groups * b_g, a_g), dtype)
    partial = np.empty((pieces, groups * b_g, a_g) if pieces > 1 else (1, 1, 1), dtype)
    pointwise_kernel(np.dtype(dtype).name)(a.reshape(-1), b.reshape(-1), out.reshape(-1), partial.reshape(-1), m,
                                           a.shape[1], b.shape[1], groups, pieces, per_block, plane)
    if not by_k:
        return out
    return np.ascontiguousarray(out.reshape(groups, cg, kg).transpose(0, 2, 1)).reshape(k_n, cg)


@functools.cache
def pointwise_kernel(dtype: str):
    revision = REVISION  # a closure constant: part of the disk cache's key, unlike a global
    lanes = _lanes(dtype)
    k3, k2, k1 = (f"k{tile_rows(v)} v{v}" for v in (3, 2, 1))
    r3, r2, r1 = (tile_rows(v) for v in (3, 2, 1))
    chunk = CHUNK_PIXELS

    def kernel(a, b, out, partial, m, a_n, b_n, groups, pieces, per_block, plane):
        """out (G * Bg, Ag) flat: out[j, i] = sum over pixels p of b[p, j] * a[p, i] within each group,
        a (M, A) and b (M, B) flat, or b (M / plane, B, plane) where ``plane`` (chunks stop at its images'
        ends, which leaves the sums' order as it is); ``partial`` (pieces, G * Bg, Ag) where ``pieces`` > 1."""
        bcs = 1 if plane else b_n  # b's pixel and channel strides
        bks = plane if plane else 1
        ag = a_n // groups
        bg = b_n // groups
        blocks = (bg + per_block - 1) // per_block
        tasks = groups * blocks * pieces
        size = b_n * ag
        previous = balanced(tasks)
        for task in prange(tasks):
            piece = task % pieces
            blk = task // pieces
            grp = blk // blocks
            j0 = (blk - grp * blocks) * per_block
            j1 = min(bg, j0 + per_block)
            target = partial[piece * size:(piece + 1) * size] if pieces > 1 else out
            base = (grp * bg + j0) * ag
            target[base:base + (j1 - j0) * ag] = 0
            p_end = (piece + 1) * m // pieces
            p0 = piece * m // pieces
            while p0 < p_end:
                p1 = min(p0 + chunk, p_end)
                bb = 0
                if plane:
                    p1 = min(p1, (p0 // plane + 1) * plane)
                    bb = p0 // plane * (b_n - 1) * plane
                i = 0
                while i < ag:
                    left = ag - i
                    vectors = (left + lanes - 1) // lanes
                    v = (vectors + (vectors + 2) // 3 - 1) // ((vectors + 2) // 3)  # groups of 3 or 2, as even
                    xb = grp * ag + i
                    ab = (grp * bg + j0) * ag + i
                    if v == 3:
                        for j in range(j0, j1, r3):
                            wg_tile(a, b, target, xb, 0, 0, a_n, bb + (grp * bg + j) * bks, 0, 0, bcs, bks, 1, 0, 1,
                                    p0, p1, ab + (j - j0) * ag, ag, left, min(r3, j1 - j), k3, lanes, revision)
                    elif v == 2:
                        for j in range(j0, j1, r2):
                            wg_tile(a, b, target, xb, 0, 0, a_n, bb + (grp * bg + j) * bks, 0, 0, bcs, bks, 1, 0, 1,
                                    p0, p1, ab + (j - j0) * ag, ag, left, min(r2, j1 - j), k2, lanes, revision)
                    else:
                        for j in range(j0, j1, r1):
                            wg_tile(a, b, target, xb, 0, 0, a_n, bb + (grp * bg + j) * bks, 0, 0, bcs, bks, 1, 0, 1,
                                    p0, p1, ab + (j - j0) * ag, ag, left, min(r1, j1 - j), k1, lanes, revision)
                    i += v * lanes
                p0 = p1
        if pieces > 1:
            balanced(size)
            for e in prange(size):
                total = partial[e]
                for q in range(1, pieces):
                    total += partial[q * size + e]
                out[e] = total
        restore(previous)

    name = f"weight_grad_pointwise_{'f32' if dtype == 'float32' else 'f64'}"
    dt = types.float32 if dtype == "float32" else types.float64
    flat = types.Array(dt, 1, "C")
    readonly = types.Array(dt, 1, "C", readonly=True)
    return specialised_kernel(kernel, name, [(readonly, readonly, flat, flat) + (types.int64,) * 7])
