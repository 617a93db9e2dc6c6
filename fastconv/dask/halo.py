"""Chunk geometry of fastconv.dask: which input region each output chunk reads.

Everything here is plain integer arithmetic on one axis at a time, driven by the
resolved spec (``ConvSpec``/``PoolSpec``: per-side pads, strides, dilations, output
sizes); no padding rule is derived again. For each output chunk of one axis an
:class:`AxisBlock` says

- ``pieces``: the input chunks it reads and the slice of each, in order (a halo deeper
  than a neighbouring chunk reads as many chunks as it needs);
- ``index``: ``None``, or positions into the concatenated pieces that build the padded
  region (reflect, replicate, circular and symmetric padding, which read across the
  whole axis: only the cells that are read are fetched);
- ``pads``: the (begin, end) pads the in-memory op applies to the region itself (zeros
  and constant padding, pooling's padding), non-zero only at the array's outer edges;
- ``size``: the output chunk's length; ``output_padding`` (transposed conv only).

Output chunks follow the input's chunks, with output ``j`` standing for input position
``j * stride`` (forward ops) or ``j / stride`` (transposed conv): an input chunk boundary
``b`` becomes the output boundary ``ceil(b / stride)`` (forward) or ``b * stride``
(transposed). So every output chunk starts at a stride multiple of the input, as if the
input were rechunked at ``ceil(b / stride) * stride``, and a stride-1 "same" conv keeps
the input's chunks. Nothing is rechunked: each output chunk reads its region from the
input chunks where they are.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels.padding_index import source_index


class AxisBlock(NamedTuple):
    pieces: tuple  # ((input chunk index, start, stop), ...): local slices of input chunks, in order
    index: np.ndarray | None  # positions into the concatenated pieces, or None (use them as they are)
    pads: tuple  # (begin, end) pads the op applies to the region
    size: int  # output length of this chunk
    output_padding: int = 0  # transposed conv: output_padding of the local call
    origin: int = 0  # global input index of the region's first real element


def boundaries(chunks) -> np.ndarray:
    """Start offsets of each chunk, and the total at the end."""
    return np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)


def _lengths(cuts) -> tuple:
    """Chunk lengths between sorted cut positions."""
    return tuple(int(b - a) for a, b in zip(cuts[:-1], cuts[1:]))


def window_out_chunks(in_chunks, stride: int, out_size: int) -> tuple:
    """Output chunk lengths of a windowed op (conv, pooling) over input chunks ``in_chunks``."""
    starts = boundaries(in_chunks)[1:-1]
    cut = {0, out_size}
    for b in starts:
        cut.add(min(-(-int(b) // stride), out_size))
    return _lengths(sorted(cut))


def transposed_out_chunks(in_chunks, stride: int, out_size: int) -> tuple:
    """Output chunk lengths of a transposed conv over input chunks ``in_chunks``."""
    starts = boundaries(in_chunks)[1:-1]
    cut = {0, out_size}
    for b in starts:
        cut.add(min(int(b) * stride, out_size))
    return _lengths(sorted(cut))


def _pieces(in_bounds, needed: np.ndarray):
    """Pieces (chunk, start, stop) covering the sorted unique input indices ``needed``, and
    each needed index's position in the pieces' concatenation."""
    chunk_of = np.searchsorted(in_bounds, needed, side="right") - 1
    pieces, offsets = [], {}
    total = 0
    for c in np.unique(chunk_of):
        inside = needed[chunk_of == c]
        lo, hi = int(inside[0]), int(inside[-1]) + 1
        base = int(in_bounds[c])
        pieces.append((int(c), lo - base, hi - base))
        offsets[int(c)] = (total, lo)
        total += hi - lo
    pos = np.empty(len(needed), np.int64)
    for c, (off, lo) in offsets.items():
        sel = chunk_of == c
        pos[sel] = off + needed[sel] - lo
    return tuple(pieces), pos


def _contiguous(in_bounds, lo: int, hi: int) -> tuple:
    """Pieces covering the input range [lo, hi)."""
    first = int(np.searchsorted(in_bounds, lo, side="right")) - 1
    last = int(np.searchsorted(in_bounds, hi - 1, side="right")) - 1
    out = []
    for c in range(first, last + 1):
        a, b = int(in_bounds[c]), int(in_bounds[c + 1])
        out.append((c, max(lo, a) - a, min(hi, b) - a))
    return tuple(out)


def window_axis(in_chunks, n: int, kernel: int, stride: int, dilation: int, pads, out_size: int, *,
                mode: str = "zeros", max_end_pad: int | None = None) -> list[AxisBlock]:
    """The blocks of one axis of a conv or pooling window op.

    ``mode`` is the conv padding mode; "zeros"/"constant" (and pooling, which passes
    "zeros") let the op pad the region's outer edges itself, the other modes gather the
    padded region from the whole axis. ``max_end_pad`` caps the end pad handed to the op
    (pooling with ceil_mode, whose last window may run past the padded input)."""
    in_bounds = boundaries(in_chunks)
    pb, pe = pads
    span = dilation * (kernel - 1) + 1
    out_chunks = window_out_chunks(in_chunks, stride, out_size)
    blocks = []
    j0 = 0
    for m in out_chunks:
        j1 = j0 + m
        start = j0 * stride - pb
        stop = (j1 - 1) * stride - pb + span
        if mode in ("zeros", "constant"):
            lo, hi = max(start, 0), min(stop, n)
            if hi <= lo:  # the chunk's windows lie wholly in padding
                blocks.append(AxisBlock((), None, (stop - start, 0), m))
            else:
                end = max(stop - n, 0)
                if max_end_pad is not None:
                    end = min(end, max_end_pad)
                blocks.append(AxisBlock(_contiguous(in_bounds, lo, hi), None, (lo - start, end), m, 0, lo))
        else:
            src = source_index(n, -start, stop - n, mode)
            needed = np.unique(src)
            pieces, pos = _pieces(in_bounds, needed)
            index = pos[np.searchsorted(needed, src)]
            if len(index) == int(pos[-1]) + 1 and np.array_equal(index, np.arange(len(index))):
                index = None
            blocks.append(AxisBlock(pieces, index, (0, 0), m))
        j0 = j1
    return blocks


def transposed_axis(in_chunks, n: int, kernel: int, stride: int, dilation: int, crops, out_size: int
                    ) -> list[AxisBlock]:
    """The blocks of one axis of a transposed conv: each output chunk reads the inputs
    whose contributions reach it, and crops its local full output to the chunk."""
    in_bounds = boundaries(in_chunks)
    cb_global = crops[0]
    reach = dilation * (kernel - 1)
    blocks = []
    j0 = 0
    for m in transposed_out_chunks(in_chunks, stride, out_size):
        j1 = j0 + m
        first = j0 + cb_global  # full-output position of the chunk's first output
        i0 = min(-(-(first - reach) // stride), first // stride)
        i0 = min(max(i0, 0), n - 1)
        i1 = min(n, (j1 - 1 + cb_global) // stride + 1)
        i1 = max(i1, i0 + 1)
        full = (i1 - i0 - 1) * stride + reach + 1
        cb = first - i0 * stride
        ce = max(0, full - cb - m)
        op = m - (full - cb - ce)
        blocks.append(AxisBlock(_contiguous(in_bounds, i0, i1), None, (cb, ce), m, op, i0))
        j0 = j1
    return blocks


def identity_axis(in_chunks) -> list[AxisBlock]:
    """An axis whose output chunks are its input chunks (batch)."""
    return [AxisBlock(((c, 0, int(m)),), None, (0, 0), int(m)) for c, m in enumerate(in_chunks)]


def merged_axis(in_chunks, out_size: int) -> list[AxisBlock]:
    """An axis read whole by one output chunk of ``out_size`` (channels)."""
    return [AxisBlock(tuple((c, 0, int(m)) for c, m in enumerate(in_chunks)), None, (0, 0), int(out_size))]
