"""One channels-last input row packed into the direct kernel's row-planar layout, as LLVM IR.

The row-planar input (conv/direct/tiled.py) holds each channel of a row as one run of
columns; a channels-last row holds each column's channels together. Element by element,
that transposition wrote one scalar per channel at a stride of a whole run (1x128x56x56
stride 2: 0.4 ms of a 2.9 ms one-thread call). Here LANES columns x LANES channels are
loaded as LANES vectors (one per column, from wherever the column map sends it), transposed
in registers and stored as one vector per channel.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from .ir import I64, Vectors, const, internal_function, source_revision

# Kernels pass this to pack_planar_row (see source_revision).
REVISION = source_revision(__file__)


class RowArgs(NamedTuple):
    """The arguments of the packing function, in its parameters' order."""
    x: Any  # the input (pointer to its first element) and the packed input
    out: Any
    cols: Any  # pointer to the column map's entries of this phase: source column, -1 padding value, -2 zero
    xbase: Any  # the row's first element in x, and its distance from one column to the next
    xpix: Any
    obase: Any  # the row's phase's first element in out (channel 0), and one channel's run
    orun: Any
    n_cols: Any  # columns of the phase
    n_chan: Any  # channels packed: a multiple of the vector's lanes


@intrinsic(prefer_literal=True)
def pack_planar_row(typingctx, x, out, cols, xbase, xpix, obase, orun, n_cols, n_chan, fill, width, revision):
    """``pack_planar_row(x, out, cols, xbase, xpix, obase, orun, n_cols, n_chan, fill, WIDTH,
    REVISION)``: ``out[obase + c * orun + j] = x[xbase + cols[j] * xpix + c]`` for j < n_cols and
    c < n_chan, ``fill`` where cols[j] is -1 and zero where it is -2; x's channels are
    consecutive, n_chan a multiple of LANES, the elements of a WIDTH-byte vector. cols is 1-D
    int64, x and out arrays of fill's dtype (any layout: addressed from their first element)."""
    if not all(isinstance(a, types.IntegerLiteral) for a in (width, revision)):
        return None
    if not (isinstance(x, types.Array) and isinstance(out, types.Array) and isinstance(cols, types.Array)
            and x.dtype == out.dtype == fill and cols.dtype == types.int64 and cols.ndim == 1):
        return None
    sig = types.none(x, out, cols, *(types.intp,) * 6, fill, width, revision)

    def codegen(context, builder, signature, args):
        ptrs = [context.make_array(t)(context, builder, a).data for t, a in zip(signature.args[:3], args[:3])]
        ints = [context.cast(builder, a, t, types.intp) for a, t in zip(args[3:9], signature.args[3:9])]
        fn = _row_function(builder.module, context.get_data_type(fill), width.literal_value // (fill.bitwidth // 8))
        builder.call(fn, ptrs + ints + [args[9]])
        return context.get_dummy_value()

    return sig, codegen


def _row_function(module, elem, lanes):
    ptr = elem.as_pointer()
    bits = int(elem.intrinsic_name[1:])
    names = RowArgs._fields + ("fill",)
    fn, b = internal_function(module, f"fastconv_pack_planar_row_l{lanes}_f{bits}",
                              [ptr, ptr, I64.as_pointer()] + [I64] * 6 + [elem], names)
    if b is None:
        return fn
    a = RowArgs(*fn.args[:-1])
    vectors = Vectors(b, elem, lanes)
    fill = vectors.splat(fn.args[-1])
    zero = ir.Constant(vectors.vec, None)
    with cgutils.for_range_slice(b, const(0), a.n_cols, const(lanes)) as (j0, _):
        left = b.sub(a.n_cols, j0)
        count = b.select(b.icmp_signed("<", left, const(lanes)), left, const(lanes))
        sources = []  # per column of the block: its first element in x, and the value where it reads none
        for i in range(lanes):
            j = b.add(j0, b.select(b.icmp_signed("<", const(i), count), const(i), b.sub(count, const(1))))
            col = b.load(vectors.at(a.cols, j))
            inside = b.icmp_signed(">=", col, const(0))
            start = b.add(a.xbase, b.mul(b.select(inside, col, const(0)), a.xpix))
            sources.append((start, inside, b.select(b.icmp_signed("==", col, const(-1)), fill, zero)))
        full = b.icmp_signed("==", count, const(lanes))
        mask = vectors.lanes_below(count)
        with cgutils.for_range_slice(b, const(0), a.n_chan, const(lanes)) as (c0, _):
            rows = [b.select(inside, vectors.load(a.x, b.add(start, c0)), outside)
                    for start, inside, outside in sources]
            for c, value in enumerate(vectors.transpose(rows)):
                at = b.add(b.add(a.obase, b.mul(b.add(c0, const(c)), a.orun)), j0)
                with b.if_else(full) as (whole, part):
                    with whole:
                        vectors.store(value, a.out, at)
                    with part:
                        vectors.store(value, a.out, at, mask)
    b.ret_void()
    return fn

