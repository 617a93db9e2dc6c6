"""The direct kernel's weight block packed from a conv's own weight for its input gradient, as LLVM IR.

A stride-1 conv's input gradient is the forward conv of grad_output with the weight's channel
axes swapped and its taps reversed (spec.adjoint.swapped_conv_spec); a strided one's phases are
such convs over subsets of the taps (conv.transpose.phases). Rather than building those weights
in a pass of their own, each task of the direct kernel packs its block of V output channels
straight from the user's weight: with w (G * Kin, C/G, T) C-contiguous (the forward weight, T
taps flattened) and ``pos`` (T,) the reduction step of each tap within one ki (-1: a tap the
conv does not take), ``out[(ki * S + pos[t]) * V + j] = w[g * Kin + ki, kb * V + j, t]``, S the
taps taken, zero past the group's C/G channels. For each ki, the block's channels are LANES rows
of T contiguous taps: one masked load per row and LANES taps at a time, a transpose in
registers, and each tap's vector stored at its step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from .ir import I64, Vectors, const, internal_function, source_revision

# Kernels pass this to pack_swapped_block (see source_revision).
REVISION = source_revision(__file__)


class SwappedArgs(NamedTuple):
    """The arguments of the packing function, in its parameters' order."""
    w: Any  # the forward weight (pointer to the first element) and the packed block
    out: Any
    cg: Any  # w's channels per group: the input gradient's output channels per group
    taps: Any  # T
    kin: Any  # reduction channels per group (the forward's output channels per group)
    sub: Any  # S: taps taken, the reduction steps of one ki
    pos: Any  # pointer to pos[0]
    g: Any
    kb: Any  # the block of V output channels


@intrinsic(prefer_literal=True)
def pack_swapped_block(typingctx, w, g, kb, kin, pos, sub, out, v, lanes, revision):
    """``pack_swapped_block(w, g, kb, KIN, pos, S, out, V, LANES, REVISION)``: see the module docstring."""
    if not all(isinstance(a, types.IntegerLiteral) for a in (v, lanes, revision)):
        return None
    if not (isinstance(w, types.Array) and w.ndim == 3 and w.layout == "C" and w.dtype == out.dtype):
        return None
    if not (isinstance(pos, types.Array) and pos.ndim == 1 and pos.layout == "C" and pos.dtype == types.int64):
        return None
    n_lanes = lanes.literal_value
    n_vec, rem = divmod(v.literal_value, n_lanes)
    if rem:
        return None
    sig = types.none(w, types.intp, types.intp, types.intp, pos, types.intp, out, v, lanes, revision)

    def codegen(context, builder, signature, args):
        wa = context.make_array(signature.args[0])(context, builder, args[0])
        pa = context.make_array(signature.args[4])(context, builder, args[4])
        oa = context.make_array(signature.args[6])(context, builder, args[6])
        _, cg, taps = cgutils.unpack_tuple(builder, wa.shape, 3)
        g_, kb_, kin_ = (context.cast(builder, a, t, types.intp) for a, t in zip(args[1:4], signature.args[1:4]))
        sub_ = context.cast(builder, args[5], signature.args[5], types.intp)
        fn = _swapped_function(builder.module, context.get_data_type(w.dtype), w.dtype.bitwidth, n_lanes, n_vec)
        builder.call(fn, list(SwappedArgs(w=wa.data, out=oa.data, cg=cg, taps=taps, kin=kin_, sub=sub_, pos=pa.data,
                                          g=g_, kb=kb_)))
        return context.get_dummy_value()

    return sig, codegen


def _swapped_function(module, elem, bits, lanes, n_vec):
    ptr = elem.as_pointer()
    v = lanes * n_vec
    fn, b = internal_function(module, f"fastconv_pack_swapped_block_l{lanes}v{v}_f{bits}",
                              [ptr, ptr, I64, I64, I64, I64, I64.as_pointer(), I64, I64], SwappedArgs._fields)
    if b is None:
        return fn
    a = SwappedArgs(*fn.args)
    vectors = Vectors(b, elem, lanes)
    zero = ir.Constant(vectors.vec, None)
    k0 = b.mul(a.kb, const(v))
    left = b.sub(a.cg, k0)
    kvalid = b.select(b.icmp_signed("<", left, const(v)), left, const(v))
    # channel j's first tap relative to its ki's row; channels past the group repeat the last one (zeroed)
    rows_at = []
    for j in range(v):
        c = b.add(k0, b.select(b.icmp_signed("<", const(j), kvalid), const(j), b.sub(kvalid, const(1))))
        rows_at.append((b.mul(c, a.taps), b.icmp_signed("<", const(j), kvalid)))
    with cgutils.for_range(b, a.kin) as ki_loop:
        ki = ki_loop.index
        w_row = b.mul(b.mul(b.add(b.mul(a.g, a.kin), ki), a.cg), a.taps)
        out_row = b.mul(b.mul(ki, a.sub), const(v))
        with cgutils.for_range_slice(b, const(0), a.taps, const(lanes)) as (t0, _):
            mask = vectors.lanes_below(b.sub(a.taps, t0))
            for jb in range(n_vec):
                rows = []
                for i in range(lanes):
                    at, valid = rows_at[jb * lanes + i]
                    rows.append(b.select(valid, vectors.load(a.w, b.add(b.add(w_row, at), t0), mask), zero))
                for col, value in enumerate(vectors.transpose(rows)):
                    t = b.add(t0, const(col))
                    with cgutils.if_likely(b, b.icmp_signed("<", t, a.taps)):
                        step = b.load(b.gep(a.pos, [t], inbounds=True))
                        with cgutils.if_likely(b, b.icmp_signed(">=", step, const(0))):
                            at = b.add(out_row, b.add(b.mul(step, const(v)), const(jb * lanes)))
                            vectors.store(value, a.out, at)
    b.ret_void()
    return fn
