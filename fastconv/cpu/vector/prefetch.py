"""Software prefetch of one array element's cache line (no read, never faults): from kernels
(:func:`prefetch_l2`) and from IR builders (:func:`prefetch_l1`)."""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _prefetch(builder, ptr, locality: int) -> None:
    """llvm.prefetch of the line at ``ptr`` for reading, data cache, ``locality`` 3 (L1) to 0."""
    i32 = ir.IntType(32)
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32]),
                                        "llvm.prefetch.p0")
    builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, locality), ir.Constant(i32, 1)])


def prefetch_l1(builder, ptr) -> None:
    """Emit a prefetch of the line at ``ptr`` into L1 (any address: a prefetch never faults)."""
    _prefetch(builder, ptr, 3)


@intrinsic
def prefetch_l2(typingctx, arr, index):
    """Ask for the line holding ``arr[index]`` (1-D, clamped by the caller) in L2."""
    if not isinstance(arr, types.Array) or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        _prefetch(builder, builder.gep(ary.data, [args[1]]), 2)
        return context.get_dummy_value()

    return types.void(arr, index), codegen
